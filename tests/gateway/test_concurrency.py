"""Never spend what isn't there: 300 concurrent calls on funding for about 50."""

from __future__ import annotations

import asyncio

import openai

from suanli.ledger.sqlite import verify
from tests.conftest import Gateway
from tests.stores import inspect

CALLS = 300
MAX_TOKENS = 50
MESSAGES = [{"role": "user", "content": "Count the cost of concurrency."}]


async def _call(client: openai.AsyncOpenAI, stream: bool) -> int | str:
    try:
        if stream:
            chunks = await client.chat.completions.create(
                model="deepseek-v3.2",
                messages=MESSAGES,
                max_tokens=MAX_TOKENS,
                stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
            async for _ in chunks:
                pass
        else:
            await client.chat.completions.create(model="deepseek-v3.2", messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.status_code
    return "ok"


async def _storm(gateway: Gateway, key: str) -> list[int | str]:
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60) as client:
        return await asyncio.gather(*(_call(client, i % 2 == 0) for i in range(CALLS)))


def test_concurrent_calls_never_overspend(gateway: Gateway, unique: str) -> None:
    # One reservation: about 25 prompt tokens (+10%) at ¥2/M and 50 output tokens at ¥3/M, ~0.0002 CNY.
    # Fund about 50 of them.
    key = gateway.account(unique, topup_cny="0.0105")
    funded = 10_500_000
    outcomes = asyncio.run(_storm(gateway, key))
    served = outcomes.count("ok")
    refused = outcomes.count(402)
    assert served + refused == CALLS, set(outcomes)
    assert 40 <= served < CALLS and refused > 0

    view = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage", params={"limit": 1000}).json()["data"]
    charged = sum(e["cost_nano"] for e in events)
    assert view["reserved_nano"] == 0
    assert view["balance_nano"] == funded - charged >= 0
    # Every served call has exactly one usage event with a charge; refused calls have none.
    assert len(events) == served and all(e["outcome"] == "ok" and e["cost_nano"] > 0 for e in events)
    conn = inspect(gateway.database)
    try:
        verify(conn)
        posts = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM transfers WHERE kind = 'post' AND debit_account = ?",
            (f"wallet:{view_id(gateway, unique)}",),
        ).fetchone()
    finally:
        conn.close()
    assert posts == (served, charged)


def view_id(gateway: Gateway, name: str) -> str:
    return str(gateway.admin("GET", f"/admin/v1/accounts/{name}").json()["account"]["id"])
