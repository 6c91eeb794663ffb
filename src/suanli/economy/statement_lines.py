"""A statement's sections, one per ledger account of the account: the wallet in nano-CNY, each pack, each
allowance window and each budget window in its own units. Each movement is classified by its
counter-account and id, as the code that posts it names them (gateway/accounts.py top-ups,
economy/market.py purchases, transfers and expiries, ledger/entries.py and economy/funding.py settlements
and overruns, economy/contracts.py rebates); one that fits no class is an ``other`` line. Every section's
``totals`` are signed as they change the balance, so ``opening + sum(totals) = closing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from suanli.economy import contracts, windows
from suanli.economy import names as econ_names
from suanli.economy import statement_ledger as ledger
from suanli.economy.statement_ledger import Movement
from suanli.ledger import names as ledger_names
from suanli.store.conn import Conn
from suanli.store.usage import UsageEvent

# A usage event's token classes: (class, tokens field, unit price field).
CLASSES = (
    ("input", "input_tokens", "price_input_nano"),
    ("cached_input", "cached_input_tokens", "price_cached_input_nano"),
    ("cache_write", "cache_write_tokens", "price_cache_write_nano"),
    ("output", "output_tokens", "price_output_nano"),
    ("reasoning", "reasoning_tokens", "price_reasoning_nano"),
)
NO_EVENT = "(no usage event)"  # a charge or draw whose call left no usage event (none should)


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose statement, over which period in which zone, and where each section's opening comes from."""

    account_id: str
    start_ms: int
    end_ms: int
    zone: ZoneInfo
    opening: Callable[[Conn, str, int], int] = ledger.balance_before


@dataclass(slots=True)
class _Charge:
    request_id: str
    amount: int  # what the source gave (positive): nano-CNY from the wallet, tokens or requests from a plan
    counts_call: bool  # the reservation's settlement, which counts the call and its tokens once
    movement: Movement


Fold = Callable[[list[_Charge], UsageEvent | None], None]


@dataclass(slots=True)
class _Charges:
    """Charges to explain by their calls' usage events, grouped by request, in batches of at most
    ``USAGE_BATCH_ROWS`` requests whose events are read in one query; ``fold`` takes each request's charges
    and its event (None if it has none). A call's movements are posted together, so they come together in
    posting order and fall in one batch; one split by a batch's end is folded as two requests."""

    account_id: str
    fold: Fold
    batch: dict[str, list[_Charge]] = field(default_factory=dict)

    def add(self, conn: Conn, charge: _Charge) -> None:
        if charge.request_id not in self.batch and len(self.batch) >= ledger.USAGE_BATCH_ROWS:
            self.flush(conn)
        self.batch.setdefault(charge.request_id, []).append(charge)

    def flush(self, conn: Conn) -> None:
        events = ledger.usage_events(conn, self.account_id, sorted(self.batch))
        for request_id, charges in self.batch.items():
            self.fold(charges, events.get(request_id))
        self.batch.clear()


def _class_tokens(event: UsageEvent) -> list[tuple[str, int, int]]:
    """The event's token classes that were used: (class, tokens, unit price)."""
    found = ((name, getattr(event, tokens), getattr(event, price)) for name, tokens, price in CLASSES)
    return [(name, tokens, price) for name, tokens, price in found if tokens]


@dataclass(slots=True)
class _Usage:
    """The wallet's usage charges, grouped by model, then token class and unit price."""

    start_ms: int
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    late: list[dict[str, Any]] = field(default_factory=list)

    def fold(self, charges: list[_Charge], event: UsageEvent | None) -> None:
        model = self.models.setdefault(event.model if event else NO_EVENT, _model_row())
        for charge in charges:
            model["charged_nano"] += charge.amount
            if charge.counts_call and event is not None:
                model["calls"] += 1
                for name, tokens, price in _class_tokens(event):
                    model["classes"][(name, price)] = model["classes"].get((name, price), 0) + tokens
            reserved_at = charge.movement.reserved_at_ms
            if reserved_at is not None and reserved_at < self.start_ms:
                self.late.append(
                    {
                        "request_id": charge.request_id,
                        "model": event.model if event else None,
                        "call_made_ms": reserved_at,
                        "settled_ms": charge.movement.created_at_ms,
                        "amount_nano": -charge.amount,
                    }
                )

    def section(self) -> dict[str, Any]:
        models = [_model_dict(name, row) for name, row in sorted(self.models.items())]
        return {
            "calls": sum(m["calls"] for m in models),
            "charged_nano": sum(m["charged_nano"] for m in models),
            "models": models,
        }


