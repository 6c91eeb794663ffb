"""Operator settlement over random histories, on the real store (both, with SUANLI_TEST_STORE=postgres).

Calls are funded and settled through the gateway's own path (``reserve_job`` over the account's
subscription, packs and wallet, ``settlement_transfers``, ``charge_overruns`` for what a reservation did not
cover, the usage event, in one transaction), at instants a test clock sets; packs and subscriptions are bought
with the market's own jobs at random moments, so some calls are paid (in whole or in part) by the platform's
plan account (``{request}.plan_pay``); settlement runs fall at random moments inside and after the month.
Whatever happens: the month's settled gross is exactly what customers' usage credited to sales in the month
(wallet, plan, overrun and uncharged credits alike), net plus
commission is that gross to the nano, each commission is the documented floor per offer and version, a
second run moves nothing, and the ledger verifies.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from suanli.catalog import TIERS, Catalog, parse_catalog
from suanli.economy import names
from suanli.economy import store as econ
from suanli.economy.funding import FundingRequest, charge_overruns, reserve_job, settlement_transfers
from suanli.economy.market import buy_pack_job, subscribe_job
from suanli.economy.operator_sales import parse_month
from suanli.economy.operator_settlement import COMMISSION, payout, settle_job, settlements
from suanli.economy.products import Product, parse_product
from suanli.errors import BadRequest, ConfigError, SuanliError
from suanli.gateway import accounts as ops
from suanli.ledger import ASSET_CNY
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account, read_balance, verify
from suanli.pricing import TokenUsage
from suanli.store.conn import Conn
from suanli.store.db import open_database, run_in_transaction
from suanli.store.usage import UsageEvent, insert_usage_event
from tests.stores import examples, fresh_database
from tests.usage_events import usage_event

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONTH = parse_month("2026-11", SHANGHAI)
DAY_MS = 86_400_000
VERSION_MS = MONTH.start_ms + 15 * DAY_MS  # op1's commission changes mid-month
OFFERS = ("op1/chat", "op1/code", "op2/chat")
TOKENS_MAX = 100  # each call's input and output bounds, as the gateway reserves them
PRODUCT_SPECS = {
    "small": {
        "kind": "pack",
        "price": "0.000002",
        "tokens": 500,
        "models": ["chat"],
        "valid_days": 10,
        "weights": {"input": "1", "output": "2"},
    },
    "big": {"kind": "pack", "price": "0.000003", "tokens": 2000, "models": ["chat", "code"], "valid_days": 30},
    "plan": {
        "kind": "subscription",
        "price": "0.000005",
        "models": ["chat", "code"],
        "allowances": [{"window": "week", "requests": 3}],
    },
}
PRODUCTS: dict[str, Product] = {
    pid: parse_product(pid, spec, models=frozenset({"chat", "code"}), tiers=TIERS)
    for pid, spec in PRODUCT_SPECS.items()
}
CATALOG = {
    "operators": {
        "op1": {
            "base_url": "http://127.0.0.1:9/v1",
            "commission_bp": 500,
            "commission_versions": [{"effective_from": "2026-11-16T00:00:00+08:00", "commission_bp": 700}],
        },
        "op2": {"base_url": "http://127.0.0.1:9/v1", "commission_bp": 333},
    },
    "models": {"chat": {}, "code": {}},
    "offers": [
        {
            "operator": "op1",
            "model": "chat",
            "context_window": 1000,
            "max_output_tokens": 100,
            "price": {"input": "1", "output": "2"},
        },
        {
            "operator": "op1",
            "model": "code",
            "context_window": 1000,
            "max_output_tokens": 100,
            "price": {"input": "1", "output": "2"},
            "commission_bp": 1234,
        },
        {
            "operator": "op2",
            "model": "chat",
            "context_window": 1000,
            "max_output_tokens": 100,
            "price": {"input": "1", "output": "2"},
        },
    ],
}


class Clock:
    def __init__(self, at_ms: int) -> None:
        self.at_ms = at_ms

    def __call__(self) -> int:
        return self.at_ms


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The time the ledger stamps on transfers, on either store."""
    clock = Clock(MONTH.start_ms)
    monkeypatch.setattr("suanli.ledger.sqlite.now_ms", clock)
    monkeypatch.setattr("suanli.ledger.postgres.now_ms", clock)
    monkeypatch.setattr("suanli.economy.market.now_ms", clock)  # a pack's purchase and expiry
    monkeypatch.setattr("suanli.economy.store.now_ms", clock)
    return clock


