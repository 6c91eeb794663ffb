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

PostgreSQL (``PgDialect``) is written the same way, with these differences: every job runs on the thread
(a round trip on the event loop would stall it); a reservation-only batch commits with
``SET LOCAL synchronous_commit = off`` (PostgreSQL's documented trade, the same as SQLite's ``NORMAL``
here); a lost connection is opened again before a job is retried; and while the store is unreachable an
admission is refused at once (503 ``store_unavailable``) instead of queueing behind settlements that
wait for it to return.
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

import orjson

from suanli.errors import ServiceUnavailable, StoreUnavailable
from suanli.limits import (
    LEDGER_BATCH_OPS_MAX,
    LEDGER_QUEUE_DEPTH_MAX,
    STORE_ADMISSION_RETRY_S,
    STORE_RETRY_BACKOFF_MAX_S,
    STORE_RETRY_BACKOFF_S,
    STORE_RETRY_FOR_S,
)
from suanli.store import pg
from suanli.store.conn import STORE_ERRORS, Conn
from suanli.store.db import connect, now_ms
from suanli.store.deferred import FALLBACK, Deferred, Ordered

log = logging.getLogger("suanli.writer")

T = TypeVar("T")
Job = Callable[[Conn], Any]


class Writer(Protocol):
    """What the ledger and the admin API need of a writer: run a job in a group commit."""

    store_down: bool  # the last batch found the database unreachable: admissions are refused until one commits

    def start(self) -> None: ...

    async def run(
        self, job: Callable[[Conn], T], *, durable: bool = True, alone: bool = False, shed: bool = False
    ) -> T: ...

    def close(self) -> None: ...


class Dialect(Protocol):
    """What the writer does differently for each database."""

    inline: bool  # may a job run on its caller's thread
    admission_retry_s: float  # how long an admission the store failed is tried again

    def connect(self) -> Conn: ...

    def begin(self, conn: Conn, durable: bool) -> None: ...

    def reconnect(self, conn: Conn) -> Conn: ...

    def fails_batch(self, exc: BaseException) -> bool:
        """An error raised inside a job that is the store's, not the job's: the whole batch failed."""

    def lost(self, exc: BaseException) -> bool:
        """The store is unreachable (not a deadlock): admissions are refused at once until a batch commits."""

    def begin_deferred(
        self, conn: Conn, durable: bool, jobs: list[Deferred[Any]], turns: list[tuple[str, bool] | None]
    ) -> list[Any] | None:
        """Begin the transaction and run ``jobs`` as statements sent together: each one's row, in order, or
        None for a job not run because another writer's batch has the account its turn names and it may be
        skipped (``turns``: per job, None or (its customer account, whether it may be skipped)).
        None: this database runs them as Python."""


class SqliteDialect:
    inline = True
    admission_retry_s = STORE_RETRY_FOR_S  # a lock held by another process passes: an admission waits for it

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._synchronous = "FULL"  # what store.db.connect sets

    def connect(self) -> Conn:
        conn = connect(self._path)
        # SQLite's busy handler would make a job wait for another process's lock wherever it runs, the
        # event loop's thread included; the writer waits instead, with backoff, in its own thread.
        conn.execute("PRAGMA busy_timeout=0")
        return conn

    def begin(self, conn: Conn, durable: bool) -> None:
        level = "FULL" if durable else "NORMAL"
        if level != self._synchronous:  # changed only when a batch needs another
            conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level
        conn.execute("BEGIN IMMEDIATE")

    def reconnect(self, conn: Conn) -> Conn:
        return conn

    def fails_batch(self, exc: BaseException) -> bool:
        return False

    def lost(self, exc: BaseException) -> bool:
        return False

    def begin_deferred(
        self, conn: Conn, durable: bool, jobs: list[Deferred[Any]], turns: list[tuple[str, bool] | None]
    ) -> list[Any] | None:
        return None


