"""Funding on the real SQLite store, with time passed in: draw-down order, nothing created or destroyed,
a quote never exceeded, expiry forfeiting exactly the remainder; and the allowance windows' edges."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.catalog import TIERS
from suanli.economy import market, names
from suanli.economy import store as econ
from suanli.economy.funding import Funding, FundingRequest, reserve_job, settlement_transfers
from suanli.economy.products import Product, parse_product
from suanli.errors import BadRequest, PaymentRequired, RateLimited
from suanli.gateway import accounts as ops
from suanli.ledger import ASSET_CNY, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account, open_pending, read_balance, verify
from suanli.pricing import TokenUsage
from suanli.store.conn import Conn
from suanli.store.db import open_database, run_in_transaction
from tests.stores import examples, fresh_database

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MODELS = frozenset({"chat", "other"})
SPECS = {
    "light": {
        "kind": "pack",
        "price": "1",
        "tokens": 1000,
        "models": ["chat"],
        "valid_days": 30,
        "weights": {"input": "1", "cached_input": "0.1", "output": "2"},
    },
    "heavy": {
        "kind": "pack",
        "price": "1",
        "tokens": 1000,
        "models": ["chat", "other"],
        "valid_days": 30,
        "weights": {"input": "0.5", "output": "3"},
    },
    "elsewhere": {"kind": "pack", "price": "1", "tokens": 1000, "models": ["other"], "valid_days": 30},
    "lite": {
        "kind": "subscription",
        "price": "49",
        "models": ["chat"],
        "allowances": [{"window": "5h", "requests": 80}, {"window": "week", "requests": 100}],
    },
    "weekly": {
        "kind": "subscription",
        "price": "9",
        "models": ["chat"],
        "allowances": [{"window": "week", "requests": 3}],
    },
}
PRODUCTS: dict[str, Product] = {
    pid: parse_product(pid, spec, models=MODELS, tiers=TIERS) for pid, spec in SPECS.items()
}
PRICE_NANO = 10  # per token of either bound, in the quotes below


def at(text: str) -> int:
    """Epoch ms of a Beijing wall-clock time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


T0 = at("2026-12-02 10:00:00")  # a Wednesday


class Shop:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        run_in_transaction(conn, lambda c: [econ.list_product(c, p, SPECS[p.id], "test") for p in PRODUCTS.values()])
        self.account = run_in_transaction(conn, ops.create_account_job("acme", "enterprise")).id
        run_in_transaction(conn, lambda c: open_account(c, names.PLANS, ASSET_CNY, None))
        for operator in ("op",):
            run_in_transaction(conn, lambda c, o=operator: open_account(c, ledger_names.sales(o), ASSET_CNY, None))
        run_in_transaction(conn, lambda c: open_account(c, ledger_names.ESCROW, ASSET_CNY, 0))
        self.requests = 0

    def topup(self, nano: int) -> None:
        if nano:
            run_in_transaction(self.conn, ops.topup_job(self.account, nano))

    def pack(self, product: str, tokens: int, expires_at_ms: int) -> econ.Pack:
        def job(conn: Conn) -> econ.Pack:
            pack = econ.create_pack(
                conn, self.account, product, tokens=tokens, expires_at_ms=expires_at_ms, origin="test"
            )
            asset = names.pack_asset(product)
            apply_entry(
                conn,
                [Transfer(f"{pack.id}.issue", Kind.POSTED, names.issue(product), names.pack(pack.id), asset, tokens)],
            )
            return pack

        return run_in_transaction(self.conn, job)

    def subscribe(self, product: str, now: int) -> None:
        self.topup(PRODUCTS[product].price_nano)
        run_in_transaction(self.conn, market.subscribe_job(self.account, product, PRODUCTS, SHANGHAI, at_ms=now))

    def reserve(
        self, now: int, input_max: int = 100, output_max: int = 100, model: str = "chat", **kw: object
    ) -> Funding:
        self.requests += 1
        req = FundingRequest(
            request_id=f"r{self.requests}",
            account_id=self.account,
            key_id="k",
            model=model,
            now_ms=now,
            quotes=[("op/chat", (input_max + output_max) * PRICE_NANO)],
            input_max=input_max,
            output_max=output_max,
            **kw,
        )  # type: ignore[arg-type]
        return run_in_transaction(self.conn, lambda c: reserve_job(c, req, PRODUCTS, SHANGHAI))

    def settle(self, funding: Funding, usage: TokenUsage) -> int:
        request_id = (funding.wallet or funding.legs[0].reservation).id.split(".")[0]
        settled = settlement_transfers(request_id, funding, usage, usage.total * PRICE_NANO, "op")
        run_in_transaction(self.conn, lambda c: apply_entry(c, settled.transfers, request_id))
        return settled.wallet_nano

    def available(self, account: str) -> int:
        balance = read_balance(self.conn, account)
        return balance.available if balance else 0


