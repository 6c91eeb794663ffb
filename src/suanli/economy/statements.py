"""Statements: an account's money and tokens over a period, derived from the ledger alone.

Every line comes from a posted movement of one of the account's ledger accounts (its wallet, its packs,
its subscription's allowance windows, its budgets' windows) by the posting's time, classified by its
counter-account and id: a movement that fits no class is an ``other`` line, never dropped. So opening +
movements = closing holds by construction, and ``build`` checks it again against an independent sum of
the ledger (in pairs, as the ledger's own invariants are). Usage events only describe what a usage charge
or a draw was for (the model, the tokens of each class and their unit prices); the money and the tokens
are always what the ledger moved.

A month opens at the closings of the previous month's stored statement when there is one that ends where
it starts, so its cost is the month's rows, however long the account has lived; a range, or a month with
no stored predecessor, sums each account's history.

A calendar month's statement, once the month has closed (plus ``CLOSE_GRACE_MS`` for postings in flight
at midnight), is stored with the SHA-256 of its body on first generation and served from the store ever
after; an open month's is computed at each request and marked ``"final": false``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.economy import statement_ledger as ledger
from suanli.economy import statement_lines as lines
from suanli.economy.windows import add_months
from suanli.errors import BadRequest, invariant
from suanli.ledger import names as ledger_names
from suanli.money import nano_to_cny
from suanli.store.accounts import Account, find_account
from suanli.store.conn import Conn

CLOSE_GRACE_MS = 300_000  # a month is closed this long after its end: postings stamped before it have landed
RANGE_DAYS_MAX = 366  # the longest period of one statement
PLATFORM_NAME = "Suanli 算力"
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Period:
    start_ms: int
    end_ms: int
    zone: ZoneInfo
    month: str | None = None  # "2026-11" for a calendar month

    def closed(self, now_ms: int) -> bool:
        return now_ms >= self.end_ms + CLOSE_GRACE_MS


def month_period(month: str, zone: ZoneInfo) -> Period:
    """The calendar month ``YYYY-MM`` in ``zone``."""
    match = _MONTH.match(month) if isinstance(month, str) else None
    if match is None or not 1970 <= int(match.group(1)) <= 9998:
        raise BadRequest("'month' is a calendar month as YYYY-MM, e.g. 2026-11.", param="month")
    start = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=zone)
    return Period(_ms(start), _ms(add_months(start, 1, 1)), zone, month)


def range_period(start_ms: int | None, end_ms: int | None, zone: ZoneInfo) -> Period:
    """Any range [from, to), at most ``RANGE_DAYS_MAX`` days long."""
    if start_ms is None or end_ms is None:
        raise BadRequest("A statement needs 'month', or both 'from' and 'to'.", param="month")
    if not start_ms < end_ms <= start_ms + RANGE_DAYS_MAX * _DAY_MS:
        raise BadRequest(f"'to' must be after 'from', by at most {RANGE_DAYS_MAX} days.", param="to")
    return Period(start_ms, end_ms, zone)


def number(account: Account, period: Period) -> str:
    """``ST-2026-11-<the account id's random part>``; a range's names its first and last local days."""
    short = account.id.removeprefix("acct_")
    if period.month is not None:
        return f"ST-{period.month}-{short}"
    last = _local(period.end_ms - 1, period.zone).strftime("%Y%m%d")
    return f"ST-{_local(period.start_ms, period.zone).strftime('%Y%m%d')}-{last}-{short}"


def build(
    conn: Conn, account: Account, period: Period, now_ms: int, platform_name: str = PLATFORM_NAME
) -> dict[str, Any]:
    """The statement of ``account`` over ``period``, computed from the ledger now."""
    scope = lines.Scope(account.id, period.start_ms, period.end_ms, period.zone, _openings(conn, account, period))
    money = lines.money_section(conn, scope)
    packs = lines.pack_sections(conn, scope)
    allowances = lines.allowance_sections(conn, scope)
    budgets = lines.budget_sections(conn, scope)
    body = {
        "object": "statement",
        "number": number(account, period),
        "platform": {"name": platform_name},
        "account": {"id": account.id, "name": account.name, "tier": account.tier},
        "period": _period_dict(period),
        "final": period.closed(now_ms),
        "generated_at": iso(now_ms, period.zone),
        "generated_at_ms": now_ms,
        "currency": "CNY",
        "money": money,
        "packs": packs,
        "allowances": allowances,
        "budgets": budgets,
    }
    _check(conn, account.id, body, period)
    return body


def _openings(conn: Conn, account: Account, period: Period) -> ledger.Openings:
    """A calendar month opens at the closing of the previous month's stored statement, if that one ends
    exactly where this one starts (a change of the zone moves the boundary); else at the ledger's sums."""
    previous = _previous_month(period)
    stored = find_stored(conn, number(account, previous)) if previous is not None else None
    if stored is None or stored["period"]["to_ms"] != period.start_ms:
        return ledger.Openings()
    closings = {ledger_names.wallet(account.id): stored["money"]["closing_nano"]}
    for section in stored["packs"] + stored["allowances"] + stored.get("budgets", []):
        closings[section["ledger_account"]] = section["closing"]
    return ledger.Openings(closings)


def _previous_month(period: Period) -> Period | None:
    """The calendar month before ``period``'s (None for a range, or for January 1970)."""
    if period.month is None:
        return None
    year, month = divmod(int(period.month[:4]) * 12 + int(period.month[5:]) - 2, 12)
    return month_period(f"{year}-{month + 1:02d}", period.zone) if year >= 1970 else None


