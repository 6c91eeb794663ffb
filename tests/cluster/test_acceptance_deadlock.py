"""Two faults four workers once had with plan-funded calls (issue 11), each shown here without timing luck,
and fixed:

1. **A lock-order deadlock between two workers' batches.** A plan-funded admission takes the account's
   advisory lock first (economy/funding.py ``reserve_job``: ``cluster.serialize(conn, account_lock)``) and then
   updates the pack's (or window's) ledger row; a settlement updates the same row without that lock. Worker A's
   batch settles a call (row lock on ``pack:…``, held to the batch's commit) and then admits another
   (waits for the advisory lock); worker B's batch admitted first (holds the advisory lock) and waits for the
   row: a cycle, which PostgreSQL breaks by failing one batch with "deadlock detected". The PostgreSQL log of
   the acceptance storm showed exactly this cycle ("waits for ExclusiveLock on advisory lock … blocked by …
   waits for ShareLock on transaction"). Now a settlement of a call that plans or budgets funded takes the
   account's lock first too (ledger/service.py ``_settle_job``), so the lock always comes before the rows.
2. **A deadlock taken for a lost database.** The writer's ``PgDialect.fails_batch`` is ``pg.is_connection_lost``,
   true for every ``psycopg.OperationalError``; psycopg's ``DeadlockDetected`` (and ``SerializationFailure``,
   ``QueryCanceled``) are subclasses. So the batch counts as the store lost: ``store_down`` is set, the
   "tried once more" branch for a deadlock (store/writer.py ``_commit``: ``if hasty and not self.store_down``)
   never runs, the batch's admissions are answered 503 ``store_unavailable`` ("The store is unreachable"), and
   every admission after is refused at once until some batch commits. In the acceptance storm, 200 to 650 of
   1,000 calls on a pack got that answer. Now a deadlock is told apart from a lost database
   (``pg.is_retryable``): the admissions are tried once more, and the store is not taken for down.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from functools import partial
from zoneinfo import ZoneInfo

import psycopg
import pytest

from suanli.catalog import TIERS
from suanli.economy import market
from suanli.economy import store as econ
from suanli.economy.funding import Funding, FundingRequest, reserve_job, settlement_transfers
from suanli.economy.products import Product, parse_product
from suanli.gateway import accounts as ops
from suanli.ledger import ASSET_CNY
from suanli.ledger import names as ledger_names
from suanli.ledger.service import _settle_job
from suanli.ledger.sqlite import apply_entry, open_account
from suanli.money import cny_to_nano
from suanli.pricing import TokenUsage
from suanli.store import pg
from suanli.store.conn import Conn
from suanli.store.db import now_ms, run_in_transaction
from suanli.store.usage import UsageEvent
from suanli.store.writer import GroupCommitWriter, PgDialect
from tests.pg import shared_server
from tests.usage_events import usage_event

ZONE = ZoneInfo("Asia/Shanghai")
SPEC = {
    "kind": "pack",
    "price": "1",
    "tokens": 3000,
    "models": ["chat"],
    "valid_days": 30,
    "weights": {"input": "1", "output": "2"},
}
PRODUCTS: dict[str, Product] = {"small": parse_product("small", SPEC, models=frozenset({"chat"}), tiers=TIERS)}
BLOCKED_WITHIN_S = 5.0


@pytest.fixture
def database() -> str:
    return shared_server().new_database()


@pytest.fixture
def workers(database: str) -> Iterator[tuple[pg.PgConnection, pg.PgConnection]]:
    """Two workers' writer connections (the first also sets the shop up)."""
    a, b = pg.open_database(database), pg.open_database(database)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _pack_holder(conn: Conn) -> str:
    run_in_transaction(conn, lambda c: econ.list_product(c, PRODUCTS["small"], SPEC, "test"))
    account = run_in_transaction(conn, ops.create_account_job("holder", "enterprise")).id
    run_in_transaction(conn, ops.topup_job(account, cny_to_nano("1")))
    run_in_transaction(conn, market.buy_pack_job(account, "small", PRODUCTS))
    run_in_transaction(conn, lambda c: open_account(c, ledger_names.sales("op"), ASSET_CNY, None))
    return account


