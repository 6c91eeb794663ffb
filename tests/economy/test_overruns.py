"""Settling usage beyond the reservations, and the rounding of every charge, on the real SQLite store.

An operator may report more than a call's bounds; the settlement then charges the excess from the
sources' available balances in the same transaction, and only what they cannot pay is absorbed, by a
ledger entry. Whatever happens: the ledger verifies, no balance goes below its floor, the operator is
paid the list price exactly, and every charge is rounded down.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.economy import names
from suanli.economy.funding import Funding, Leg, charge_overruns, settlement_transfers
from suanli.economy.products import Weights
from suanli.errors import PaymentRequired
from suanli.ledger import ASSET_CNY, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account, open_pending, read_balance, verify
from suanli.pricing import TokenUsage
from suanli.store.conn import Conn
from suanli.store.db import open_database, run_in_transaction
from tests.economy.test_funding import PRICE_NANO, T0, Shop
from tests.economy.test_funding import pack_specs as _pack_specs
from tests.stores import examples, fresh_database

DAY_MS = 86_400_000
pack_specs = _pack_specs.map(lambda packs: [(p, t, d) for p, t, d in packs if p != "elsewhere"])


def settle_with_overruns(shop: Shop, funding: Funding, usage: TokenUsage) -> tuple[int, int, int]:
    """Settle as the gateway does: the transfers, then the overruns, in one transaction. Returns the cost,
    what the wallet paid beyond its reservation, and what was left uncharged."""
    request_id = (funding.wallet or funding.legs[0].reservation).id.split(".")[0]
    cost = usage.total * PRICE_NANO
    settled = settlement_transfers(request_id, funding, usage, cost, "op")

    def job(conn: Conn) -> tuple[int, int]:
        apply_entry(conn, settled.transfers, request_id)
        over = charge_overruns(conn, request_id, settled.overruns)
        return over.charged_nano, over.uncharged_nano

    charged, uncharged = run_in_transaction(shop.conn, job)
    return cost, charged, uncharged


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    packs=pack_specs,
    wallet=st.integers(0, 20_000),
    bounds=st.tuples(st.integers(1, 300), st.integers(0, 300)),
    beyond_percent=st.tuples(st.integers(0, 300), st.integers(0, 300)),  # of each bound, the reported usage
    with_wallet=st.booleans(),
)
def test_usage_beyond_the_reservation_is_charged_where_it_can_be_and_the_rest_recorded(
    *,
    packs: list[tuple[str, int, int]],
    wallet: int,
    bounds: tuple[int, int],
    beyond_percent: tuple[int, int],
    with_wallet: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(fresh_database(Path(tmp), "s.db"))
        try:
            shop = Shop(conn)
            run_in_transaction(conn, lambda c: open_account(c, ledger_names.UNCHARGED, ASSET_CNY, None))
            for product, tokens, days in packs:
                shop.pack(product, tokens, T0 + days * DAY_MS)
            shop.topup(wallet)
            order = ("packs", "wallet") if with_wallet else ("packs",)
            try:
                funding = shop.reserve(T0, input_max=bounds[0], output_max=bounds[1], order=order)
            except PaymentRequired:
                return
            usage = TokenUsage(input=bounds[0] * beyond_percent[0] // 100, output=bounds[1] * beyond_percent[1] // 100)
            cost, charged, uncharged = settle_with_overruns(shop, funding, usage)
            verify(conn)  # every asset nets to zero, every account's sums match its transfers, floors hold
            assert not open_pending(conn)
            sales = read_balance(conn, ledger_names.sales("op"))
            assert sales is not None and sales.credits_posted == cost  # the operator is paid the list price
            wallet_paid = wallet - shop.available(ledger_names.wallet(shop.account))
            assert 0 <= wallet_paid <= wallet and charged <= wallet_paid
            if funding.wallet is not None and not funding.plan_funded:
                assert wallet_paid + uncharged == cost  # the wallet paid all it could of the list price
                assert uncharged == 0 or shop.available(ledger_names.wallet(shop.account)) == 0
        finally:
            conn.close()


def test_a_pack_draw_is_rounded_down() -> None:
    weights = Weights(input=1000, output=1500)
    usage = TokenUsage(input=80, output=53)
    assert weights.draw_exact(usage) == Fraction(319, 2)  # 159.5
    reservation = Transfer("r.pack.p", Kind.PENDING, names.pack("p"), names.spent("TOK:x"), "TOK:x", 400)
    funding = Funding(legs=[Leg("pack", reservation, weights=weights, max_draw=400)])
    settled = settlement_transfers("r", funding, usage, 0, "op")
    assert settled.summary[0]["used"] == 159 and settled.overruns == []


def test_a_wallet_share_is_rounded_down() -> None:
    # A pack reserved a third of the call's draw; the wallet pays two thirds of 1,000 nano: 666, not 667.
    weights = Weights(input=1000, output=1000)
    usage = TokenUsage(input=3)
    reservation = Transfer("r.pack.p", Kind.PENDING, names.pack("p"), names.spent("TOK:x"), "TOK:x", 1)
    wallet = Transfer("r.reserve", Kind.PENDING, ledger_names.wallet("a"), ledger_names.ESCROW, ASSET_CNY, 10_000)
    funding = Funding(legs=[Leg("pack", reservation, weights=weights, max_draw=3)], wallet=wallet)
    settled = settlement_transfers("r", funding, usage, 1_000, "op")
    assert [leg["used"] for leg in settled.summary] == [1, 666]
    assert settled.plan_nano == 1_000 - 666  # the plan pays the operator the rest of the list price