def _check(conn: Conn, account_id: str, body: dict[str, Any], period: Period) -> None:
    """Opening + movements = closing for each section; for a closed period, the closing against the opening
    plus the database's own sum of the period's movements, read apart from the lines. The opening is the
    ledger's sum, or a stored closing that was checked so when it was stored: so the closing is the
    ledger's balance at the period's end, without summing the account's history again."""
    sections = [(ledger_names.wallet(account_id), body["money"])]
    sections += [(s["ledger_account"], s) for s in body["packs"] + body["allowances"] + body["budgets"]]
    start, end = period.start_ms, period.end_ms
    for account, section in sections:
        opening, closing = _ends(section)
        moved = sum(section["totals"].values())
        invariant(opening + moved == closing, f"statement of {account}: opening + movements != closing")
        if period.closed(body["generated_at_ms"]):
            invariant(opening + ledger.moved(conn, account, start, end) == closing, f"{account}: closing != ledger")
    for section in body["packs"] + body["allowances"]:
        _check_draws(section)


def _check_draws(section: dict[str, Any]) -> None:
    """A pack's or window's draws by model and class add up to its draws, to the token (or request)."""
    usage, name = section["usage"], section["ledger_account"]
    invariant(usage["drawn"] == -section["totals"]["drawn"], f"{name}: usage != drawn")
    invariant(sum(m["drawn"] for m in usage["models"]) == usage["drawn"], f"{name}: models != drawn")
    for model in usage["models"]:
        classed, unattributed = sum(c["tokens"] for c in model["classes"]), model["unattributed"]
        if usage["unit"] == "tokens":
            invariant(classed + unattributed == model["drawn"], f"{name}: {model['model']}'s classes != drawn")
        else:  # a request has no token class: a window counting them is broken down by model only
            invariant(classed == 0 and 0 <= unattributed <= model["drawn"], f"{name}: {model['model']}'s requests")


def _ends(section: dict[str, Any]) -> tuple[int, int]:
    if "opening_nano" in section:
        return section["opening_nano"], section["closing_nano"]
    return section["opening"], section["closing"]


def _period_dict(period: Period) -> dict[str, Any]:
    return {
        "month": period.month,
        "from": iso(period.start_ms, period.zone),
        "to": iso(period.end_ms, period.zone),
        "from_ms": period.start_ms,
        "to_ms": period.end_ms,
        "zone": period.zone.key,
    }


# Stored statements


def serve(conn: Conn, account_ref: str, period: Period, now_ms: int, platform_name: str = PLATFORM_NAME) -> Any:
    """The statement to serve: a closed month's stored copy, or a live one (an open month, a range). For a
    closed month not stored yet: ``Unstored`` with the body built now, for ``store_job`` to store."""
    account = find_account(conn, account_ref)
    if period.month is not None and period.closed(now_ms):
        stored = find_stored(conn, number(account, period))
        if stored is not None:
            return stored
        return Unstored(build(conn, account, period, now_ms, platform_name), account.id)
    return with_digest(build(conn, account, period, now_ms, platform_name))


@dataclass(frozen=True, slots=True)
class Unstored:
    body: dict[str, Any]
    account_id: str


def store_job(unstored: Unstored) -> Callable[[Conn], dict[str, Any]]:
    """Store a closed month's statement, unless one was stored first (that one wins), and read it back. The
    body is built before, on a reader: a closed month's ledger rows no longer change."""

    def job(conn: Conn) -> dict[str, Any]:
        store(conn, unstored.body, unstored.account_id)
        found = find_stored(conn, unstored.body["number"])
        invariant(found is not None, "a stored statement reads back")
        return found or {}

    return job


def statement_job(
    account_ref: str, period: Period, now_ms: int, platform_name: str = PLATFORM_NAME
) -> Callable[[Conn], dict[str, Any]]:
    """``serve`` and, for a closed month's first generation, ``store_job``, in one job (the CLI's)."""

    def job(conn: Conn) -> dict[str, Any]:
        served = serve(conn, account_ref, period, now_ms, platform_name)
        return store_job(served)(conn) if isinstance(served, Unstored) else dict(served)

    return job


def canonical(body: dict[str, Any]) -> bytes:
    """The bytes the SHA-256 is taken of: the body's JSON with sorted keys and no spaces."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def with_digest(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "sha256": hashlib.sha256(canonical(body)).hexdigest()}


def store(conn: Conn, body: dict[str, Any], account_id: str) -> None:
    text = canonical(body)
    conn.execute(
        "INSERT INTO statements (number, account_id, month, from_ms, to_ms, body, sha256, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            body["number"],
            account_id,
            body["period"]["month"],
            body["period"]["from_ms"],
            body["period"]["to_ms"],
            text.decode(),
            hashlib.sha256(text).hexdigest(),
            body["generated_at_ms"],
        ),
    )


def find_stored(conn: Conn, statement_number: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body, sha256 FROM statements WHERE number = ?", (statement_number,)).fetchone()
    if row is None:
        return None
    body: dict[str, Any] = orjson.loads(row[0])
    invariant(hashlib.sha256(row[0].encode()).hexdigest() == row[1], f"statement {statement_number} was altered")
    return {**body, "sha256": row[1]}


def iso(ms: int, zone: ZoneInfo) -> str:
    return _local(ms, zone).isoformat(timespec="milliseconds")


def cny(nano: int) -> str:
    return nano_to_cny(nano)


def _local(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000
