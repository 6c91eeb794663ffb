"""Why four workers once let a Coding Plan window of 80 prompts serve more than 80: a prompt stamped just
before the window another worker opened opened a second window, with a full allowance of its own (issue 11).
Fixed: a request stamped before the open window's end belongs to it (``windows.rolling``).

Each worker stamps a call's time when it admits it (gateway/lifecycle.py ``now_ms()``), then its admission
job waits for the account's lock behind the other workers' jobs. So jobs reach the database out of stamp
order: worker A's call stamped at T+1 ms opens the rolling 5-hour window [T+1, T+5h+1); worker B's call
stamped at T then finds no window holding T (``windows.rolling`` wants start <= now) and opens [T, T+5h),
granted 80 again. The acceptance storm (test_acceptance_overspend.py) served 81 to 112 prompts of 80 this
way in most runs. Here the two jobs run one after the other, as the account's lock orders them, on the
same PostgreSQL store the workers use.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from zoneinfo import ZoneInfo

import pytest

from suanli.catalog import TIERS
from suanli.economy import market
from suanli.economy import store as econ
from suanli.economy.funding import FundingRequest, reserve_job
from suanli.economy.products import Product, parse_product
from suanli.errors import RateLimited
from suanli.gateway import accounts as ops
from suanli.money import cny_to_nano
from suanli.store.conn import Conn
from suanli.store.db import now_ms, open_database, run_in_transaction
from tests.pg import shared_server

ZONE = ZoneInfo("Asia/Shanghai")
WINDOW_PROMPTS = 80
SPEC = {
    "kind": "subscription",
    "price": "49",
    "models": ["coder"],
    "allowances": [{"window": "5h", "requests": WINDOW_PROMPTS}],
}
PRODUCTS: dict[str, Product] = {"lite": parse_product("lite", SPEC, models=frozenset({"coder"}), tiers=TIERS)}


@pytest.fixture
def store() -> Iterator[Conn]:
    conn = open_database(shared_server().new_database())
    try:
        yield conn
    finally:
        conn.close()


def _subscriber(conn: Conn, at_ms: int) -> str:
    run_in_transaction(conn, lambda c: econ.list_product(c, PRODUCTS["lite"], SPEC, "test"))
    account = run_in_transaction(conn, ops.create_account_job("coder", "enterprise")).id
    run_in_transaction(conn, ops.topup_job(account, cny_to_nano("49")))
    run_in_transaction(conn, market.subscribe_job(account, "lite", PRODUCTS, ZONE, at_ms=at_ms))
    return account


def _admit(conn: Conn, account: str, request_id: str, stamped_ms: int) -> None:
    """One worker's admission job for a prompt it stamped at ``stamped_ms``."""
    request = FundingRequest(
        request_id=request_id,
        account_id=account,
        key_id="key",
        model="coder",
        now_ms=stamped_ms,
        quotes=[("offer", 1000)],
        input_max=10,
        output_max=10,
    )
    run_in_transaction(conn, partial(reserve_job, req=request, products=PRODUCTS, zone=ZONE))


def test_a_prompt_stamped_just_before_another_workers_window_counts_in_that_window(store: Conn) -> None:
    t = now_ms()
    account = _subscriber(store, t - 60_000)
    for n in range(WINDOW_PROMPTS):  # worker A: the window opens at t + 1 and is spent
        _admit(store, account, f"req_a{n:03d}", t + 1)
    with pytest.raises(RateLimited):  # worker B: stamped 1 ms earlier, admitted after A's
        _admit(store, account, "req_b000", t)
    windows = store.execute("SELECT count(*) FROM allowance_windows WHERE window_name = '5h'").fetchone()[0]
    assert windows == 1
