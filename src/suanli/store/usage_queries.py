"""Reading usage events back for people: a filtered page of calls, sums by UTC quarter hour, spend since.

The SQL is written once for both stores (``store/conn.py``). Summaries are summed here by 15-minute UTC slot
(``created_at_ms / 900000``, integer division in SQLite and PostgreSQL alike) and folded into hours or days
of the asked zone in Python (``metering/periods.py``): every zone's offset since 1972 is a whole number of
quarter hours, so a slot never straddles a local hour or day, and no database needs to know the zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from suanli.ledger import names as ledger_names
from suanli.store.conn import Conn
from suanli.store.usage import USAGE_COLUMNS, UsageEvent, row_to_event

SLOT_MS = 900_000  # a quarter hour: the finest unit of every zone's offset in use since 1972
TOKEN_CLASSES = ("input", "cached_input", "cache_write", "output", "reasoning")
_TOKENS = "input_tokens + cached_input_tokens + cache_write_tokens + output_tokens + reasoning_tokens"
# What a summary may be grouped by: a fixed column each, never text from a request.
GROUP_COLUMNS = {
    "model": "u.model",
    "key": "u.key_id",
    "operator": "u.operator",
    "account": "u.account_id",
    "tier": "a.tier",
}
_CLASS_SUMS = ", ".join(
    f"SUM(u.{c}_tokens), SUM(u.{c}_tokens * u.price_{c}_nano), SUM(CASE WHEN u.{c}_tokens > 0 THEN 1 ELSE 0 END)"
    for c in TOKEN_CLASSES
)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which events: one account's (or every account's, None), from ``from_ms`` (inclusive) to ``to_ms``
    (exclusive), and optionally of one model, key, operator or outcome."""

    account_id: str | None
    from_ms: int
    to_ms: int
    model: str | None = None
    key_id: str | None = None
    operator: str | None = None
    outcome: str | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses = ["u.created_at_ms >= ?", "u.created_at_ms < ?"]
        params: list[object] = [self.from_ms, self.to_ms]
        for column, value in (
            ("account_id", self.account_id),
            ("model", self.model),
            ("key_id", self.key_id),
            ("operator", self.operator),
            ("outcome", self.outcome),
        ):
            if value is not None:
                clauses.append(f"u.{column} = ?")
                params.append(value)
        return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class ClassSums:
    tokens: int
    cost_nano: int  # tokens × the event's price for the class, summed
    calls: int  # calls with tokens of the class


@dataclass(frozen=True, slots=True)
class SlotSums:
    """The events of one quarter hour (and group): counts, tokens, what was charged, and each class."""

    slot_ms: int
    group: str | None
    calls: int
    tokens: int
    cost_nano: int
    uncharged_nano: int
    classes: dict[str, ClassSums]


def usage_page(conn: Conn, f: UsageFilter, limit: int, before: tuple[int, str | None] | None) -> list[UsageEvent]:
    """Newest first, at most ``limit``: events before ``before`` (a time, or a time and the request id of the
    last event seen at that time, so a page never splits or skips the events of one millisecond)."""
    where, params = f.where()
    if before is not None:
        before_ms, before_id = before
        if before_id is None:
            where += " AND u.created_at_ms < ?"
            params.append(before_ms)
        else:
            where += " AND (u.created_at_ms < ? OR (u.created_at_ms = ? AND u.request_id < ?))"
            params += [before_ms, before_ms, before_id]
    columns = ", ".join(f"u.{c}" for c in USAGE_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns} FROM usage_events u WHERE {where} ORDER BY u.created_at_ms DESC, u.request_id DESC LIMIT ?",
        (*params, limit),
    )
    return [row_to_event(row) for row in rows]


def slot_sums(conn: Conn, f: UsageFilter, by: str | None) -> list[SlotSums]:
    """The events ``f`` selects, summed by quarter hour and by ``by`` (a key of ``GROUP_COLUMNS``, or None)."""
    where, params = f.where()
    group = GROUP_COLUMNS[by] if by is not None else None
    join = " JOIN accounts a ON a.id = u.account_id" if by == "tier" else ""
    slot = f"u.created_at_ms / {SLOT_MS}"
    rows = conn.execute(
        f"SELECT {slot}, {group or 'NULL'}, COUNT(*), SUM({_TOKENS}), SUM(u.cost_nano), SUM(u.uncharged_nano), "
        f"{_CLASS_SUMS} FROM usage_events u{join} WHERE {where} GROUP BY {slot}{f', {group}' if group else ''}",
        params,
    )
    return [_slot_sums(row) for row in rows]


def _slot_sums(row: Any) -> SlotSums:
    values = tuple(row)
    classes = {
        name: ClassSums(int(values[6 + 3 * i]), int(values[7 + 3 * i]), int(values[8 + 3 * i]))
        for i, name in enumerate(TOKEN_CLASSES)
    }
    return SlotSums(
        int(values[0]) * SLOT_MS,
        None if values[1] is None else str(values[1]),
        int(values[2]),
        int(values[3]),
        int(values[4]),
        int(values[5]),
        classes,
    )


@dataclass(frozen=True, slots=True)
class Spend:
    calls: int
    tokens: int
    cost_nano: int


def spend_by_key(conn: Conn, account_id: str, since_ms: int) -> dict[str, Spend]:
    """An account's calls, tokens and cost since ``since_ms``, by key."""
    rows = conn.execute(
        f"SELECT key_id, COUNT(*), SUM({_TOKENS}), SUM(cost_nano) FROM usage_events "
        "WHERE account_id = ? AND created_at_ms >= ? GROUP BY key_id",
        (account_id, since_ms),
    )
    return {str(r[0]): Spend(int(r[1]), int(r[2]), int(r[3])) for r in rows}


def pack_fundings(conn: Conn, account_id: str, since_ms: int) -> Iterator[str]:
    """The ``funding`` of an account's events since ``since_ms`` that a pack funded (JSON texts)."""
    rows = conn.execute(
        "SELECT funding FROM usage_events WHERE account_id = ? AND created_at_ms >= ? AND funding LIKE ?",
        (account_id, since_ms, '%"pack:%'),
    )
    for row in rows:
        yield str(row[0])


# Top-ups are read from the ledger by their source, through a partial index of their own (schema.py): a
# query names the source as the same literal so that SQLite uses it.
_TOPUPS = (
    "SELECT id, credit_account, amount, created_at_ms FROM transfers "
    f"WHERE debit_account = '{ledger_names.TOPUP_SOURCE}' ORDER BY created_at_ms DESC, id DESC LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class Topup:
    transfer_id: str
    account_id: str
    amount_nano: int
    at_ms: int


def recent_topups(conn: Conn, limit: int) -> list[Topup]:
    return [
        Topup(str(r[0]), str(r[1]).removeprefix("wallet:"), int(r[2]), int(r[3]))
        for r in conn.execute(_TOPUPS, (limit,))
    ]