def _draw_row() -> dict[str, Any]:
    return {"calls": 0, "drawn": 0, "classes": {}, "unattributed": 0}


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


@dataclass(slots=True)
class _Draws:
    """A pack's or an allowance window's draws, grouped by model and token class. The ledger's amounts are
    the truth: a call's draw is put under its classes only if their tokens add up to it exactly (a pack
    that weighs the classes, or pays a call in part, draws other amounts), else under its model's
    ``unattributed``, as is a draw with no usage event; so the breakdown adds up to the draws to the token.
    A window counting requests is broken down by model only (a request has no token class)."""

    unit: str  # "tokens" | "requests"
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fold(self, charges: list[_Charge], event: UsageEvent | None) -> None:
        drawn = sum(charge.amount for charge in charges)
        model = self.models.setdefault(event.model if event else NO_EVENT, _draw_row())
        model["calls"] += 1
        model["drawn"] += drawn
        if event is not None and self.unit == "requests":
            return  # the request counts under its model
        classes = _class_tokens(event) if event is not None else []
        if event is None or sum(tokens for _, tokens, _ in classes) != drawn:
            model["unattributed"] += drawn
            return
        for name, tokens, _ in classes:
            model["classes"][name] = model["classes"].get(name, 0) + tokens

    def section(self) -> dict[str, Any]:
        models = [
            {
                "model": name,
                "calls": row["calls"],
                "drawn": row["drawn"],
                "classes": [{"class": c, "tokens": row["classes"][c]} for c in sorted(row["classes"], key=_order)],
                "unattributed": row["unattributed"],
            }
            for name, row in sorted(self.models.items())
        ]
        return {
            "unit": self.unit,
            "calls": sum(m["calls"] for m in models),
            "drawn": sum(m["drawn"] for m in models),
            "unattributed": sum(m["unattributed"] for m in models),
            "models": models,
        }


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


def money_section(conn: Conn, scope: Scope) -> dict[str, Any]:
    """The wallet: opening, top-ups, purchases, usage charges, rebates, other movements, closing, and the
    reservations open at the end (not movements: shown apart)."""
    wallet = ledger_names.wallet(scope.account_id)
    opening = scope.opening(conn, wallet, scope.start_ms)
    usage = _Usage(scope.start_ms)
    charges = _Charges(scope.account_id, usage.fold)
    topups: list[dict[str, Any]] = []
    purchases: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    rebates = [0, 0]  # count, nano
    for m in ledger.movements(conn, wallet, scope.start_ms, scope.end_ms):
        charge = _usage_charge(m)
        if charge is not None:
            charges.add(conn, charge)
        elif m.counter_account == ledger_names.TOPUP_SOURCE:
            topups.append(_line(m))
        elif m.counter_account == econ_names.PLANS and m.amount < 0:
            purchases.append(_line(m, type=_purchase_type(m)))
        elif m.counter_account == contracts.DISCOUNTS and m.id.endswith(".rebate"):
            rebates[0], rebates[1] = rebates[0] + 1, rebates[1] + m.amount
        else:
            other.append(_line(m, counter_account=m.counter_account))
    charges.flush(conn)
    used = usage.section()
    totals = {
        "topups_nano": sum(t["amount_nano"] for t in topups),
        "purchases_nano": sum(p["amount_nano"] for p in purchases),
        "usage_nano": -used["charged_nano"],
        "rebates_nano": rebates[1],
        "other_nano": sum(o["amount_nano"] for o in other),
    }
    count, reserved = ledger.pending_at(conn, wallet, scope.end_ms)
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
        "closing_nano": opening + sum(totals.values()),
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


