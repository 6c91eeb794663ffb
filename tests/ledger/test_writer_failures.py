"""The writer when the store fails: a batch the store refuses is tried again job by job until it commits,
each job once; the event loop never waits on another process's lock; back-pressure sheds admissions only."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from suanli.errors import ServiceUnavailable
from suanli.limits import LEDGER_QUEUE_DEPTH_MAX
from suanli.store.db import connect
from suanli.store.writer import GroupCommitWriter

LOCK_HELD_S = 0.4
LOOP_STALL_MAX_S = 0.05


@pytest.fixture
def db(tmp_path: Path) -> Path:
    conn = connect(tmp_path / "w.db")
    conn.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY)")
    conn.close()
    return tmp_path / "w.db"


def insert(name: str):  # type: ignore[no-untyped-def]
    def job(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO jobs (name) VALUES (?)", (name,))  # a second run would fail: once only
        return name

    return job


def names(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(row[0] for row in conn.execute("SELECT name FROM jobs"))
    finally:
        conn.close()


def hold_write_lock(path: Path, seconds: float, held: threading.Event) -> threading.Thread:
    """Another process's writer (the CLI, say) holding the database's write lock for a while."""

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    return thread


async def _loop_stall_during(work: asyncio.Future[list[str]]) -> float:
    """The longest the event loop went without running a 1 ms ticker while ``work`` ran."""
    longest, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.001)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


def test_a_locked_store_delays_jobs_without_losing_or_repeating_one_and_never_blocks_the_loop(db: Path) -> None:
    writer = GroupCommitWriter(db)
    writer.start()
    held = threading.Event()
    locker = hold_write_lock(db, LOCK_HELD_S, held)

    async def main() -> tuple[list[str], float]:
        # The first job finds the writer idle (it would run inline on the loop's thread), the others queue.
        jobs = [writer.run(insert(f"job{n}"), durable=n % 2 == 0, alone=True) for n in range(20)]
        work = asyncio.ensure_future(asyncio.gather(*jobs))
        stall = await _loop_stall_during(work)
        return await work, stall

    try:
        done, stall = asyncio.run(main())
    finally:
        locker.join()
        writer.close()
    assert sorted(done) == names(db) == sorted(f"job{n}" for n in range(20))  # every job, once
    assert writer.store_retries > 0  # the store refused them while the lock was held
    assert stall < LOOP_STALL_MAX_S  # the waiting happened in the writer's thread


def test_back_pressure_refuses_admissions_never_settlements(db: Path) -> None:
    writer = GroupCommitWriter(db)
    writer.start()
    writer._depth = LEDGER_QUEUE_DEPTH_MAX  # as if that many jobs were waiting

    async def main() -> str:
        with pytest.raises(ServiceUnavailable) as refused:
            await writer.run(insert("admission"), durable=False, shed=True)
        assert refused.value.code == "overloaded"
        return await writer.run(insert("settlement"))

    try:
        assert asyncio.run(main()) == "settlement"
    finally:
        writer._depth = 0
        writer.close()
    assert names(db) == ["settlement"]
