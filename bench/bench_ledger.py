"""The ledger alone: reservations and settlements per second through the group-commit writer.

    .venv/bin/python bench/bench_ledger.py [--requests 5000] [--concurrency 1 32]

Each simulated request reserves, then settles with a usage event, exactly as the gateway does; figures
are per request (two ledger jobs). Run it pinned to one core (taskset -c 1) to compare with the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from suanli.ledger import ASSET_CNY, Kind, SqliteLedger, Transfer, entries, names
from suanli.ledger.sqlite import verify
from suanli.store.db import now_ms, open_database
from suanli.store.usage import Attempt, UsageEvent
from suanli.store.writer import GroupCommitWriter

ATTEMPTS = [Attempt("op", "op/m", "ok", 200, 1)]


def _event(request_id: str, cost: int) -> UsageEvent:
    return UsageEvent(request_id, "acct", "key", "m", "op", "op/m", "m", False, 40, 0, 60, 0, False,
                      2000, 200, 3000, 3000, 300_000, cost, 0, "ok", 200, "", 1, 1, now_ms())  # fmt: skip


async def _one(ledger: SqliteLedger, request_id: str) -> None:
    pending = entries.reservation(request_id, "acct", 300_000)
    await ledger.submit([pending], request_id)
    settlement = entries.settlement(request_id, pending, "op", 260_000)
    await ledger.settle(settlement, _event(request_id, 260_000), ATTEMPTS, names.wallet("acct"))


async def _run(requests: int, concurrency: int, directory: Path) -> float:
    path = directory / f"ledger-{concurrency}.db"
    reader = open_database(path)
    writer = GroupCommitWriter(path)
    writer.start()
    ledger = SqliteLedger(writer, reader)
    await ledger.open_account(names.wallet("acct"), ASSET_CNY, 0)
    await ledger.open_account(names.sales("op"), ASSET_CNY, None)
    await ledger.open_account(names.TOPUP_SOURCE, ASSET_CNY, None)
    await ledger.open_account(names.ESCROW, ASSET_CNY, names.ESCROW_FLOOR_NANO)
    await ledger.submit([Transfer("fund", Kind.POSTED, names.TOPUP_SOURCE, names.wallet("acct"), ASSET_CNY, 10**15)])
    queue = iter(range(requests))

    async def worker() -> None:
        for n in queue:
            await _one(ledger, f"r{n}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    writer.close()
    verify(reader)
    reader.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for concurrency in args.concurrency:
            elapsed = asyncio.run(_run(args.requests, concurrency, Path(directory)))
            print(
                f"ledger concurrency={concurrency} requests={args.requests} "
                f"requests_per_s={args.requests / elapsed:.0f} us_per_request={elapsed / args.requests * 1e6:.1f}"
            )


if __name__ == "__main__":
    main()
