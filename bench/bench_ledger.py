"""The ledger alone: reservations and settlements per second through the group-commit writer.

    .venv/bin/python bench/bench_ledger.py [--requests 5000] [--concurrency 1 32]
    .venv/bin/python bench/bench_ledger.py --database postgresql://... --processes 4 --accounts 10000

Each simulated request reserves, then settles with a usage event, exactly as the gateway does; figures
are per request (two ledger jobs). Run it pinned to one core (taskset -c 1) to compare with the gateway.
With a PostgreSQL URL, ``--processes`` writers (one per process, as gateway workers) share the database,
and ``--accounts`` spreads the requests over that many wallets (1: one hot account), shared by the processes
or, with ``--own-accounts``, that many for each process.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from suanli.ledger import ASSET_CNY, Kind, StoreLedger, Transfer, entries, names
from suanli.ledger.sqlite import verify
from suanli.store.db import now_ms, open_database
from suanli.store.pg import is_postgres
from suanli.store.usage import Attempt, UsageEvent
from suanli.store.writer import GroupCommitWriter, dialect_for

Span = tuple[float, float]  # (started, finished), time.monotonic() (one clock for every process)
Go = Any  # a multiprocessing Event

ATTEMPTS = [Attempt("op", "op/m", "ok", 200, 1)]


def _event(request_id: str, account: str, cost: int) -> UsageEvent:
    return UsageEvent(
        request_id,
        account,
        "key",
        "m",
        "op",
        "op/m",
        "m",
        False,
        40,
        0,
        60,
        0,
        False,
        2000,
        200,
        3000,
        3000,
        300_000,
        cost,
        0,
        "ok",
        200,
        "",
        1,
        1,
        now_ms(),
    )


async def _one(ledger: StoreLedger, request_id: str, account: str) -> None:
    pending = entries.reservation(request_id, account, 300_000)
    await ledger.submit([pending], request_id)
    settlement = entries.settlement(request_id, pending, "op", 260_000)
    await ledger.settle(settlement, _event(request_id, account, 260_000), ATTEMPTS, names.wallet(account))


def _accounts(count: int, first: int = 0) -> list[str]:
    return [f"acct{n}" for n in range(first, first + count)]


async def _setup(database: str, accounts: int) -> None:
    reader = open_database(database)
    writer = GroupCommitWriter(database)
    writer.start()
    ledger = StoreLedger(writer, reader)
    await ledger.open_account(names.sales("op"), ASSET_CNY, None)
    await ledger.open_account(names.TOPUP_SOURCE, ASSET_CNY, None)
    await ledger.open_account(names.ESCROW, ASSET_CNY, names.ESCROW_FLOOR_NANO)
    for account in _accounts(accounts):
        await ledger.open_account(names.wallet(account), ASSET_CNY, 0)
        await ledger.submit(
            [Transfer(f"fund.{account}", Kind.POSTED, names.TOPUP_SOURCE, names.wallet(account), ASSET_CNY, 10**13)]
        )
    writer.close()
    reader.close()


async def _run(
    database: str,
    requests: int,
    concurrency: int,
    accounts: tuple[int, int],
    tag: str,
    *,
    start: tuple[Go, Go] | None = None,
) -> Span:
    """One writer's share over ``accounts`` (how many, the first's number) and the span it took; with ``start``
    (ready, go), it says it is ready and waits for go."""
    reader = open_database(database)
    postgres = is_postgres(database)
    writer = GroupCommitWriter(database, dialect=dialect_for(database, f"bench{tag}"))
    writer.start()
    ledger = StoreLedger(writer, reader, pipelined=postgres)
    wallets = _accounts(*accounts)
    queue = iter(range(requests))
    pick = random.Random(tag)  # each process its own sequence of accounts, as independent clients

    async def worker() -> None:
        for n in queue:
            await _one(ledger, f"r{tag}.{n}", pick.choice(wallets))

    if start is not None:
        ready, go = start
        ready.set()
        go.wait()  # blocks the loop, which has nothing to do yet
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    finished = time.monotonic()
    writer.close()
    reader.close()
    return started, finished


def _process(job: tuple[str, int, int, tuple[int, int], str], ready: Go, go: Go, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One worker process: its writer, its share of the requests; its span to ``out``."""
    out.put(asyncio.run(_run(*job, start=(ready, go))))


def _measure(database: str, requests: int, concurrency: int, accounts: int, processes: int, *, own: bool) -> float:
    """Settled requests per second over all processes (each runs ``requests`` / ``processes``), which share
    ``accounts`` or (``own``) each have that many of their own.

    The clock runs from the first process's start to the last one's end, all of them started together once
    each has imported, connected and started its writer: a process's start-up is not the ledger's time.
    """
    asyncio.run(_setup(database, accounts * processes if own else accounts))
    if processes == 1:
        started, finished = asyncio.run(_run(database, requests, concurrency, (accounts, 0), "0"))
        return requests / (finished - started)
    out: multiprocessing.Queue[Span] = multiprocessing.Queue()
    share = requests // processes
    go = multiprocessing.Event()
    readies = [multiprocessing.Event() for _ in range(processes)]
    workers = [
        multiprocessing.Process(
            target=_process,
            args=((database, share, concurrency, (accounts, n * accounts if own else 0), str(n)), readies[n], go, out),
        )
        for n in range(processes)
    ]
    for process in workers:
        process.start()
    for ready in readies:
        ready.wait()
    go.set()
    spans = [out.get() for _ in workers]
    for process in workers:
        process.join()
    return share * processes / (max(end for _, end in spans) - min(start for start, _ in spans))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="requests in flight per process")
    parser.add_argument("--database", help="a postgresql:// URL (an empty database); default: a fresh SQLite file")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument(
        "--own-accounts",
        action="store_true",
        help="each process its own --accounts wallets, none shared (what a per-worker balance lease would give)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for concurrency in args.concurrency:
            database = args.database or str(Path(directory) / f"ledger-{concurrency}.db")
            rate = _measure(database, args.requests, concurrency, args.accounts, args.processes, own=args.own_accounts)
            conn = open_database(database)
            verify(conn)
            conn.close()
            print(
                f"ledger store={'postgresql' if args.database else 'sqlite'} processes={args.processes} "
                f"accounts={args.accounts}{' own' if args.own_accounts else ''} concurrency={concurrency} "
                f"requests={args.requests} "
                f"requests_per_s={rate:.0f} us_per_request={1e6 / rate:.1f}"
            )


if __name__ == "__main__":
    main()
