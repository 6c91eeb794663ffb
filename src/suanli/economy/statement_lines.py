"""A statement's sections, one per ledger account of the account: the wallet in nano-CNY, each pack, each
allowance window and each budget window in its own units. Each movement is classified by its
counter-account and id, as the code that posts it names them (gateway/accounts.py top-ups,
economy/market.py purchases, transfers and expiries, ledger/entries.py and economy/funding.py settlements
and overruns, economy/contracts.py rebates); one that fits no class is an ``other`` line. Every section's
``totals`` are signed as they change the balance, so ``opening + sum(totals) = closing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from suanli.economy import contracts, windows
from suanli.economy import names as econ_names
from suanli.economy import statement_ledger as ledger
from suanli.economy.statement_ledger import Movement
from suanli.ledger import names as ledger_names
from suanli.store.conn import Conn

# A usage event's token classes: (class, tokens field, unit price field).
CLASSES = (
    ("input", "input_tokens", "price_input_nano"),
    ("cached_input", "cached_input_tokens", "price_cached_input_nano"),
    ("cache_write", "cache_write_tokens", "price_cache_write_nano"),
    ("output", "output_tokens", "price_output_nano"),
    ("reasoning", "reasoning_tokens", "price_reasoning_nano"),
)
NO_EVENT = "(no usage event)"  # a charge whose call left no usage event (none should)


@dataclass(slots=True)
class _Charge:
    request_id: str
    amount_nano: int  # what the wallet paid (positive)
    counts_call: bool  # the reservation's settlement, which counts the call and its tokens once
    movement: Movement


@dataclass(slots=True)
class _Usage:
    """The usage charges, grouped by model, then token class and unit price."""

    account_id: str
    start_ms: int
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    late: list[dict[str, Any]] = field(default_factory=list)
    batch: list[_Charge] = field(default_factory=list)

    def add(self, conn: Conn, charge: _Charge) -> None:
        self.batch.append(charge)
        if len(self.batch) >= ledger.USAGE_BATCH_ROWS:
            self.flush(conn)

    def flush(self, conn: Conn) -> None:
        events = ledger.usage_events(conn, self.account_id, sorted({c.request_id for c in self.batch}))
        for charge in self.batch:
            event = events.get(charge.request_id)
            model = self.models.setdefault(event.model if event else NO_EVENT, _model_row())
            model["charged_nano"] += charge.amount_nano
            if charge.counts_call and event is not None:
                model["calls"] += 1
                for name, tokens_field, price_field in CLASSES:
                    tokens, price = getattr(event, tokens_field), getattr(event, price_field)
                    if tokens:
                        model["classes"][(name, price)] = model["classes"].get((name, price), 0) + tokens
            reserved_at = charge.movement.reserved_at_ms
            if reserved_at is not None and reserved_at < self.start_ms:
                self.late.append(
                    {
                        "request_id": charge.request_id,
                        "model": event.model if event else None,
                        "call_made_ms": reserved_at,
                        "settled_ms": charge.movement.created_at_ms,
                        "amount_nano": -charge.amount_nano,
                    }
                )
        self.batch.clear()

    def section(self) -> dict[str, Any]:
        models = [_model_dict(name, row) for name, row in sorted(self.models.items())]
        return {
            "calls": sum(m["calls"] for m in models),
            "charged_nano": sum(m["charged_nano"] for m in models),
            "models": models,
        }


def _model_row() -> dict[str, Any]:
    return {"calls": 0, "charged_nano": 0, "classes": {}}


def _model_dict(name: str, row: dict[str, Any]) -> dict[str, Any]:
    classes = [
        {"class": c, "unit_price_nano": price, "tokens": tokens, "amount_nano": tokens * price}
        for (c, price), tokens in sorted(row["classes"].items(), key=lambda item: (_order(item[0][0]), item[0][1]))
    ]
    list_nano = sum(c["amount_nano"] for c in classes)
    return {
        "model": name,
        "calls": row["calls"],
        "list_nano": list_nano,
        "charged_nano": row["charged_nano"],
        "not_charged_to_wallet_nano": list_nano - row["charged_nano"],
        "classes": classes,
    }


def _order(name: str) -> int:
    return [c[0] for c in CLASSES].index(name)


def _usage_charge(m: Movement) -> _Charge | None:
    """A wallet movement that pays for a call: its reservation's settlement, or an overrun beyond it."""
    if m.counter_account == ledger_names.ESCROW and m.kind == "post" and m.id.endswith(".settle"):
        return _Charge(m.id.removesuffix(".settle"), -m.amount, True, m)
    if m.counter_account.startswith("sales:") and ".over." in m.id and m.amount < 0:
        return _Charge(m.id.rsplit(".over.", 1)[0], -m.amount, False, m)
    return None


