"""Usage events: the immutable record of one request, written in the transaction that settles it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from suanli.store.conn import Conn
from suanli.store.db import now_ms


@dataclass(frozen=True, slots=True)
class UsageEvent:
    request_id: str
    account_id: str
    key_id: str
    model: str
    operator: str
    offer_id: str
    upstream_model: str
    stream: bool
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    estimated: bool  # counted locally because the upstream reported no usage
    price_input_nano: int
    price_cached_input_nano: int
    price_output_nano: int
    price_reasoning_nano: int
    reserved_nano: int
    cost_nano: int  # what was charged
    uncharged_nano: int  # priced usage beyond the reservation, absorbed by the platform
    outcome: str  # ok | cut_short | upstream_error | upstream_timeout | client_gone | recovered
    http_status: int
    error_code: str
    latency_ms: int
    ttft_ms: int | None
    created_at_ms: int
    attempts: int = 1  # upstream calls made for the request, the serving one included
    cache_write_tokens: int = 0  # input written to a prompt cache, a class of its own
    price_cache_write_nano: int = 0
    funding: str | None = None  # JSON: what each source gave, when plans or budgets funded it
    price_window: str | None = None  # the time-of-day window its prices were locked in; None before it was kept


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream call made for a request: kept for the operators' reliability statistics."""

    operator: str
    offer_id: str
    outcome: str  # ok | the error code of the failure
    http_status: int  # 0 when no HTTP answer came
    latency_ms: int


USAGE_COLUMNS = _COLUMNS = tuple(f.name for f in fields(UsageEvent))
_INSERT = f"INSERT INTO usage_events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


def insert_usage_event(conn: Conn, event: UsageEvent) -> None:
    # A flat tuple by attribute: dataclasses.astuple deep-copies and costs several times more.
    conn.execute(_INSERT, tuple(getattr(event, name) for name in _COLUMNS))


def insert_attempts(conn: Conn, request_id: str, attempts: Sequence[Attempt]) -> None:
    conn.executemany(
        "INSERT INTO upstream_attempts (request_id, attempt, operator, offer_id, outcome, http_status, latency_ms, "
        "created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (request_id, n, a.operator, a.offer_id, a.outcome, a.http_status, a.latency_ms, now_ms())
            for n, a in enumerate(attempts, start=1)
        ],
    )


def attempts_of(conn: Conn, request_id: str) -> list[Attempt]:
    rows = conn.execute(
        "SELECT operator, offer_id, outcome, http_status, latency_ms FROM upstream_attempts WHERE request_id = ? "
        "ORDER BY attempt",
        (request_id,),
    )
    return [Attempt(*row) for row in rows]


def row_to_event(row: Any) -> UsageEvent:
    values: dict[str, Any] = dict(row)
    values["stream"] = bool(values["stream"])
    values["estimated"] = bool(values["estimated"])
    return UsageEvent(**values)


def usage_event(conn: Conn, request_id: str) -> UsageEvent | None:
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM usage_events WHERE request_id = ?", (request_id,)).fetchone()
    return None if row is None else row_to_event(row)


def usage_events(conn: Conn, account_id: str, limit: int, since_ms: int = 0) -> list[UsageEvent]:
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM usage_events WHERE account_id = ? AND created_at_ms >= ? "
        "ORDER BY created_at_ms DESC, request_id DESC LIMIT ?",
        (account_id, since_ms, limit),
    ).fetchall()
    return [row_to_event(row) for row in rows]


def uncharged_by_offer(conn: Conn, since_ms: int = 0) -> list[tuple[str, str, int, int]]:
    """(operator, offer, calls, uncharged nano-CNY) of every offer whose usage a balance could not cover."""
    rows = conn.execute(
        "SELECT operator, offer_id, COUNT(*), SUM(uncharged_nano) FROM usage_events "
        "WHERE uncharged_nano > 0 AND created_at_ms >= ? GROUP BY operator, offer_id ORDER BY operator, offer_id",
        (since_ms,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]
