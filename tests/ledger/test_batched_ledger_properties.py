"""Hypothesis properties of the ledger as the gateway drives it on PostgreSQL: reservations and settlements
sent by the writer as one ``suanli_batch`` call per batch (store/deferred.py), many at once, replays
included.

Whatever the mix, a reservation a wallet cannot cover is refused with nothing written, every settlement
charges exactly its cost once (a replay charges nothing more), no wallet goes below its floor, nothing stays
reserved, the operator receives what the wallets paid, every usage event is recorded once, and
``ledger verify`` (slot rows summed in) passes.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.ledger import ASSET_CNY, Kind, LedgerRejected, Rejection, StoreLedger, Transfer, entries, names
from suanli.ledger.sqlite import open_pending, read_balance, verify
from suanli.store.db import open_database
from suanli.store.usage import Attempt, UsageEvent
from suanli.store.writer import GroupCommitWriter, dialect_for
from tests.pg import shared_server
from tests.stores import examples
from tests.usage_events import usage_event

WALLETS = ("a", "b", "c")
FUNDS = 1_000  # each wallet's top-up, nano-CNY: small, so that many reservations are refused
OK = [Attempt("op", "op/m", "ok", 200, 1)]

calls = st.lists(
    st.tuples(
        st.sampled_from(WALLETS),
        st.integers(min_value=0, max_value=600),  # reserved
        st.integers(min_value=0, max_value=1000),  # the share of it the call costs, per mille
        st.booleans(),  # the settlement is sent twice (a resubmitted batch)
    ),
    min_size=1,
    max_size=40,
)


def _event(request_id: str, account: str, cost: int, reserved: int) -> UsageEvent:
    return usage_event(
        request_id,
        account,
        offer_id="op/m",
        price_input_nano=1,
        price_output_nano=1,
        reserved_nano=reserved,
        cost_nano=cost,
        ttft_ms=1,
    )


Call = tuple[str, int, int, bool]


async def _call(ledger: StoreLedger, n: int, call: Call) -> int:
    """One call: reserve, then settle (twice if asked); what it cost, or -1 if it was refused."""
    wallet, reserved, permille, twice = call
    request_id = f"r{n}"
    pending = entries.reservation(request_id, wallet, reserved)
    try:
        await ledger.submit([pending], request_id)
    except LedgerRejected as refused:
        assert refused.rejection is Rejection.EXCEEDS_FLOOR
        return -1
    cost = reserved * permille // 1000  # at most the reservation
    settlement = entries.settlement(request_id, pending, "op", cost)
    for _ in range(2 if twice else 1):
        balance, _event_recorded = await ledger.settle(
            settlement, _event(request_id, wallet, cost, reserved), OK, names.wallet(wallet)
        )
        assert balance is not None and balance.available >= 0
    return cost


async def _run(database: str, plan: list[Call]) -> list[int]:
    reader = open_database(database)
    writer = GroupCommitWriter(database, dialect=dialect_for(database, "wrk_property"))
    writer.start()
    ledger = StoreLedger(writer, reader, pipelined=True)
    try:
        for account in (names.ESCROW, names.sales("op"), names.TOPUP_SOURCE):
            await ledger.open_account(account, ASSET_CNY, 0 if account == names.ESCROW else None)
        for wallet in WALLETS:
            await ledger.open_account(names.wallet(wallet), ASSET_CNY, 0)
            fund = Transfer(f"fund.{wallet}", Kind.POSTED, names.TOPUP_SOURCE, names.wallet(wallet), ASSET_CNY, FUNDS)
            await ledger.submit([fund])
        return await asyncio.gather(*(_call(ledger, n, call) for n, call in enumerate(plan)))
    finally:
        writer.close()
        reader.close()


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=calls)
def test_batched_reservations_and_settlements_keep_every_ledger_invariant(
    plan: list[Call],
) -> None:
    database = shared_server().new_database()
    costs = asyncio.run(_run(database, plan))
    conn = open_database(database)
    try:
        verify(conn)
        assert open_pending(conn) == []
        for wallet in WALLETS:
            spent = sum(c for (w, *_), c in zip(plan, costs, strict=True) if w == wallet and c >= 0)
            balance = read_balance(conn, names.wallet(wallet))
            assert balance is not None and balance.available == FUNDS - spent >= 0
        sales = read_balance(conn, names.sales("op"))
        assert sales is not None and sales.posted == sum(c for c in costs if c >= 0)
        events = conn.execute("SELECT count(*), coalesce(sum(cost_nano), 0) FROM usage_events").fetchone()
        assert tuple(events) == (sum(1 for c in costs if c >= 0), sum(c for c in costs if c >= 0))
    finally:
        conn.close()