class Market:
    """A database with one customer and two operators, where calls are funded and settled as the gateway does."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.catalog: Catalog = parse_catalog(CATALOG, {}, now_ms=MONTH.start_ms)
        self.account = run_in_transaction(conn, ops.create_account_job("acme", "enterprise")).id
        run_in_transaction(
            conn, lambda c: [econ.list_product(c, p, PRODUCT_SPECS[p.id], "test") for p in PRODUCTS.values()]
        )
        for account in (ledger_names.ESCROW, ledger_names.UNCHARGED, names.PLANS, *self._sales()):
            floor = ledger_names.ESCROW_FLOOR_NANO if account == ledger_names.ESCROW else None
            run_in_transaction(conn, lambda c, a=account, f=floor: open_account(c, a, ASSET_CNY, f))
        self.calls = 0

    def _sales(self) -> list[str]:
        return [ledger_names.sales(o) for o in ("op1", "op2")]

    def topup(self, nano: int) -> None:
        run_in_transaction(self.conn, ops.topup_job(self.account, nano))

    def buy(self, product_id: str, at_ms: int) -> None:
        """A pack or the subscription, bought from the wallet by the market's own jobs (refused: no matter)."""
        if PRODUCTS[product_id].kind == "pack":
            job = buy_pack_job(self.account, product_id, PRODUCTS)
        else:
            job = subscribe_job(self.account, product_id, PRODUCTS, SHANGHAI, at_ms=at_ms)
        with contextlib.suppress(SuanliError):  # the wallet can't pay, or the plan is already held
            run_in_transaction(self.conn, job)

    def call(self, offer_id: str, reserve_nano: int, cost_nano: int, at_ms: int, tokens: int) -> tuple[int, bool]:
        """One call quoted at ``reserve_nano``, using ``tokens`` (split between input and output), settled at
        ``cost_nano``; returns what sales got, and whether a plan funded it."""
        self.calls += 1
        request_id, (operator, model) = f"req_{self.calls}", offer_id.split("/")
        quotes = [(offer_id, reserve_nano)]
        req = FundingRequest(
            request_id, self.account, "k", model, at_ms, quotes, TOKENS_MAX, TOKENS_MAX, fallthrough=tokens % 2 == 1
        )
        try:
            funding = run_in_transaction(self.conn, lambda c: reserve_job(c, req, PRODUCTS, SHANGHAI))
        except SuanliError:  # no source can cover the reservation: a refused call costs nothing
            return 0, False
        usage = TokenUsage(input=tokens // 2, output=tokens - tokens // 2)
        settled = settlement_transfers(request_id, funding, usage, cost_nano, operator)

        def job(conn: Conn) -> None:
            apply_entry(conn, settled.transfers, request_id)
            over = charge_overruns(conn, request_id, settled.overruns)
            insert_usage_event(
                conn,
                _event(request_id, self.account, offer_id, cost=cost_nano, uncharged=over.uncharged_nano, at_ms=at_ms),
            )

        run_in_transaction(self.conn, job)
        return cost_nano, funding.plan_funded


def _event(request_id: str, account: str, offer_id: str, *, cost: int, uncharged: int, at_ms: int) -> UsageEvent:
    return usage_event(
        request_id,
        account,
        offer_id=offer_id,
        output_tokens=0,
        reserved_nano=cost,
        cost_nano=cost - uncharged,
        uncharged_nano=uncharged,
        created_at_ms=at_ms,
    )


@pytest.fixture
def database() -> Iterator[Conn]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(fresh_database(Path(tmp), "s.db"))
        try:
            yield conn
        finally:
            conn.close()


def _expected_commission(credits: list[tuple[str, int, int]]) -> int:
    """The documented rule, recomputed: per offer and commission version, floor(gross × bp / 10000)."""
    groups: dict[tuple[str, int], int] = {}
    for offer, amount, at_ms in credits:
        if offer == "op1/code":
            key = (offer, 1234)
        elif offer == "op1/chat":
            key = (offer, 700 if at_ms >= VERSION_MS else 500)
        else:
            key = (offer, 333)
        groups[key] = groups.get(key, 0) + amount
    return sum(gross * bp // 10_000 for (_, bp), gross in groups.items())


Step = tuple[str, str, int, int, int]  # (kind, offer or product, quote, cost, tokens)
step = st.one_of(
    st.tuples(
        st.just("call"), st.sampled_from(OFFERS), st.integers(1, 5_000), st.integers(0, 9_000), st.integers(0, 260)
    ),
    st.tuples(st.just("buy"), st.sampled_from(sorted(PRODUCTS)), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("settle"), st.just(""), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.tuples(step, st.integers(-2 * DAY_MS, 32 * DAY_MS)), max_size=14),
    topup=st.integers(0, 30_000),
    plans=st.lists(st.sampled_from(sorted(PRODUCTS)), max_size=2),
)
def test_settlement_runs_at_random_moments_settle_the_month_exactly_once(
    clock: Clock, steps: list[tuple[Step, int]], topup: int, plans: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(fresh_database(Path(tmp), "s.db"))
        try:
            _run_history(conn, clock, steps, topup, plans)
        finally:
            conn.close()


def _run_history(conn: Conn, clock: Clock, steps: list[tuple[Step, int]], topup: int, plans: list[str]) -> None:
    market = Market(conn)
    clock.at_ms = MONTH.start_ms - 3 * DAY_MS  # before the month: a 10-day pack expires inside it
    if topup:
        market.topup(topup)
    for product in plans:
        market.buy(product, clock.at_ms)
    credits: list[tuple[str, int, int]] = []  # (offer, credited to sales, at) of the month's calls
    for (kind, offer, reserve, cost, tokens), offset in sorted(steps, key=lambda s: s[1]):
        clock.at_ms = MONTH.start_ms + offset
        if kind == "call":
            paid, plan_funded = market.call(offer, reserve, cost, clock.at_ms, tokens)
            event("a plan-funded call" if plan_funded else "a wallet call" if paid else "a refused call")
            if paid and MONTH.start_ms <= clock.at_ms < MONTH.end_ms:
                credits.append((offer, paid, clock.at_ms))
        elif kind == "buy":
            market.buy(offer, clock.at_ms)
        elif clock.at_ms > MONTH.start_ms:
            run_in_transaction(conn, settle_job(market.catalog, MONTH, clock.at_ms))
    clock.at_ms = MONTH.end_ms + 3 * DAY_MS
    run_in_transaction(conn, settle_job(market.catalog, MONTH, clock.at_ms))
    again = run_in_transaction(conn, settle_job(market.catalog, MONTH, clock.at_ms))
    assert again.run_id is None and again.settled == []  # a second run moves nothing
    rows = settlements(conn, month=MONTH.name)
    gross = sum(r.gross_nano for r in rows)
    commission = sum(r.commission_nano for r in rows)
    assert gross == sum(amount for _, amount, _ in credits)  # to the nano: what usage credited to sales
    assert commission == _expected_commission(credits)
    assert sum(r.net_nano for r in rows) + commission == gross
    paid_out = sum(_posted(conn, payout(o)) for o in ("op1", "op2"))
    assert paid_out + _posted(conn, COMMISSION) == gross
    verify(conn)


def _posted(conn: Conn, account: str) -> int:
    balance = read_balance(conn, account)
    return 0 if balance is None else balance.posted


def test_a_month_not_yet_begun_is_refused(database: Conn, clock: Clock) -> None:
    market = Market(database)
    with pytest.raises(BadRequest) as refused:
        run_in_transaction(database, settle_job(market.catalog, MONTH, MONTH.start_ms - 1))
    assert refused.value.code == "month_not_begun"


def test_a_month_must_be_written_as_year_and_month() -> None:
    for text in ("2026-13", "2026-1", "november", "", "1969-12"):
        with pytest.raises(BadRequest) as refused:
            parse_month(text, SHANGHAI)
        assert refused.value.code == "invalid_month" and refused.value.param == "month"


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("operator", {"commission_bp": 10_001}, "operator op1: commission_bp must be a whole number"),
        ("operator", {"commission_bp": "5"}, "operator op1: commission_bp must be a whole number"),
        ("offer", {"commission_bp": -1}, "offer op1/chat: commission_bp must be a whole number"),
        ("operator", {"commission_versions": [{"effective_from": "2026-01-01T00:00:00+08:00"}]}, "commission_bp"),
        ("operator", {"commission_versions": [{"effective_from": "2026-01-01", "commission_bp": 1}]}, "with its zone"),
        ("offer", {"commission_versions": {"x": 1}}, "commission_versions must be a list"),
        ("operator", {"commission_versions": [{"effective_from": "2026-01-01T00:00:00+08:00", "bp": 1}]}, "'bp'"),
    ],
)
def test_a_bad_commission_stops_the_catalog_naming_the_field(
    where: str, value: dict[str, object], message: str
) -> None:
    spec = {**CATALOG, "operators": {name: dict(op) for name, op in CATALOG["operators"].items()}}  # type: ignore[attr-defined]
    spec["offers"] = [dict(offer) for offer in CATALOG["offers"]]  # type: ignore[attr-defined]
    target = spec["operators"]["op1"] if where == "operator" else spec["offers"][0]  # type: ignore[index]
    target.pop("commission_versions", None)
    target.update(value)
    with pytest.raises(ConfigError, match=message):
        parse_catalog(spec, {}, now_ms=MONTH.start_ms)