def _admission(account: str, request_id: str) -> partial[Funding]:
    request = FundingRequest(
        request_id=request_id,
        account_id=account,
        key_id="key",
        model="chat",
        now_ms=now_ms(),
        quotes=[("offer", 1000)],
        input_max=10,
        output_max=10,
    )
    return partial(reserve_job, req=request, products=PRODUCTS, zone=ZONE)


def _event(request_id: str, account: str) -> UsageEvent:
    return usage_event(
        request_id,
        account,
        key_id="key",
        input_tokens=10,
        output_tokens=10,
        price_input_nano=1,
        price_output_nano=2,
        price_reasoning_nano=2,
        reserved_nano=1000,
        cost_nano=30,
        ttft_ms=1,
    )


def _waiting_on_a_lock(observer: Conn, conn: pg.PgConnection) -> bool:
    pid = conn.raw.info.backend_pid
    row = observer.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def _deadlock(
    a: pg.PgConnection, b: pg.PgConnection, account: str, database: str, *, locked: bool = True
) -> list[BaseException]:
    """Worker A's batch settles call 0 and then admits call 2; worker B's batch admits call 1 in between.
    What each batch failed with. ``locked``: the settlement takes the account's lock, as the gateway's does;
    without it (as before the fix) the two batches deadlock."""
    funded = run_in_transaction(a, _admission(account, "req_0"))  # call 0, admitted and served earlier
    settled = settlement_transfers("req_0", funded, TokenUsage(input=10, output=10), 1000, "op")
    failures: list[BaseException] = []

    def worker_b() -> None:
        try:
            run_in_transaction(b, _admission(account, "req_1"))
        except psycopg.Error as exc:
            failures.append(exc)

    a.execute("BEGIN")
    if locked:  # A's batch: the settlement of call 0 (row lock on pack:…), as the gateway's
        event = _event("req_0", account)
        _settle_job(a, settled.transfers, event, [], ledger_names.wallet(account), lock_account=account)
    else:
        apply_entry(a, settled.transfers, "req_0")
    other = threading.Thread(target=worker_b)
    other.start()  # B's batch: the admission of call 1, which takes the account's lock, then waits for the row
    observer = pg.connect(database)
    try:
        deadline = time.monotonic() + BLOCKED_WITHIN_S
        while not _waiting_on_a_lock(observer, b) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        observer.close()
    try:
        _admission(account, "req_2")(a)  # A's batch goes on: the admission of call 2
        a.execute("COMMIT")
    except psycopg.Error as exc:
        failures.append(exc)
        a.execute("ROLLBACK")
    other.join()
    return failures


def test_a_settlement_and_admissions_of_one_account_in_two_workers_batches_do_not_deadlock(
    workers: tuple[pg.PgConnection, pg.PgConnection], database: str
) -> None:
    a, b = workers
    account = _pack_holder(a)
    assert _deadlock(a, b, account, database) == []


def test_an_admission_that_deadlocked_is_tried_again_and_the_store_is_not_taken_for_down(
    workers: tuple[pg.PgConnection, pg.PgConnection], database: str
) -> None:
    a, b = workers
    account = _pack_holder(a)
    failures = _deadlock(a, b, account, database, locked=False)  # a real "deadlock detected", as a batch got it
    deadlocks = [f for f in failures if isinstance(f, psycopg.errors.DeadlockDetected)]
    assert len(deadlocks) == 1, failures
    tries: list[int] = []

    def deadlocked_once(conn: Conn) -> str:
        conn.execute("SELECT 1")
        tries.append(1)
        if len(tries) == 1:
            raise deadlocks[0]
        return "admitted"

    async def admit() -> str:
        writer = GroupCommitWriter(database, dialect=PgDialect(database, "wrk_test"))
        writer.start()
        try:
            answer = await writer.run(deadlocked_once, durable=False, shed=True)
            assert not writer.store_down
            return answer
        finally:
            writer.close()

    assert asyncio.run(admit()) == "admitted"