@pytest.fixture
def shop() -> Iterator[Shop]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(fresh_database(Path(tmp), "s.db"))
        try:
            yield Shop(conn)
        finally:
            conn.close()


# The Coding Plan's windows.


def test_the_81st_prompt_in_a_5_hour_window_waits_for_its_reset_and_then_succeeds(shop: Shop) -> None:
    shop.subscribe("lite", T0)
    first = T0 + 1_000
    for n in range(80):
        funding = shop.reserve(first + n)
        shop.settle(funding, TokenUsage(input=10, output=5))
    with pytest.raises(RateLimited) as refused:
        shop.reserve(first + 5 * HOUR_MS - 1)  # the window's last millisecond
    headers = refused.value.headers or {}
    assert headers["retry-after"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "80"
    assert headers["anthropic-ratelimit-requests-reset"] == "2026-12-02T07:00:01Z"  # first + 5 h, in UTC
    assert shop.available(ledger_names.wallet(shop.account)) == 0  # nothing fell through to the wallet
    again = shop.reserve(first + 5 * HOUR_MS)  # the window's end opens the next one
    assert [leg.source for leg in again.legs] == ["allowance", "allowance"]
    assert again.limits[0].remaining == 79 and again.limits[0].reset_ms == first + 10 * HOUR_MS


def test_a_weekly_allowance_rolls_over_at_monday_midnight_beijing_time(shop: Shop) -> None:
    shop.subscribe("weekly", at("2026-12-01 09:00:00"))
    sunday_last_ms = at("2026-12-06 23:59:59.999")
    for offset in range(3):
        shop.settle(shop.reserve(sunday_last_ms - offset), TokenUsage(input=1, output=1))
    with pytest.raises(RateLimited) as refused:
        shop.reserve(sunday_last_ms)
    assert refused.value.headers and refused.value.headers["retry-after"] == "1"
    monday = shop.reserve(at("2026-12-07 00:00:00"))
    assert monday.limits[0].reset_ms == at("2026-12-14 00:00:00") and monday.limits[0].remaining == 2


def test_a_failed_request_uses_no_allowance(shop: Shop) -> None:
    shop.subscribe("lite", T0)
    shop.settle(shop.reserve(T0), TokenUsage())
    assert shop.reserve(T0 + 1).limits[0].remaining == 79


def test_a_spent_allowance_falls_through_only_when_asked(shop: Shop) -> None:
    shop.subscribe("weekly", T0)
    for n in range(3):
        shop.settle(shop.reserve(T0 + n), TokenUsage(input=1))
    shop.topup(10**9)
    with pytest.raises(RateLimited):
        shop.reserve(T0 + 10)
    funded = shop.reserve(T0 + 11, fallthrough=True)
    assert funded.legs == [] and funded.wallet is not None


# Packs.


def test_expiry_forfeits_exactly_the_remainder_even_with_a_call_in_flight(shop: Shop) -> None:
    pack = shop.pack("light", 1000, T0 + DAY_MS)
    shop.settle(shop.reserve(T0), TokenUsage(input=100, output=50))  # draws 100 + 2 x 50
    in_flight = shop.reserve(T0 + DAY_MS - 1, input_max=100, output_max=100)  # reserves 300
    swept = run_in_transaction(shop.conn, market.expire_packs_job(at_ms=T0 + DAY_MS))
    assert swept == [{"pack": pack.id, "account_id": shop.account, "tokens": 1000 - 200 - 300}]
    shop.settle(in_flight, TokenUsage(input=40, output=10))  # draws 60; 240 come back to the expired pack
    swept = run_in_transaction(shop.conn, market.expire_packs_job(at_ms=T0 + DAY_MS + 1))
    assert swept[0]["tokens"] == 240
    forfeit = read_balance(shop.conn, names.forfeit("light"))
    assert forfeit is not None and forfeit.credits_posted == 1000 - 200 - 60
    assert shop.available(names.pack(pack.id)) == 0
    assert run_in_transaction(shop.conn, market.expire_packs_job(at_ms=T0 + 2 * DAY_MS)) == []
    verify(shop.conn)


def test_an_expired_pack_funds_nothing(shop: Shop) -> None:
    shop.pack("light", 1000, T0)
    shop.topup(10**9)
    funding = shop.reserve(T0)
    assert funding.legs == [] and funding.wallet is not None


pack_specs = st.lists(
    st.tuples(st.sampled_from(["light", "heavy", "elsewhere"]), st.integers(0, 800), st.integers(1, 90)),
    max_size=4,
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    packs=pack_specs,
    wallet=st.integers(0, 5_000),
    input_max=st.integers(1, 400),
    output_max=st.integers(0, 400),
    use=st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100)),  # percent of each bound used
    no_wallet=st.booleans(),
)
def test_funding_draws_packs_in_order_never_exceeds_a_reservation_and_keeps_every_asset_whole(
    *,
    packs: list[tuple[str, int, int]],
    wallet: int,
    input_max: int,
    output_max: int,
    use: tuple[int, int, int],
    no_wallet: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(fresh_database(Path(tmp), "s.db"))
        try:
            _check_one_request(Shop(conn), packs, wallet, bounds=(input_max, output_max), use=use, no_wallet=no_wallet)
        finally:
            conn.close()


def _check_one_request(
    shop: Shop,
    packs: list[tuple[str, int, int]],
    wallet: int,
    *,
    bounds: tuple[int, int],
    use: tuple[int, int, int],
    no_wallet: bool,
) -> None:
    made = [shop.pack(product, tokens, T0 + days * DAY_MS) for product, tokens, days in packs]
    shop.topup(wallet)
    before = {p.id: shop.available(names.pack(p.id)) for p in made}
    wallet_before = shop.available(ledger_names.wallet(shop.account))
    order = ("packs",) if no_wallet else ("packs", "wallet")
    try:
        funding = shop.reserve(T0, input_max=bounds[0], output_max=bounds[1], order=order)
    except PaymentRequired:
        assert {p.id: shop.available(names.pack(p.id)) for p in made} == before  # a refusal leaves all as it was
        assert shop.available(ledger_names.wallet(shop.account)) == wallet_before and not open_pending(shop.conn)
        verify(shop.conn)
        return
    legs = [leg for leg in funding.legs if leg.source == "pack"]
    eligible = sorted(
        (p for p in made if "chat" in PRODUCTS[p.product_id].models and before[p.id] > 0),
        key=lambda p: (p.expires_at_ms, p.id),
    )
    assert [leg.reservation.debit_account for leg in legs] == [names.pack(p.id) for p in eligible[: len(legs)]]
    for leg, pack in zip(legs[:-1], eligible, strict=False):  # every pack but the last one used is emptied first
        assert leg.reservation.amount == before[pack.id]
    prompt = bounds[0] * use[0] // 100
    cached = prompt * use[1] // 100
    usage = TokenUsage(input=prompt - cached, cached_input=cached, output=bounds[1] * use[2] // 100)
    cost = usage.total * PRICE_NANO
    settled = settlement_transfers("r1", funding, usage, cost, "op")
    run_in_transaction(shop.conn, lambda c: apply_entry(c, settled.transfers, "r1"))
    used = {s["account"]: s["used"] for s in settled.summary if s["source"] == "pack"}
    for leg in legs:
        assert 0 <= used[leg.reservation.debit_account] <= leg.reservation.amount  # never beyond the reservation
    amounts = [used[leg.reservation.debit_account] for leg in legs]
    for earlier, later in zip(range(len(legs)), range(1, len(legs)), strict=False):  # draw-down order at settlement
        assert amounts[later] == 0 or amounts[earlier] == legs[earlier].reservation.amount
    if funding.wallet is not None:
        assert settled.wallet_nano <= funding.wallet.amount
    assert settled.wallet_nano + settled.plan_nano == cost  # the operator is paid the whole cost, once
    assert cost - settled.wallet_nano == (settled.plan_nano if legs else 0)
    assert not open_pending(shop.conn)
    verify(shop.conn)  # every asset sums to zero; no account below its floor
    swept = run_in_transaction(shop.conn, market.expire_packs_job(at_ms=T0 + 100 * DAY_MS))
    forfeited = {s["pack"]: s["tokens"] for s in swept}
    for pack in made:
        spent = used.get(names.pack(pack.id), 0)
        assert forfeited.get(pack.id, 0) == pack.tokens - spent  # expiry takes exactly what is left
    verify(shop.conn)


def test_a_mid_month_upgrade_charges_the_prorated_difference_and_raises_the_open_windows(shop: Shop) -> None:
    shop.subscribe("lite", T0)  # ¥49 a month: 2026-12-02 10:00 to 2027-01-02 10:00 (31 days)
    shop.settle(shop.reserve(T0 + 1), TokenUsage(input=1))
    PRODUCTS["pro"] = parse_product(
        "pro",
        {
            **SPECS["lite"],
            "price": "149",
            "allowances": [{"window": "5h", "requests": 400}, {"window": "week", "requests": 500}],
        },
        models=MODELS,
        tiers=TIERS,
    )
    try:
        run_in_transaction(shop.conn, lambda c: econ.list_product(c, PRODUCTS["pro"], {}, "test"))
        halfway = T0 + 31 * DAY_MS // 2
        shop.topup(100 * 10**9)
        upgraded = run_in_transaction(
            shop.conn, market.subscribe_job(shop.account, "pro", PRODUCTS, SHANGHAI, at_ms=halfway)
        )
        assert upgraded["charged"] == "50"  # half of the ¥100 difference, the month being half gone
        assert shop.available(ledger_names.wallet(shop.account)) == 50 * 10**9
        week = shop.reserve(halfway + 1).limits
        assert {(limit.name, limit.limit) for limit in week} == {("5h", 400), ("week", 500)}
        assert {(limit.name, limit.remaining) for limit in week} == {("5h", 399), ("week", 499)}
        with pytest.raises(BadRequest) as refused:  # back down mid-month: not until the month ends
            run_in_transaction(
                shop.conn, market.subscribe_job(shop.account, "lite", PRODUCTS, SHANGHAI, at_ms=halfway + 2)
            )
        assert refused.value.code == "downgrade_mid_cycle"
    finally:
        del PRODUCTS["pro"]


def test_a_token_allowance_reserves_the_bound_and_keeps_what_was_used(shop: Shop) -> None:
    PRODUCTS["tokens"] = parse_product(
        "tokens",
        {"kind": "subscription", "price": "1", "models": ["chat"], "allowances": [{"window": "5h", "tokens": 1000}]},
        models=MODELS,
        tiers=TIERS,
    )
    try:
        run_in_transaction(shop.conn, lambda c: econ.list_product(c, PRODUCTS["tokens"], {}, "test"))
        shop.subscribe("tokens", T0)
        funding = shop.reserve(T0, input_max=300, output_max=300)
        assert funding.limits[0].remaining == 400  # the bound is held while the call runs
        shop.settle(funding, TokenUsage(input=120, output=80))
        assert shop.reserve(T0 + 1, input_max=300, output_max=300).limits[0].remaining == 1000 - 200 - 600
        with pytest.raises(RateLimited) as refused:
            shop.reserve(T0 + 2, input_max=300, output_max=300)  # 200 left: a 600-token bound can't be covered
        assert (refused.value.headers or {})["x-ratelimit-remaining-tokens"] == "200"
    finally:
        del PRODUCTS["tokens"]


def test_a_subscription_renews_from_the_wallet_when_its_month_ends_or_lapses(shop: Shop) -> None:
    shop.subscribe("weekly", T0)  # ¥9 a month, paid
    month_end = at("2027-01-02 10:00:00")
    assert run_in_transaction(shop.conn, market.renew_due_job(PRODUCTS, SHANGHAI, at_ms=month_end - 1)) == []
    shop.topup(9 * 10**9)
    (renewed,) = run_in_transaction(shop.conn, market.renew_due_job(PRODUCTS, SHANGHAI, at_ms=month_end))
    assert renewed["renewed"] is True and shop.available(ledger_names.wallet(shop.account)) == 0
    sub = econ.current_subscription(shop.conn, shop.account)
    assert sub is not None and (sub.period_start_ms, sub.period_end_ms) == (month_end, at("2027-02-02 10:00:00"))
    (lapsed,) = run_in_transaction(shop.conn, market.renew_due_job(PRODUCTS, SHANGHAI, at_ms=sub.period_end_ms))
    assert lapsed["renewed"] is False and econ.current_subscription(shop.conn, shop.account) is None
    verify(shop.conn)


def test_a_wallet_short_of_the_dearest_quote_reserves_the_first_and_drops_the_dearer(shop: Shop) -> None:
    shop.topup(1_500)
    req = FundingRequest(
        request_id="r-two",
        account_id=shop.account,
        key_id="k",
        model="chat",
        now_ms=T0,
        quotes=[("cheap", 1_000), ("dear", 2_000)],
        input_max=50,
        output_max=50,
    )
    funding = run_in_transaction(shop.conn, lambda c: reserve_job(c, req, PRODUCTS, SHANGHAI))
    assert funding.wallet is not None and funding.wallet.amount == 1_000 and funding.covered_offers == ("cheap",)
    assert shop.available(ledger_names.wallet(shop.account)) == 500
    verify(shop.conn)  # the refused first try left nothing behind


def test_a_pay_as_you_go_account_is_reserved_from_its_wallet_alone(shop: Shop) -> None:
    shop.pack("light", 1000, T0 + DAY_MS)
    shop.topup(10**9)
    funding = shop.reserve(T0, plans=False)  # the flag an account without plans carries: no look-ups
    assert funding.legs == [] and funding.wallet is not None and funding.wallet.amount == 200 * PRICE_NANO
    shop.settle(funding, TokenUsage(input=10, output=5))
    assert shop.available(ledger_names.wallet(shop.account)) == 10**9 - 15 * PRICE_NANO
    verify(shop.conn)