@dataclass(frozen=True, slots=True)
class _Kinds:
    """How a token or budget account's movements are classified and shown."""

    totals: tuple[str, ...]  # the classes, each a key of the section's totals
    listed: tuple[str, ...]  # the classes listed one line each; the others are only summed
    draw: str  # the class counted in ``draws`` (and for a pack or window broken down in ``usage``)
    classify: Callable[[Movement], str]


# A pack's draws are summed and broken down by model and token class (``usage``), not listed one by one.
PACK_TOTALS = ("bought", "received", "sent", "drawn", "forfeited", "other")
PACK = _Kinds(PACK_TOTALS, tuple(k for k in PACK_TOTALS if k != "drawn"), "drawn", _pack_kind)
ALLOWANCE = _Kinds(("granted", "drawn", "other"), ("other",), "drawn", _allowance_kind)
BUDGET = _Kinds(("granted", "used", "other"), ("other",), "used", _budget_kind)


@dataclass(slots=True)
class _Tally:
    """A token or budget account's movements over the period, as ``_Kinds`` classifies them; its draws,
    if ``charges`` is given, explained by their calls' usage events."""

    kinds: _Kinds
    charges: _Charges | None
    totals: dict[str, int]
    lines: list[dict[str, Any]] = field(default_factory=list)
    draws: int = 0
    moved: bool = False

    def add(self, conn: Conn, m: Movement) -> None:
        kind = self.kinds.classify(m)
        self.totals[kind] += m.amount
        self.moved = True
        if kind == self.kinds.draw:
            self.draws += 1
            if self.charges is not None:  # a call's draws are ``{request}.{leg}.post`` and ``{request}.over.{leg}``
                self.charges.add(conn, _Charge(m.id.split(".", 1)[0], -m.amount, True, m))
        if kind in self.kinds.listed:
            self.lines.append(
                {
                    "id": m.id,
                    "at_ms": m.created_at_ms,
                    "kind": kind,
                    "tokens": m.amount,
                    "counter_account": m.counter_account,
                    "memo": m.memo,
                }
            )


def _token_section(
    conn: Conn, scope: Scope, account: str, kinds: _Kinds, *, unit: str | None = None, held_shows: bool = True
) -> dict[str, Any] | None:
    """One token (or budget) account's section; None if nothing moved or was reserved in the period and
    it held nothing at its start (or ``held_shows`` is False: a window that had ended). ``unit``: break
    the draws down by model and class, in tokens or requests."""
    opening = scope.opening(conn, account, scope.start_ms)
    usage = _Draws(unit) if unit is not None else None
    tally = _Tally(kinds, _Charges(scope.account_id, usage.fold) if usage else None, dict.fromkeys(kinds.totals, 0))
    for m in ledger.movements(conn, account, scope.start_ms, scope.end_ms):
        tally.add(conn, m)
    if tally.charges is not None:
        tally.charges.flush(conn)
    count, reserved = ledger.pending_at(conn, account, scope.end_ms)
    if not tally.moved and not count and (opening == 0 or not held_shows):
        return None
    return {
        "ledger_account": account,
        "opening": opening,
        "totals": tally.totals,
        "draws": tally.draws,
        "lines": tally.lines,
        **({"usage": usage.section()} if usage is not None else {}),
        "closing": opening + sum(tally.totals.values()),
        "pending": {"reservations": count, "reserved": reserved},
    }


def pack_sections(conn: Conn, scope: Scope) -> list[dict[str, Any]]:
    """Each pack of the account that held, moved or reserved tokens in the period."""
    rows = conn.execute(
        "SELECT id, product_id, expires_at_ms FROM packs WHERE account_id = ? AND created_at_ms < ? "
        "ORDER BY created_at_ms, id",
        (scope.account_id, scope.end_ms),
    ).fetchall()
    sections = []
    for pack_id, product_id, expires_at_ms in rows:
        section = _token_section(conn, scope, econ_names.pack(pack_id), PACK, unit="tokens")
        if section is not None:
            sections.append({"pack": pack_id, "product": product_id, "expires_at_ms": expires_at_ms, **section})
    return sections


