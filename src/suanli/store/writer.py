"""Group commit: one writer thread runs the jobs of many requests in one transaction, one fsync a batch.

A request hands its job (a function of the connection) to ``GroupCommitWriter.run`` and awaits it.
The thread takes every job waiting (up to ``LEDGER_BATCH_OPS_MAX``), runs each inside its own SAVEPOINT
so one job's failure rolls back only that job, commits once, and then wakes all the waiting requests in
one call into their event loop. A job's result is delivered only after the commit that made it durable.
The sqlite3 module releases the GIL while SQLite works and syncs, so the event loop keeps serving.

Durability is per job. A job that records money spent or received (a settlement, a top-up) is
``durable``: its batch commits with ``synchronous=FULL`` and returns only after the fsync. A reservation
is not: its batch commits with ``synchronous=NORMAL`` (atomic and consistent; in WAL mode it survives
the process dying, and may only be lost if the machine loses power). A reservation lost that way is the
same as a voided one: the request it guarded died with the machine and charged nothing. The next
durable commit syncs every earlier commit too, since the WAL is written in order.

A job that needs no fsync, arriving when nothing is queued and the thread is idle, runs at once on the
caller's thread (under the same lock as the thread's batches): at low load that saves the two thread
hand-offs, at high load jobs queue and are batched as above. A durable job does so only when its caller
says it is ``alone`` (the gateway's only request in flight): its fsync then blocks the event loop, but
there is nothing else for the loop to do and no batch to share the fsync with.

The store can fail a batch (a "database is locked" while the CLI writes, a full disk). Nothing is then
lost while the process lives: the batch's jobs are tried again one by one, each in its own transaction
with the same ids (every job is idempotent or was rolled back whole), with backoff, up to
``STORE_RETRY_FOR_S``; only a job still failing then reports the failure to its caller. Back-pressure
(``LEDGER_QUEUE_DEPTH_MAX``) refuses new admissions only (``shed=True``), never a settlement: those are
bounded by the calls already admitted. The inline path never waits on a lock: its connection does not
wait for SQLite's busy handler, and a job that finds the database locked goes to the thread instead,
which waits with backoff, off the event loop.

``sync_money=False`` (setting ``SUANLI_DURABILITY=process``) commits settlements without an fsync as
well: every commit still survives the process dying, but the last few may be lost if the machine loses
power, and recovery then voids their reservations (the customers are not charged for those calls).
It is the operator's trade: about a quarter of a millisecond per request on a disk like this one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from suanli.errors import ServiceUnavailable
from suanli.limits import (
    LEDGER_BATCH_OPS_MAX,
    LEDGER_QUEUE_DEPTH_MAX,
    STORE_RETRY_BACKOFF_MAX_S,
    STORE_RETRY_BACKOFF_S,
    STORE_RETRY_FOR_S,
)
from suanli.store.db import connect

log = logging.getLogger("suanli.writer")

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]


class Writer(Protocol):
    """What the ledger and the admin API need of a writer: run a job in a group commit."""

    def start(self) -> None: ...

    async def run(
        self, job: Callable[[sqlite3.Connection], T], *, durable: bool = True, alone: bool = False, shed: bool = False
    ) -> T: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Pending:
    job: Job
    durable: bool
    future: asyncio.Future[Any] | None  # None for a job run inline by its caller
    loop: asyncio.AbstractEventLoop | None
    outcome: tuple[bool, Any] = field(default=(False, None))


def _deliver(batch: list[_Pending]) -> None:
    """Runs in the event loop: hand each job's outcome to its awaiting request."""
    for item in batch:
        if item.future is None or item.future.done():  # cancelled: its job still ran and committed
            continue
        ok, value = item.outcome
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)