class PgDialect:
    inline = False
    admission_retry_s = STORE_ADMISSION_RETRY_S  # an unreachable database: the client hears at once

    def __init__(self, url: str, owner: str = "") -> None:
        self._url = url
        self.owner = owner

    def connect(self) -> Conn:
        conn = pg.connect(self._url)
        conn.owner = self.owner
        return conn

    def begin(self, conn: Conn, durable: bool) -> None:
        conn.execute("BEGIN")
        if not durable:
            conn.execute("SET LOCAL synchronous_commit TO off")

    def reconnect(self, conn: Conn) -> Conn:
        if not (isinstance(conn, pg.PgConnection) and conn.broken):
            return conn
        try:
            conn.close()
        finally:
            fresh = self.connect()
        return fresh

    def fails_batch(self, exc: BaseException) -> bool:
        return pg.is_connection_lost(exc) or pg.is_retryable(exc)

    def lost(self, exc: BaseException) -> bool:
        return pg.is_connection_lost(exc)

    def begin_deferred(
        self, conn: Conn, durable: bool, jobs: list[Deferred[Any]], turns: list[tuple[str, bool] | None]
    ) -> list[Any] | None:
        if not isinstance(conn, pg.PgConnection):
            return None
        calls = orjson.dumps([job.call() for job in jobs]).decode()
        with conn.raw.pipeline():
            self.begin(conn, durable)
            cursor = conn.execute_plain(pg.BATCH_SQL, (calls, conn.owner, now_ms(), orjson.dumps(turns).decode()))
        row = cursor.fetchone()
        answers: list[Any] = row[0] if row is not None else []
        return answers


def dialect_for(target: str | Path, owner: str = "") -> Dialect:
    return PgDialect(str(target), owner) if pg.is_postgres(target) else SqliteDialect(target)


