"""Enterprise contracts: graduated tiers to the nano, and postpaid calls through the gateway."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from suanli.economy.contracts import Tier, graduated, rebate_nano
from suanli.ledger.sqlite import verify
from suanli.money import cny_to_nano
from tests.conftest import Gateway
from tests.stores import inspect

CNY = 10**9
TIERS = (Tier(0, 100), Tier(10_000 * CNY, 95), Tier(50_000 * CNY, 90))


def test_graduated_tiers_charge_each_part_at_its_own_percent() -> None:
    assert graduated(TIERS, 10_000 * CNY) == 10_000 * CNY
    assert graduated(TIERS, 10_000 * CNY + 100) == 10_000 * CNY + 95
    assert graduated(TIERS, 60_000 * CNY) == 10_000 * CNY + 40_000 * CNY * 95 // 100 + 10_000 * CNY * 90 // 100
    # A call crossing the first threshold: the part below at 100%, the part above at 95%.
    assert rebate_nano(TIERS, 9_999 * CNY, 2 * CNY) == CNY * 5 // 100


@given(st.integers(0, 100_000 * CNY), st.integers(0, 1_000 * CNY), st.integers(0, 1_000 * CNY))
def test_rebates_add_up_to_the_months_discount_however_the_month_is_split(before: int, a: int, b: int) -> None:
    together = rebate_nano(TIERS, before, a + b)
    apart = rebate_nano(TIERS, before, a) + rebate_nano(TIERS, before + a, b)
    assert abs(together - apart) <= 1  # rounding down once per call, never more than a nano apart
    assert 0 <= rebate_nano(TIERS, before, a) <= a // 10 + 1  # never more than the deepest tier gives


def test_a_contract_account_spends_on_credit_up_to_its_limit(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny=None)
    contract = gateway.admin(
        "PUT",
        f"/admin/v1/accounts/{unique}/contract",
        json={"credit_limit": "0.001", "tiers": [{"above": "0", "percent": 100}, {"above": "0.0002", "percent": 50}]},
    )
    assert contract.status_code == 200, contract.text
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "deepseek-v3.2", "messages": [{"role": "user", "content": "On credit."}], "max_tokens": 20}
    statuses = [
        httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers).status_code for _ in range(30)
    ]
    assert statuses[0] == 200 and 402 in statuses  # it owes up to the limit, then is refused
    view = httpx.get(f"{gateway.url}/v1/plans", headers=headers).json()["contract"]
    owed, volume = cny_to_nano(view["owed"]), cny_to_nano(view["month_volume"])
    assert 0 < owed <= cny_to_nano("0.001")
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage", params={"limit": 100}).json()["data"]
    assert sum(e["cost_nano"] for e in events) == volume  # the month's volume is the list price of every call
    rebates = sum(leg["rebate_nano"] for e in events for leg in e["funding"] if leg["source"] == "contract")
    assert owed == volume - rebates > 0 and rebates > 0  # above ¥0.0002 the tier halves the price
    assert owed == cny_to_nano(view["month_charged"])
    refused = gateway.admin(
        "PUT",
        f"/admin/v1/accounts/{unique}/contract",
        json={"credit_limit": "0", "tiers": [{"above": "0", "percent": 100}]},
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "credit_limit_below_debt"
    conn = inspect(gateway.database)
    try:
        verify(conn)
    finally:
        conn.close()


def test_contracts_are_for_enterprise_accounts(gateway: Gateway, unique: str) -> None:
    gateway.account(unique, "household")
    refused = gateway.admin(
        "PUT",
        f"/admin/v1/accounts/{unique}/contract",
        json={"credit_limit": "10", "tiers": [{"above": "0", "percent": 100}]},
    )
    assert refused.status_code == 403
    bad = gateway.admin(
        "PUT",
        f"/admin/v1/accounts/{unique}/contract",
        json={"credit_limit": "10", "tiers": [{"above": "5", "percent": 100}]},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tiers"
