"""300 concurrent calls on an allowance, and on a budget, that cover 50: never overshot."""

from __future__ import annotations

import asyncio

import httpx
import openai

from suanli.ledger.sqlite import verify
from suanli.money import cny_to_nano
from tests.conftest import Gateway
from tests.stores import inspect

CALLS = 300
MESSAGES = [{"role": "user", "content": "Count the cost of concurrency."}]


async def _call(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> int | str:
    try:
        await client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=max_tokens)  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.status_code
    return "ok"


async def _storm(gateway: Gateway, key: str, model: str, max_tokens: int) -> list[int | str]:
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60) as client:
        return await asyncio.gather(*(_call(client, model, max_tokens) for _ in range(CALLS)))


def test_an_allowance_of_50_serves_exactly_50_of_300_concurrent_calls(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    httpx.post(
        f"{gateway.url}/v1/subscription", json={"product": "plan-50"}, headers={"Authorization": f"Bearer {key}"}
    ).raise_for_status()
    outcomes = asyncio.run(_storm(gateway, key, "multi", 20))
    assert outcomes.count("ok") == 50 and outcomes.count(429) == CALLS - 50, set(outcomes)
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage", params={"limit": 1000}).json()["data"]
    assert len(events) == 50 and all(e["funding"][0]["source"] == "allowance" for e in events)
    wallet = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["available"] == "0" and wallet["reserved_nano"] == 0  # the ¥1 fee; nothing fell through
    _verify(gateway)


def test_a_budget_for_about_50_calls_is_never_overshot(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="10")
    # One call reserves about 30 prompt tokens at ¥1/M and 40 output tokens at ¥2/M on the cheaper "multi"
    # offer, and about twice that on the dearer one: a ¥0.01 daily budget covers a few dozen.
    budget = gateway.admin(
        "POST", f"/admin/v1/accounts/{unique}/budgets", json={"period": "day", "unit": "cny", "amount": "0.01"}
    )
    assert budget.status_code == 201, budget.text
    outcomes = asyncio.run(_storm(gateway, key, "multi", 40))
    served, refused = outcomes.count("ok"), outcomes.count(429)
    assert served + refused == CALLS and 10 <= served < CALLS, set(outcomes)
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage", params={"limit": 1000}).json()["data"]
    charged = sum(e["cost_nano"] for e in events)
    assert len(events) == served and charged <= cny_to_nano("0.01")
    plans = httpx.get(f"{gateway.url}/v1/plans", headers={"Authorization": f"Bearer {key}"}).json()
    (day,) = plans["budgets"]
    assert cny_to_nano(day["used"]) == charged  # every reservation resolved to what was charged
    _verify(gateway)


def _verify(gateway: Gateway) -> None:
    conn = inspect(gateway.database)
    try:
        verify(conn)
    finally:
        conn.close()
