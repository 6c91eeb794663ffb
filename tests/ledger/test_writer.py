"""The group-commit writer: a job's failure undoes that job alone, whether it ran alone or in a batch;
a durable job runs inline only when its caller is alone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from suanli.store.conn import Conn
from suanli.store.db import open_database
from suanli.store.writer import GroupCommitWriter
from tests.stores import ON_POSTGRES, fresh_database, inspect


class Refused(Exception):
    pass


def insert(name: str, fail: bool = False, hold_s: float = 0.0):  # type: ignore[no-untyped-def]
    def job(conn: Conn) -> str:
        conn.execute(
            "INSERT INTO admin_keys (id, hash, prefix, name, origin, created_at_ms) VALUES (?, ?, '', ?, 'created', 0)",
            (name, name.encode(), name),
        )
        time.sleep(hold_s)  # keeps the writer busy, so the jobs behind it queue into one batch
        if fail:
            raise Refused(name)
        return name

    return job


def names(database: str) -> set[str]:
    conn = inspect(database)
    try:
        return {bytes(row[0]).decode() for row in conn.execute("SELECT hash FROM admin_keys")}
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> str:
    database = fresh_database(tmp_path, "w.db")
    open_database(database).close()
    return database


def test_a_failing_job_alone_in_its_transaction_is_undone(db: str) -> None:
    writer = GroupCommitWriter(db)
    writer.start()

    async def scenario() -> None:
        with pytest.raises(Refused):
            await writer.run(insert("bad", fail=True))
        assert await writer.run(insert("good")) == "good"

    asyncio.run(scenario())
    writer.close()
    assert names(db) == {"good"}


def test_a_failing_job_in_a_batch_is_undone_alone(db: str) -> None:
    writer = GroupCommitWriter(db)
    writer.start()

    async def scenario() -> list[object]:
        first = asyncio.ensure_future(writer.run(insert("first", hold_s=0.05)))
        await asyncio.sleep(0.01)  # the thread is now busy with the first job; the next ones queue together
        rest = [writer.run(insert(f"j{i}", fail=i == 2)) for i in range(5)]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(scenario())
    writer.close()
    assert [isinstance(r, Refused) for r in results] == [False, False, False, True, False, False]
    assert names(db) == {"first", "j0", "j1", "j3", "j4"}
    assert writer.jobs_committed == 6 and writer.batches_committed == 2  # the five queued jobs in one batch


def test_a_durable_job_runs_inline_only_when_its_caller_is_alone(db: str) -> None:
    writer = GroupCommitWriter(db)
    writer.start()

    async def scenario() -> None:
        await writer.run(insert("alone"), alone=True)
        # SQLite: ran on the caller's thread, fsync included. PostgreSQL: every job goes to the thread (a
        # round trip on the event loop would stall it).
        assert writer.batches_committed == (1 if ON_POSTGRES else 0)
        await writer.run(insert("queued"))
        assert writer.batches_committed == (2 if ON_POSTGRES else 1)  # to share its fsync with others

    asyncio.run(scenario())
    writer.close()
    assert names(db) == {"alone", "queued"}