def _purchase_type(m: Movement) -> str:
    if m.id.endswith(".buy"):
        return "pack"
    return "upgrade" if ".upgrade." in m.id else "subscription"


def _line(m: Movement, **extra: Any) -> dict[str, Any]:
    return {"id": m.id, "at_ms": m.created_at_ms, "amount_nano": m.amount, "memo": m.memo, **extra}


def money_section(conn: Conn, account_id: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The wallet: opening, top-ups, purchases, usage charges, rebates, other movements, closing, and the
    reservations open at the end (not movements: shown apart)."""
    wallet = ledger_names.wallet(account_id)
    opening = ledger.balance_before(conn, wallet, start_ms)
    usage = _Usage(account_id, start_ms)
    topups: list[dict[str, Any]] = []
    purchases: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    rebates = [0, 0]  # count, nano
    for m in ledger.movements(conn, wallet, start_ms, end_ms):
        charge = _usage_charge(m)
        if charge is not None:
            usage.add(conn, charge)
        elif m.counter_account == ledger_names.TOPUP_SOURCE:
            topups.append(_line(m))
        elif m.counter_account == econ_names.PLANS and m.amount < 0:
            purchases.append(_line(m, type=_purchase_type(m)))
        elif m.counter_account == contracts.DISCOUNTS and m.id.endswith(".rebate"):
            rebates[0], rebates[1] = rebates[0] + 1, rebates[1] + m.amount
        else:
            other.append(_line(m, counter_account=m.counter_account))
    usage.flush(conn)
    used = usage.section()
    totals = {
        "topups_nano": sum(t["amount_nano"] for t in topups),
        "purchases_nano": sum(p["amount_nano"] for p in purchases),
        "usage_nano": -used["charged_nano"],
        "rebates_nano": rebates[1],
        "other_nano": sum(o["amount_nano"] for o in other),
    }
    closing = opening + sum(totals.values())
    count, reserved = ledger.pending_at(conn, wallet, end_ms)
    return {
        "ledger_account": wallet,
        "opening_nano": opening,
        "topups": topups,
        "purchases": purchases,
        "usage": used,
        "rebates": {"count": rebates[0], "amount_nano": rebates[1]},
        "other": other,
        "late_settlements": usage.late,
        "totals": totals,
        "closing_nano": closing,
        "pending": {"reservations": count, "reserved_nano": reserved},
    }


def _pack_kind(m: Movement) -> str:
    counter = m.counter_account
    if counter.startswith("plans:issue:"):
        return "bought"
    if counter.startswith("pack:"):
        return "received" if m.amount > 0 else "sent"
    if counter.startswith("plans:spent:"):
        return "drawn"
    if counter.startswith("plans:forfeit:"):
        return "forfeited"
    return "other"


def _allowance_kind(m: Movement) -> str:
    if m.counter_account.startswith("plans:grants:"):
        return "granted"
    return "drawn" if m.counter_account.startswith("plans:spent:") else "other"


def _budget_kind(m: Movement) -> str:
    if m.counter_account.startswith("plans:grants:"):
        return "granted"
    return "used" if m.counter_account.startswith("plans:spent:") else "other"


PACK_TOTALS = ("bought", "received", "sent", "drawn", "forfeited", "other")
ALLOWANCE_TOTALS = ("granted", "drawn", "other")
BUDGET_TOTALS = ("granted", "used", "other")
LISTED = ("bought", "received", "sent", "forfeited", "other")  # a pack's lines; draws are summed, not listed


def _token_section(
    conn: Conn,
    account: str,
    start_ms: int,
    end_ms: int,
    *,
    kinds: tuple[str, ...],
    listed: tuple[str, ...],
    classify: Callable[[Movement], str],
) -> dict[str, Any] | None:
    """One token (or budget) account's section; None if nothing was held, moved or reserved in the period.
    ``draws`` counts the movements of its second kind (a pack's or a window's draws, a budget's uses)."""
    opening = ledger.balance_before(conn, account, start_ms)
    totals = dict.fromkeys(kinds, 0)
    rows: list[dict[str, Any]] = []
    draws = 0
    for m in ledger.movements(conn, account, start_ms, end_ms):
        kind = classify(m)
        totals[kind] += m.amount
        draws += kind in ("drawn", "used")
        if kind in listed:
            rows.append(
                {
                    "id": m.id,
                    "at_ms": m.created_at_ms,
                    "kind": kind,
                    "tokens": m.amount,
                    "counter_account": m.counter_account,
                    "memo": m.memo,
                }
            )
    count, reserved = ledger.pending_at(conn, account, end_ms)
    if opening == 0 and not rows and not draws and not count:
        return None
    return {
        "ledger_account": account,
        "opening": opening,
        "totals": totals,
        "draws": draws,
        "lines": rows,
        "closing": opening + sum(totals.values()),
        "pending": {"reservations": count, "reserved": reserved},
    }


def pack_sections(conn: Conn, account_id: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Each pack of the account that held, moved or reserved tokens in the period."""
    rows = conn.execute(
        "SELECT id, product_id, expires_at_ms FROM packs WHERE account_id = ? AND created_at_ms < ? "
        "ORDER BY created_at_ms, id",
        (account_id, end_ms),
    ).fetchall()
    sections = []
    for pack_id, product_id, expires_at_ms in rows:
        section = _token_section(
            conn, econ_names.pack(pack_id), start_ms, end_ms, kinds=PACK_TOTALS, listed=LISTED, classify=_pack_kind
        )
        if section is not None:
            sections.append({"pack": pack_id, "product": product_id, "expires_at_ms": expires_at_ms, **section})
    return sections


def allowance_sections(conn: Conn, account_id: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Each allowance window of the account's subscriptions open during the period, in requests or tokens."""
    rows = conn.execute(
        "SELECT w.subscription_id, s.product_id, w.window_name, w.unit, w.start_ms, w.end_ms, w.amount "
        "FROM allowance_windows w JOIN subscriptions s ON s.id = w.subscription_id "
        "WHERE s.account_id = ? AND w.start_ms < ? AND w.end_ms > ? ORDER BY w.start_ms, w.window_name, w.unit",
        (account_id, end_ms, start_ms),
    ).fetchall()
    sections = []
    for sub_id, product_id, window, unit, window_start, window_end, amount in rows:
        account = econ_names.allowance(sub_id, window, unit, window_start)
        section = _token_section(
            conn, account, start_ms, end_ms, kinds=ALLOWANCE_TOTALS, listed=("other",), classify=_allowance_kind
        )
        if section is not None:
            sections.append(
                {
                    "subscription": sub_id,
                    "product": product_id,
                    "window": window,
                    "unit": unit,
                    "window_start_ms": window_start,
                    "window_end_ms": window_end,
                    "allowance": amount,
                    **section,
                }
            )
    return sections


# A budget's windows, as economy/funding.py opens them (in the platform's zone, as a statement's period is).
BUDGET_WINDOWS: dict[str, Callable[[int, ZoneInfo], tuple[int, int]]] = {
    "day": windows.day,
    "week": windows.week,
    "month": windows.calendar_month,
}


def budget_sections(conn: Conn, account_id: str, start_ms: int, end_ms: int, zone: ZoneInfo) -> list[dict[str, Any]]:
    """Each window of the account's budgets (of the account or of a key) open during the period and opened
    by a call, in nano-CNY or tokens: granted, used (what the ledger debited to it) and what remained."""
    rows = conn.execute(
        "SELECT id, key_id, period, unit, amount, created_at_ms FROM budgets WHERE account_id = ? "
        "AND created_at_ms < ? AND (removed_at_ms IS NULL OR removed_at_ms > ?) ORDER BY created_at_ms, id",
        (account_id, end_ms, start_ms),
    ).fetchall()
    sections = []
    for budget_id, key_id, period, unit, amount, created_at_ms in rows:
        for window_start, window_end in _budget_windows(period, max(start_ms, created_at_ms), end_ms, zone):
            account = econ_names.budget(budget_id, window_start)
            section = _token_section(
                conn, account, start_ms, end_ms, kinds=BUDGET_TOTALS, listed=("other",), classify=_budget_kind
            )
            if section is not None:
                sections.append(
                    {
                        "budget": budget_id,
                        "key": key_id,
                        "period": period,
                        "unit": unit,
                        "window_start_ms": window_start,
                        "window_end_ms": window_end,
                        "granted": amount,
                        **section,
                    }
                )
    return sorted(sections, key=lambda s: (s["window_start_ms"], s["budget"]))


def _budget_windows(period: str, from_ms: int, end_ms: int, zone: ZoneInfo) -> Iterator[tuple[int, int]]:
    """The budget's windows that overlap [from, end): for a day's budget, a window a day (a period is at most
    a year long, statements.RANGE_DAYS_MAX)."""
    at = from_ms
    while at < end_ms:
        window = BUDGET_WINDOWS[period](at, zone)
        yield window
        at = window[1]
