"""The ledger as the rest of the platform sees it: one small async interface, one implementation now.

``Ledger`` is the seam: SQLite (``SqliteLedger``, the embedded default) implements it today, and a
PostgreSQL implementation will implement the same methods. Every write goes through the group-commit
writer, so a reservation or settlement returns only once it is durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from suanli.ledger.model import Balance, Kind, Transfer
from suanli.ledger.sqlite import apply_entry, open_account, read_balance
from suanli.store.usage import Attempt, UsageEvent, insert_attempts, insert_usage_event
from suanli.store.writer import Writer

Adjustment = Callable[[sqlite3.Connection, UsageEvent], UsageEvent]


class Ledger(Protocol):
    async def open_account(self, account_id: str, asset: str, floor: int | None) -> None: ...

    async def submit(self, transfers: Sequence[Transfer], request_id: str = "") -> None:
        """Apply the transfers all together or not at all; raises ``LedgerRejected``. Durable before it
        returns unless every transfer is a reservation (see ``store.writer`` on why that is safe)."""

    async def settle(
        self,
        transfers: Sequence[Transfer],
        usage: UsageEvent,
        attempts: Sequence[Attempt],
        balance_of: str,
        *,
        alone: bool = False,
        adjust: Adjustment | None = None,
    ) -> tuple[Balance | None, UsageEvent]:
        """Apply the settlement transfers and record the usage event and upstream attempts in one durable
        step; return the balance of ``balance_of`` after it and the event as recorded. ``alone``: no other
        request is in flight. ``adjust`` runs in the same step after the transfers (charging what the
        reservations did not cover, a contract's rebate) and amends the event."""

    def balance(self, account_id: str) -> Balance | None: ...


def _settle_job(
    conn: sqlite3.Connection,
    transfers: Sequence[Transfer],
    usage: UsageEvent,
    attempts: Sequence[Attempt],
    balance_of: str,
    *,
    adjust: Adjustment | None = None,
) -> tuple[Balance | None, UsageEvent]:
    apply_entry(conn, transfers, usage.request_id)
    if adjust is not None:
        usage = adjust(conn, usage)
    insert_usage_event(conn, usage)
    if len(attempts) > 1 or any(a.outcome != "ok" for a in attempts):
        # A single successful attempt is the usage event itself; only failovers and failures need rows.
        insert_attempts(conn, usage.request_id, attempts)
    return read_balance(conn, balance_of), usage


def _open_job(conn: sqlite3.Connection, account_id: str, asset: str, floor: int | None) -> None:
    open_account(conn, account_id, asset, floor)


class SqliteLedger:
    def __init__(self, writer: Writer, reader: sqlite3.Connection) -> None:
        self._writer = writer
        self._reader = reader

    async def open_account(self, account_id: str, asset: str, floor: int | None) -> None:
        await self._writer.run(partial(_open_job, account_id=account_id, asset=asset, floor=floor))

    async def submit(self, transfers: Sequence[Transfer], request_id: str = "") -> None:
        durable = any(t.kind is not Kind.PENDING for t in transfers)
        await self._writer.run(partial(apply_entry, transfers=transfers, request_id=request_id), durable=durable)

    async def settle(
        self,
        transfers: Sequence[Transfer],
        usage: UsageEvent,
        attempts: Sequence[Attempt],
        balance_of: str,
        *,
        alone: bool = False,
        adjust: Adjustment | None = None,
    ) -> tuple[Balance | None, UsageEvent]:
        job = partial(_settle_job, transfers=transfers, usage=usage, attempts=attempts, balance_of=balance_of,
                      adjust=adjust)  # fmt: skip
        result: tuple[Balance | None, UsageEvent] = await self._writer.run(job, alone=alone)
        return result

    def balance(self, account_id: str) -> Balance | None:
        return read_balance(self._reader, account_id)
