"""A PostgreSQL writer's batch does not wait for an account another writer's open batch has: the job on it is
sent again in the next batch (then waiting), and every other job of the batch commits meanwhile."""

from __future__ import annotations

import asyncio

from suanli.ledger import ASSET_CNY, Kind, StoreLedger, Transfer, entries, names
from suanli.ledger.sqlite import read_balance
from suanli.store import pg
from suanli.store.db import open_database
from suanli.store.writer import GroupCommitWriter, dialect_for

FUNDS = 10**12
HOLD = 300_000


async def _fund(database: str, accounts: list[str]) -> None:
    writer, reader = GroupCommitWriter(database), open_database(database)
    writer.start()
    ledger = StoreLedger(writer, reader)
    await ledger.open_account(names.TOPUP_SOURCE, ASSET_CNY, None)
    await ledger.open_account(names.ESCROW, ASSET_CNY, names.ESCROW_FLOOR_NANO)
    for account in accounts:
        await ledger.open_account(names.wallet(account), ASSET_CNY, 0)
        funding = Transfer(f"fund.{account}", Kind.POSTED, names.TOPUP_SOURCE, names.wallet(account), ASSET_CNY, FUNDS)
        await ledger.submit([funding])
    writer.close()
    reader.close()


async def _reserve_while_another_writer_holds(database: str) -> tuple[list[str], int]:
    other = pg.connect(database)  # another writer's batch, open on wallet:held (its turn and its row)
    other.execute("BEGIN")
    other.execute("SELECT pg_advisory_xact_lock(2, hashtext(?))", (names.wallet("held"),))
    other.execute("SELECT 1 FROM ledger_accounts WHERE id = ? FOR NO KEY UPDATE", (names.wallet("held"),))
    writer, reader = GroupCommitWriter(database, dialect=dialect_for(database, "w1")), open_database(database)
    writer.start()
    ledger = StoreLedger(writer, reader, pipelined=True)
    done: list[str] = []

    async def reserve(account: str) -> None:
        await ledger.submit([entries.reservation(f"r.{account}", account, HOLD)], f"r.{account}")
        done.append(account)

    tasks = [asyncio.create_task(reserve(account)) for account in ("held", "free1", "free2")]
    await asyncio.sleep(1.0)
    before_release = list(done)
    other.execute("COMMIT")
    await asyncio.gather(*tasks)
    skipped = writer.jobs_skipped
    writer.close()
    reader.close()
    other.close()
    return before_release, skipped


def test_a_batch_commits_its_other_jobs_while_another_writer_holds_one_account(pg_url: str) -> None:
    asyncio.run(_fund(pg_url, ["held", "free1", "free2"]))
    before_release, skipped = asyncio.run(_reserve_while_another_writer_holds(pg_url))
    assert sorted(before_release) == ["free1", "free2"]  # the held account's job did not hold theirs
    assert skipped == 1
    reader = open_database(pg_url)
    for account in ("held", "free1", "free2"):  # each reserved exactly once
        balance = read_balance(reader, names.wallet(account))
        assert balance is not None and balance.debits_pending == HOLD
    reader.close()