@dataclass(slots=True)
class _Pending:
    job: Job  # a plain job, or a Deferred (store/deferred.py), which is also callable as one
    durable: bool
    future: asyncio.Future[Any] | None  # None for a job run inline by its caller
    loop: asyncio.AbstractEventLoop | None
    retry_for_s: float = STORE_RETRY_FOR_S  # how long a job the store failed is tried again
    outcome: tuple[bool, Any] = field(default=(False, None))
    may_skip: bool = False  # may wait for the next batch if another writer holds its account (once)


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
    """The single writer of one database (per process, for PostgreSQL)."""

    def __init__(self, target: str | Path, *, sync_money: bool = True, dialect: Dialect | None = None) -> None:
        self._dialect = dialect or dialect_for(target)
        self._sync_money = sync_money
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="suanli-writer", daemon=True)
        self._busy = threading.Lock()  # held by whoever is using the connection: the thread or run()
        self._conn: Conn | None = None
        self._started = False
        self.store_down = False  # the last batch lost the store; admissions are refused until one commits
        self.batches_committed = 0
        self.jobs_committed = 0
        self.store_retries = 0  # jobs tried again after the store failed their batch
        self.jobs_skipped = 0  # jobs sent again in the next batch: another writer held their account

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._conn = self._dialect.connect()
            self._thread.start()

    async def run(
        self, job: Callable[[Conn], T], *, durable: bool = True, alone: bool = False, shed: bool = False
    ) -> T:
        """Run ``job`` in the next group commit and return its result once committed (and, if
        ``durable``, synced to disk). ``alone``: the caller knows no other request is in flight, so a
        durable job may run inline too, since there is no batch for it to share an fsync with. ``shed``: the
        job may be refused (503) when too many wait or the store is unreachable; only admissions are,
        never what settles them."""
        durable = durable and self._sync_money
        inline = self._dialect.inline and (not durable or alone)
        if inline and self._depth == 0 and self._conn is not None and self._busy.acquire(blocking=False):
            outcome = self._run_inline(self._conn, job, durable)
            if outcome is not None:
                ok, value = outcome
                if not ok:
                    raise value
                result: T = value
                return result
        if shed and self.store_down:
            raise _unavailable()
        with self._depth_lock:
            if shed and self._depth >= LEDGER_QUEUE_DEPTH_MAX:
                raise ServiceUnavailable("The platform is at its write capacity; retry shortly.", code="overloaded")
            self._depth += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        retry_for_s = self._dialect.admission_retry_s if shed else STORE_RETRY_FOR_S
        self._queue.put(_Pending(job, durable, future, loop, retry_for_s, may_skip=True))
        return await future

    def _run_inline(self, conn: Conn, job: Callable[[Conn], T], durable: bool) -> tuple[bool, Any] | None:
        """A job that needs no fsync, with nothing queued and the thread idle: run it here. It takes tens
        of microseconds, less than handing it to the thread and back; with load, jobs queue and batch.
        None if the database was locked (by another process): the thread then waits for it, not the loop."""
        try:
            item = _Pending(job, durable, None, None)
            commit_batch(conn, [item], self._dialect)
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
        while True:
            first = self._queue.get()
            if first is None:
                self._finish_put_back()
                return
            with self._busy:
                batch = [first]
                stop = self._drain(batch)
                self._commit(batch)
            if stop:
                self._finish_put_back()
                return

    def _finish_put_back(self) -> None:
        """At close: the jobs put back after the stop (skipped by their last batch), each run now, waiting."""
        batch = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item.may_skip = False
                batch.append(item)
        for start in range(0, len(batch), LEDGER_BATCH_OPS_MAX):
            with self._busy:
                self._commit(batch[start : start + LEDGER_BATCH_OPS_MAX])

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

    def _connection(self) -> Conn:
        """The writer's connection, opened again if the store lost it."""
        if self._conn is None:
            raise RuntimeError("GroupCommitWriter used before start()")
        self._conn = self._dialect.reconnect(self._conn)
        return self._conn

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            skipped = commit_batch(self._connection(), batch, self._dialect)
        except STORE_ERRORS as exc:  # could not even reach the store
            skipped = []
            for item in batch:
                item.outcome = (False, _store_failure(exc))
        if skipped:
            batch = self._put_back(batch, skipped)
        failed = [item for item in batch if _is_store_failure(item.outcome)]
        self.store_down = bool(failed) and any(self._dialect.lost(i.outcome[1].__cause__) for i in failed)
        if failed:
            hasty = [item for item in failed if item.retry_for_s < STORE_RETRY_FOR_S]
            if hasty and not self.store_down:  # a deadlock or such: the admissions are tried once more, together
                self._commit_again(hasty)
            self._hand_back(hasty)  # the clients hear now, not after the settlements' retries
            self._retry_one_by_one([item for item in failed if item.retry_for_s >= STORE_RETRY_FOR_S])
        self.batches_committed += 1
        self.jobs_committed += len(batch)
        with self._depth_lock:
            self._depth -= len(batch)
        self._hand_back(batch)

    def _put_back(self, batch: list[_Pending], skipped: list[_Pending]) -> list[_Pending]:
        """Queue the skipped jobs again, to wait for their accounts in a later batch; the rest of the batch."""
        for item in skipped:
            item.may_skip = False
            self._queue.put(item)
        self.jobs_skipped += len(skipped)
        put_back = {id(item) for item in skipped}
        return [item for item in batch if id(item) not in put_back]

    def _commit_again(self, batch: list[_Pending]) -> None:
        self.store_retries += len(batch)
        for item in batch:
            item.may_skip = False
        try:
            commit_batch(self._connection(), batch, self._dialect)
        except STORE_ERRORS as exc:
            for item in batch:
                item.outcome = (False, _store_failure(exc))

    def _retry_one_by_one(self, batch: list[_Pending]) -> None:
        """The store failed the batch: try each of its jobs again alone, with backoff, so one job's trouble
        is not every job's, and a passing lock, a moment of full disk or a database restart loses nothing."""
        deadline = time.monotonic() + STORE_RETRY_FOR_S
        for item in batch:
            delay_s = STORE_RETRY_BACKOFF_S
            while _is_store_failure(item.outcome) and time.monotonic() < deadline:
                log.warning("store failed a job (%s); trying it again alone", item.outcome[1].__cause__)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, STORE_RETRY_BACKOFF_MAX_S)
                self._commit_again([item])
            # Admissions are refused at once only while the database is unreachable (not for a passing lock).
            self.store_down = _is_store_failure(item.outcome) and self._dialect.lost(item.outcome[1].__cause__)

    @staticmethod
    def _hand_back(batch: list[_Pending]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in batch:
            _final(item)
            if item.loop is not None:
                by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_deliver, items)