def allowance_sections(conn: Conn, scope: Scope) -> list[dict[str, Any]]:
    """Each allowance window of the account's subscriptions open during the period, in requests or tokens."""
    rows = conn.execute(
        "SELECT w.subscription_id, s.product_id, w.window_name, w.unit, w.start_ms, w.end_ms, w.amount "
        "FROM allowance_windows w JOIN subscriptions s ON s.id = w.subscription_id "
        "WHERE s.account_id = ? AND w.start_ms < ? AND w.end_ms > ? ORDER BY w.start_ms, w.window_name, w.unit",
        (scope.account_id, scope.end_ms, scope.start_ms),
    ).fetchall()
    sections = []
    for sub_id, product_id, window, unit, window_start, window_end, amount in rows:
        account = econ_names.allowance(sub_id, window, unit, window_start)
        section = _token_section(conn, scope, account, ALLOWANCE, unit=unit)
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
BUDGET_WINDOW_MS_MAX = 32 * 86_400_000  # longer than any budget window (a month of 31 days and an hour)
# A reservation made in a budget window may be settled after the window's end: by its call, or by the sweep
# once it is older than limits.RESERVATION_STALE_S (minutes), or days later if every gateway was down. A
# window that ended this long before the period is looked at too, and shown if it moved in the period.
BUDGET_LATE_MS = 7 * 86_400_000
_PROBE_MS = 2 * 86_400_000  # into a window opened under another zone: inside the same day, week or month here


def budget_sections(conn: Conn, scope: Scope) -> list[dict[str, Any]]:
    """Each window of the account's budgets (of the account or of a key) that a call opened and that
    overlaps the period, in nano-CNY or tokens: granted, used (what the ledger debited to it) and what
    remained; and one that ended just before the period, if a late settlement moved it in the period."""
    rows = conn.execute(
        "SELECT id, key_id, period, unit, amount, created_at_ms FROM budgets WHERE account_id = ? "
        "AND created_at_ms < ? AND (removed_at_ms IS NULL OR removed_at_ms > ?) ORDER BY created_at_ms, id",
        (scope.account_id, scope.end_ms, scope.start_ms - BUDGET_WINDOW_MS_MAX - BUDGET_LATE_MS),
    ).fetchall()
    sections = []
    for budget_id, key_id, period, unit, amount, _ in rows:
        for window_start, window_end in budget_windows(conn, budget_id, period, scope):
            account = econ_names.budget(budget_id, window_start)
            section = _token_section(conn, scope, account, BUDGET, held_shows=window_end > scope.start_ms)
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


def budget_windows(conn: Conn, budget_id: str, period: str, scope: Scope) -> list[tuple[int, int]]:
    """The windows of the budget that calls opened (its ledger accounts ``budget:{budget}:{start}``, found
    by their ids) and that end after the period's start less ``BUDGET_LATE_MS`` and start before its end.
    Ids in a range of starts with as many digits as the range's ends sort as their starts do, so the read
    is narrowed to that range when its ends have as many digits; the starts read are then checked."""
    prefix = econ_names.budget(budget_id, 0).removesuffix("0")  # the ids' common part
    first, last = scope.start_ms - BUDGET_WINDOW_MS_MAX - BUDGET_LATE_MS, scope.end_ms
    low, high = prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if first >= 0 and len(str(first)) == len(str(last)):
        low, high = prefix + str(first), prefix + str(last)
    found = []
    for account in ledger.accounts_between(conn, low, high):
        start_text = account.removeprefix(prefix)
        if account.startswith(prefix) and start_text.isdigit():
            window = budget_window(period, int(start_text), scope.zone)
            if window[0] < scope.end_ms and window[1] > scope.start_ms - BUDGET_LATE_MS:
                found.append(window)
    return found


def budget_window(period: str, start_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """The budget window of ``period`` that starts at ``start_ms``: as ``zone`` makes it, or, for one opened
    under another zone (the platform's zone changed since), from its start for as long as ``zone``'s window
    of the same period two days in lasts (a day, a week, that calendar month; off by at most the hour a
    change of daylight saving time in one zone and not the other makes)."""
    window = BUDGET_WINDOWS[period]
    opened = window(start_ms, zone)
    if opened[0] == start_ms:
        return opened
    probe = window(start_ms + _PROBE_MS, zone)
    return start_ms, start_ms + probe[1] - probe[0]