class GroupCommitWriter:
    """The single writer of one SQLite database file."""

    def __init__(self, path: str | Path, *, sync_money: bool = True) -> None:
        self._path = str(path)
        self._sync_money = sync_money
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="suanli-writer", daemon=True)
        self._busy = threading.Lock()  # held by whoever is using the connection: the thread or run()
        self._conn: sqlite3.Connection | None = None
        self._started = False
        self._synchronous = _Synchronous()
        self.batches_committed = 0
        self.jobs_committed = 0
        self.store_retries = 0  # jobs tried again after the store failed their batch

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._conn = connect(self._path)
            # SQLite's busy handler would make a job wait for another process's lock wherever it runs, the
            # event loop's thread included; the writer waits instead, with backoff, in its own thread.
            self._conn.execute("PRAGMA busy_timeout=0")
            self._thread.start()

    async def run(
        self, job: Callable[[sqlite3.Connection], T], *, durable: bool = True, alone: bool = False, shed: bool = False
    ) -> T:
        """Run ``job`` in the next group commit and return its result once committed (and, if
        ``durable``, synced to disk). ``alone``: the caller knows no other request is in flight, so a
        durable job may run inline too, since there is no batch for it to share an fsync with. ``shed``: the
        job may be refused (503) when too many wait; only admissions are, never what settles them."""
        durable = durable and self._sync_money
        inline = not durable or alone
        if inline and self._depth == 0 and self._conn is not None and self._busy.acquire(blocking=False):
            outcome = self._run_inline(self._conn, job, durable)
            if outcome is not None:
                ok, value = outcome
                if not ok:
                    raise value
                result: T = value
                return result
        with self._depth_lock:
            if shed and self._depth >= LEDGER_QUEUE_DEPTH_MAX:
                raise ServiceUnavailable("The platform is at its write capacity; retry shortly.", code="overloaded")
            self._depth += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Pending(job, durable, future, loop))
        return await future

    def _run_inline(
        self, conn: sqlite3.Connection, job: Callable[[sqlite3.Connection], T], durable: bool
    ) -> tuple[bool, Any] | None:
        """A job that needs no fsync, with nothing queued and the thread idle: run it here. It takes tens
        of microseconds, less than handing it to the thread and back; with load, jobs queue and batch.
        None if the database was locked (by another process): the thread then waits for it, not the loop."""
        try:
            item = _Pending(job, durable, None, None)
            commit_batch(conn, [item], self._synchronous)
        finally:
            self._busy.release()
        ok, value = item.outcome
        if not ok and _is_locked(value):
            return None
        return item.outcome

    def close(self) -> None:
        """Finish every queued job, then stop the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join()
            self._started = False
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _loop(self) -> None:
        conn = self._conn
        if conn is None:
            raise RuntimeError("GroupCommitWriter thread started without a connection")
        while True:
            first = self._queue.get()
            if first is None:
                return
            with self._busy:
                batch = [first]
                stop = self._drain(batch)
                self._commit(conn, batch)
            if stop:
                return

    def _drain(self, batch: list[_Pending]) -> bool:
        while len(batch) < LEDGER_BATCH_OPS_MAX:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        commit_batch(conn, batch, self._synchronous)
        if any(_is_store_failure(item.outcome) for item in batch):
            self._retry_one_by_one(conn, batch)
        self.batches_committed += 1
        self.jobs_committed += len(batch)
        with self._depth_lock:
            self._depth -= len(batch)
        self._hand_back(batch)

    def _retry_one_by_one(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        """The store failed the batch: try each of its jobs again alone, with backoff, so one job's trouble
        is not every job's, and a passing lock or a moment of full disk loses nothing."""
        deadline = time.monotonic() + STORE_RETRY_FOR_S
        for item in batch:
            delay_s = STORE_RETRY_BACKOFF_S
            while _is_store_failure(item.outcome) and time.monotonic() < deadline:
                self.store_retries += 1
                log.warning("store failed a job (%s); trying it again alone", item.outcome[1].__cause__)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, STORE_RETRY_BACKOFF_MAX_S)
                commit_batch(conn, [item], self._synchronous)

    @staticmethod
    def _hand_back(batch: list[_Pending]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in batch:
            if item.loop is not None:
                by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_deliver, items)


class _Synchronous:
    """The connection's current ``PRAGMA synchronous``, changed only when a batch needs another."""

    def __init__(self) -> None:
        self.level = "FULL"  # what store.db.connect sets

    def set(self, conn: sqlite3.Connection, level: str) -> None:
        if level != self.level:
            conn.execute(f"PRAGMA synchronous={level}")
            self.level = level


def commit_batch(conn: sqlite3.Connection, batch: list[_Pending], synchronous: _Synchronous) -> None:
    """Run every job of the batch in its own savepoint inside one transaction, and commit once."""
    try:
        synchronous.set(conn, "FULL" if any(item.durable for item in batch) else "NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        if len(batch) == 1:  # alone in its transaction: a failure rolls the transaction back, no savepoint needed
            item = batch[0]
            item.outcome = _run_alone(conn, item.job)
            conn.execute("COMMIT" if item.outcome[0] else "ROLLBACK")
            return
        for item in batch:
            item.outcome = _run_in_savepoint(conn, item.job)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for item in batch:
            item.outcome = (False, _store_failure(exc))


def _store_failure(exc: sqlite3.Error) -> ServiceUnavailable:
    failure = ServiceUnavailable("The store could not commit; nothing was charged.", code="store_error")
    failure.__cause__ = exc
    return failure


def _is_store_failure(outcome: tuple[bool, Any]) -> bool:
    ok, value = outcome
    return not ok and isinstance(value, ServiceUnavailable) and value.code == "store_error"


def _is_locked(value: Any) -> bool:
    """A store failure because another connection holds the database's write lock."""
    cause = getattr(value, "__cause__", None)
    return isinstance(cause, sqlite3.OperationalError) and ("locked" in str(cause) or "busy" in str(cause))


def _run_alone(conn: sqlite3.Connection, job: Job) -> tuple[bool, Any]:
    try:
        return (True, job(conn))
    except Exception as exc:  # the job's own failure: the caller rolls the transaction back
        return (False, exc)


def _run_in_savepoint(conn: sqlite3.Connection, job: Job) -> tuple[bool, Any]:
    conn.execute("SAVEPOINT job")
    try:
        value = job(conn)
    except Exception as exc:  # the job's own failure: undo it alone and report it to its caller
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return (False, exc)
    conn.execute("RELEASE job")
    return (True, value)