def commit_batch(conn: Conn, batch: list[_Pending], dialect: Dialect) -> list[_Pending]:
    """Run the batch in one transaction and commit once: its deferred jobs as statements sent together
    (PostgreSQL), every other job (and a deferred one that falls back) in its own savepoint. The jobs it
    skipped (another writer held their account): they did not run, and have no outcome."""
    skipped: list[_Pending] = []
    try:
        durable = any(item.durable for item in batch)
        deferred = sorted(((i, i.job) for i in batch if isinstance(i.job, Deferred)), key=lambda pair: pair[1].order)
        turns = [(job.order, item.may_skip) if job.order else None for item, job in deferred]
        rows = dialect.begin_deferred(conn, durable, [job for _, job in deferred], turns) if deferred else None
        if rows is None:
            dialect.begin(conn, durable)
            rest = sorted(batch, key=_order)  # stable: jobs with no account keep their order, first
        else:
            skipped = [item for (item, _), row in zip(deferred, rows, strict=True) if row is None]
            ran = [(pair, row) for pair, row in zip(deferred, rows, strict=True) if row is not None]
            rest = [item for (item, job), row in ran if not _finish(item, job, row)]
            rest += [item for item in batch if not isinstance(item.job, Deferred)]
            rest.sort(key=_order)
        if len(batch) == 1 and rest:  # alone in its transaction: a failure rolls it back, no savepoint needed
            item = batch[0]
            item.outcome = _run_alone(conn, item.job, dialect)
            conn.execute("COMMIT" if item.outcome[0] else "ROLLBACK")
            return skipped
        for item in rest:
            item.outcome = _run_in_savepoint(conn, item.job, dialect)
        conn.execute("COMMIT")
        return skipped
    except STORE_ERRORS as exc:
        _roll_back(conn)
        for item in batch:
            item.outcome = (False, _store_failure(exc))
        return []


def _order(item: _Pending) -> str:
    job = item.job
    return job.order if isinstance(job, Deferred | Ordered) else ""


def _finish(item: _Pending, job: Deferred[Any], row: Any) -> bool:
    """A deferred job's outcome from its row; False if it must run as Python after all."""
    try:
        result = job.finish(row)
    except Exception as exc:  # the job's own refusal: its statement wrote nothing
        item.outcome = (False, exc)
        return True
    if result is FALLBACK:
        return False
    item.outcome = (True, result)
    return True


def _roll_back(conn: Conn) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except STORE_ERRORS:
        pass  # the connection is gone, and its transaction with it


def _unavailable() -> StoreUnavailable:
    return StoreUnavailable("The store is unreachable; nothing was reserved or charged.")


def _store_failure(exc: Exception) -> ServiceUnavailable:
    failure: ServiceUnavailable
    if pg.is_connection_lost(exc):
        failure = StoreUnavailable("The store is unreachable; nothing was reserved or charged.", code="store_error")
    else:
        failure = ServiceUnavailable("The store could not commit; nothing was charged.", code="store_error")
    failure.__cause__ = exc
    return failure


def _is_store_failure(outcome: tuple[bool, Any]) -> bool:
    ok, value = outcome
    return not ok and isinstance(value, ServiceUnavailable) and value.code == "store_error"


def _final(item: _Pending) -> None:
    """What the caller of a job the store failed for good is told: an admission, that the store is
    unreachable (nothing was reserved); anything else, that the store could not commit it."""
    ok, value = item.outcome
    if not ok and isinstance(value, StoreUnavailable) and value.code == "store_error":
        fresh: ServiceUnavailable = _unavailable()
    elif not ok and _is_store_failure(item.outcome) and pg.is_retryable(value.__cause__):
        fresh = StoreUnavailable(
            "The store was busy (a deadlock; tried again); nothing was charged.", code="store_busy"
        )
    else:
        return
    fresh.__cause__ = value.__cause__
    item.outcome = (False, fresh)


def _is_locked(value: Any) -> bool:
    """A store failure because another connection holds the database's write lock."""
    cause = getattr(value, "__cause__", None)
    return isinstance(cause, sqlite3.OperationalError) and ("locked" in str(cause) or "busy" in str(cause))


def _run_alone(conn: Conn, job: Job, dialect: Dialect) -> tuple[bool, Any]:
    try:
        return (True, job(conn))
    except Exception as exc:  # the job's own failure: the caller rolls the transaction back
        if dialect.fails_batch(exc):
            raise
        return (False, exc)


def _run_in_savepoint(conn: Conn, job: Job, dialect: Dialect) -> tuple[bool, Any]:
    conn.execute("SAVEPOINT job")
    try:
        value = job(conn)
    except Exception as exc:  # the job's own failure: undo it alone and report it to its caller
        if dialect.fails_batch(exc):
            raise
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return (False, exc)
    conn.execute("RELEASE job")
    return (True, value)
