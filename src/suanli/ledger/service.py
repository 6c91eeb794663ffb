"""The ledger as the rest of the platform sees it: one small async interface.

``StoreLedger`` implements ``Ledger`` on either store: its jobs call ``ledger/sqlite.py``, which applies
the rules in SQL on SQLite and through the server-side function on PostgreSQL (``ledger/postgres.py``).
Every write goes through the group-commit writer, so a reservation or settlement returns only once it is
durable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from suanli.ledger import postgres
from suanli.ledger.model import Balance, Kind, Transfer
from suanli.ledger.sqlite import apply_entry, open_account, read_balance
from suanli.store import cluster
from suanli.store.conn import Conn
from suanli.store.deferred import Deferred, Ordered
from suanli.store.usage import Attempt, UsageEvent, insert_attempts, insert_usage_event
from suanli.store.writer import Writer

Adjustment = Callable[[Conn, UsageEvent], UsageEvent]


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
        lock_account: str | None = None,
    ) -> tuple[Balance | None, UsageEvent]:
        """Apply the settlement transfers and record the usage event and upstream attempts in one durable
        step; return the balance of ``balance_of`` after it and the event as recorded. ``alone``: no other
        request is in flight. ``adjust`` runs in the same step after the transfers (charging what the
        reservations did not cover, a contract's rebate) and amends the event. ``lock_account``: the step
        first takes that account's lock (a call its plans or budgets funded, store/cluster.py)."""

    def balance(self, account_id: str) -> Balance | None: ...


def _settle_job(
    conn: Conn,
    transfers: Sequence[Transfer],
    usage: UsageEvent,
    attempts: Sequence[Attempt],
    balance_of: str,
    *,
    adjust: Adjustment | None = None,
    lock_account: str | None = None,
) -> tuple[Balance | None, UsageEvent]:
    if lock_account is not None:
        cluster.serialize(conn, cluster.account_lock(lock_account))
    apply_entry(conn, transfers, usage.request_id)
    if adjust is not None:
        usage = adjust(conn, usage)
    insert_usage_event(conn, usage)
    if _attempt_rows(attempts):
        insert_attempts(conn, usage.request_id, attempts)
    return read_balance(conn, balance_of), usage


def _attempt_rows(attempts: Sequence[Attempt]) -> bool:
    """A single successful attempt is the usage event itself; only failovers and failures need rows."""
    return len(attempts) > 1 or any(a.outcome != "ok" for a in attempts)


def _finish_settle(row: Any, usage: UsageEvent, balance_of: str) -> tuple[Balance | None, UsageEvent]:
    return postgres.finish_settle(row, balance_of), usage


def _open_job(conn: Conn, account_id: str, asset: str, floor: int | None) -> None:
    open_account(conn, account_id, asset, floor)


class StoreLedger:
    """The ledger on either store. ``pipelined`` (PostgreSQL): an entry, and a settlement that needs no
    adjustment, go to the writer as one statement each (store/deferred.py)."""

    def __init__(self, writer: Writer, reader: Conn, *, pipelined: bool = False) -> None:
        self._writer = writer
        self._reader = reader
        self._pipelined = pipelined

    async def open_account(self, account_id: str, asset: str, floor: int | None) -> None:
        await self._writer.run(partial(_open_job, account_id=account_id, asset=asset, floor=floor))

    async def submit(self, transfers: Sequence[Transfer], request_id: str = "") -> None:
        durable = any(t.kind is not Kind.PENDING for t in transfers)
        job: Callable[[Conn], None] = partial(apply_entry, transfers=transfers, request_id=request_id)
        if self._pipelined:
            order = transfers[0].debit_account if transfers else ""
            job = Deferred(job, postgres.entry_statement(transfers, request_id), postgres.finish_entry, order)
        await self._writer.run(job, durable=durable)

    async def settle(
        self,
        transfers: Sequence[Transfer],
        usage: UsageEvent,
        attempts: Sequence[Attempt],
        balance_of: str,
        *,
        alone: bool = False,
        adjust: Adjustment | None = None,
        lock_account: str | None = None,
    ) -> tuple[Balance | None, UsageEvent]:
        job: Callable[[Conn], tuple[Balance | None, UsageEvent]] = partial(
            _settle_job,
            transfers=transfers,
            usage=usage,
            attempts=attempts,
            balance_of=balance_of,
            adjust=adjust,
            lock_account=lock_account,
        )
        if lock_account is not None:
            job = Ordered(job, balance_of)
        elif self._pipelined and adjust is None and not _attempt_rows(attempts):
            statement = postgres.settle_statement(transfers, usage, balance_of)
            job = Deferred(job, statement, partial(_finish_settle, usage=usage, balance_of=balance_of), balance_of)
        return await self._writer.run(job, alone=alone)

    def balance(self, account_id: str) -> Balance | None:
        return read_balance(self._reader, account_id)
