"""A statement finds a budget's windows from the ledger accounts the calls opened (``budget:{budget}:{start}``),
not by recomputing them in its zone: a window opened while the platform ran in another zone is shown, with
its end from its start; a window long past is not; one that ended just before the period is shown only if a
late settlement moved it in the period."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from suanli.economy import market, statements, windows
from suanli.economy.funding import Funding, FundingRequest, reserve_job
from suanli.economy.statement_lines import BUDGET_WINDOWS, budget_window
from suanli.pricing import TokenUsage
from suanli.store.accounts import find_account
from suanli.store.db import run_in_transaction
from tests.economy.test_funding import PRICE_NANO, PRODUCTS, SHANGHAI, Shop, at
from tests.economy.test_statements import NANO_PER_CNY, Clock, settle, store_at

UTC = ZoneInfo("UTC")
DAY_MS = 86_400_000
USAGE = TokenUsage(input=30, output=20)


@pytest.fixture
def shop() -> Iterator[Shop]:
    clock = Clock(at("2026-10-05 12:00:00"))
    with store_at(clock) as shop:
        shop.clock = clock  # type: ignore[attr-defined]
        shop.topup(5 * NANO_PER_CNY)
        yield shop


def reserve(shop: Shop, zone: ZoneInfo) -> Funding:
    """A call's reservation as a gateway running in ``zone`` makes it."""
    shop.requests += 1
    now = shop.clock.ms  # type: ignore[attr-defined]
    req = FundingRequest(
        request_id=f"r{shop.requests}",
        account_id=shop.account,
        key_id="k",
        model="chat",
        now_ms=now,
        quotes=[("op/chat", 70 * PRICE_NANO)],
        input_max=40,
        output_max=30,
        order=("wallet",),
    )
    return run_in_transaction(shop.conn, lambda c: reserve_job(c, req, PRODUCTS, zone))


def call_at(shop: Shop, when: str, zone: ZoneInfo = SHANGHAI) -> None:
    shop.clock.ms = at(when)  # type: ignore[attr-defined]
    settle(shop, reserve(shop, zone), USAGE, at(when))


def budgets_of(shop: Shop, month: str) -> list[tuple[int, int, int]]:
    """The month's budget windows: start, end and what was used in the month."""
    account = find_account(shop.conn, shop.account)
    body = statements.build(
        shop.conn,
        account,
        statements.month_period(month, SHANGHAI),
        shop.clock.ms + DAY_MS,  # type: ignore[attr-defined]
    )
    return [(b["window_start_ms"], b["window_end_ms"], b["totals"]["used"]) for b in body["budgets"]]


def test_a_window_opened_under_another_zone_is_shown_with_its_end(shop: Shop) -> None:
    budget = run_in_transaction(shop.conn, market.set_budget_job(shop.account, None, "day", "tokens", 300))
    call_at(shop, "2026-11-10 12:00:00")  # its day in Shanghai
    call_at(shop, "2026-11-10 12:30:00", UTC)  # its day in UTC: from 08:00 in Shanghai
    shanghai_day = windows.day(at("2026-11-10 12:00:00"), SHANGHAI)
    utc_day = windows.day(at("2026-11-10 12:30:00"), UTC)
    assert utc_day[0] == at("2026-11-10 08:00:00")
    assert budgets_of(shop, "2026-11") == [(*shanghai_day, -50), (*utc_day, -50)]
    rows = shop.conn.execute("SELECT id FROM ledger_accounts WHERE id LIKE 'budget:%' ORDER BY id").fetchall()
    assert [row[0] for row in rows] == [f"budget:{budget.id}:{shanghai_day[0]}", f"budget:{budget.id}:{utc_day[0]}"]


def test_a_window_long_past_is_not_shown_and_a_late_settlement_is(shop: Shop) -> None:
    run_in_transaction(shop.conn, market.set_budget_job(shop.account, None, "day", "tokens", 300))
    call_at(shop, "2026-10-05 12:00:00")
    call_at(shop, "2026-10-30 12:00:00")
    shop.clock.ms = at("2026-10-31 23:59:00")  # type: ignore[attr-defined]
    late = reserve(shop, SHANGHAI)
    shop.clock.ms = at("2026-11-01 00:00:30")  # type: ignore[attr-defined]
    settle(shop, late, USAGE, shop.clock.ms)  # type: ignore[attr-defined]  # in October 31's window, in November
    october = budgets_of(shop, "2026-10")
    assert [start for start, _, _ in october] == [at(d) for d in ("2026-10-05", "2026-10-30", "2026-10-31")]
    assert budgets_of(shop, "2026-11") == [(at("2026-10-31"), at("2026-11-01"), -50)]
    assert budgets_of(shop, "2026-12") == []


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata", "Europe/Moscow"])
@pytest.mark.parametrize("period", sorted(BUDGET_WINDOWS))
def test_a_window_is_found_whole_from_its_start_whichever_zone_opened_it(zone: str, period: str) -> None:
    """From +14 to −12 hours, zones without daylight saving time: the window as the opening zone made it."""
    for when in ("2026-01-31 10:00:00", "2026-02-28 23:00:00", "2026-03-01 01:00:00", "2026-11-30 12:00:00"):
        opened = BUDGET_WINDOWS[period](at(when), ZoneInfo(zone))
        assert budget_window(period, opened[0], SHANGHAI) == opened


def test_a_window_opened_where_clocks_change_is_found_within_the_hour() -> None:
    new_york = ZoneInfo("America/New_York")  # daylight saving time ends on November 1, 2026
    for period in BUDGET_WINDOWS:
        opened = BUDGET_WINDOWS[period](at("2026-11-01 20:00:00"), new_york)
        start, end = budget_window(period, opened[0], SHANGHAI)
        assert start == opened[0] and abs(end - opened[1]) <= 3_600_000
