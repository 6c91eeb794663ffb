"""The gateway end to end: the official openai SDK over a real socket, the simulator behind it."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from suanli.ledger.sqlite import verify
from suanli.money import cny_to_nano
from tests.conftest import Gateway
from tests.stores import inspect

MESSAGES = [{"role": "user", "content": "Say something about computing power."}]


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20)


def test_non_streaming_call_is_charged_from_upstream_usage(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="deepseek-v3.2",
        messages=MESSAGES,
        max_tokens=20,  # type: ignore[arg-type]
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    usage = reply.usage
    assert usage is not None and usage.completion_tokens <= 20
    # Prices of alpha/deepseek-v3.2: ¥2 input, ¥0.2 cached input, ¥3 output per million tokens.
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    expected = (usage.prompt_tokens - (cached or 0)) * 2000 + (cached or 0) * 200 + usage.completion_tokens * 3000
    cost = (usage.model_extra or {})["cost"]
    assert cny_to_nano(cost) == expected
    assert raw.headers["x-suanli-operator"] == "alpha"
    assert raw.headers["x-request-id"].startswith("req_")
    assert cny_to_nano(raw.headers["x-suanli-cost"]) == expected
    assert cny_to_nano(raw.headers["x-suanli-balance"]) == cny_to_nano("1") - expected
    assert (reply.model_extra or {})["provider"] == "alpha"


def test_streaming_call_relays_chunks_and_reports_cost(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    stream = client(gateway, key).chat.completions.create(
        model="glm-5",
        messages=MESSAGES,
        max_tokens=30,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = chunks[-1]
    assert text and final.choices == [] and final.usage is not None
    cost = cny_to_nano((final.usage.model_extra or {})["cost"])
    assert cost == final.usage.prompt_tokens * 4000 + final.usage.completion_tokens * 18000
    usage = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert len(usage) == 1 and usage[0]["cost_nano"] == cost and usage[0]["stream"] is True
    assert usage[0]["estimated"] is False and usage[0]["outcome"] == "ok"


def test_stream_without_include_usage_hides_usage_but_still_charges(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    chunks = list(
        client(gateway, key).chat.completions.create(
            model="deepseek-v3.2",
            messages=MESSAGES,
            max_tokens=10,
            stream=True,  # type: ignore[arg-type]
        )
    )
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    usage = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert usage[0]["cost_nano"] > 0 and usage[0]["estimated"] is False


def test_models_lists_what_the_key_may_use(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    names = {m.id for m in client(gateway, key).models.list()}
    assert {"deepseek-v3.2", "glm-5"} <= names
    assert "household-only" not in names  # an enterprise account does not see household products


def test_ledger_reconciles_with_usage_events(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    c = client(gateway, key)
    for stream in (False, True):
        for _ in range(3):
            result = c.chat.completions.create(model="deepseek-v3.2", messages=MESSAGES, max_tokens=8, stream=stream)  # type: ignore[call-overload]
            if stream:
                list(result)
    view = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    spent = sum(e["cost_nano"] for e in events)
    assert len(events) == 6
    assert view["wallet"]["balance_nano"] == cny_to_nano("1") - spent
    assert view["wallet"]["reserved_nano"] == 0
    conn = inspect(gateway.database)
    try:
        verify(conn)
    finally:
        conn.close()


def test_cost_is_a_decimal_string(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    body = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "glm-5", "messages": MESSAGES, "max_tokens": 5},
    ).json()
    assert isinstance(body["usage"]["cost"], str) and Decimal(body["usage"]["cost"]) > 0


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_credentials_never_reach_the_client(gateway: Gateway, unique: str, stream: bool) -> None:
    key = gateway.account(unique)
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "deepseek-v3.2", "messages": MESSAGES, "stream": stream},
    )
    assert "sk-upstream-alpha-secret" not in response.text
    assert "sk-upstream-alpha-secret" not in str(response.headers)


def test_openai_tool_calls_round_trip(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_price",
                "parameters": {"type": "object", "properties": {"model": {"type": "string"}}},
            },
        }
    ]
    question = {"role": "user", "content": "What does glm-5 cost?"}
    c = client(gateway, key)
    first = c.chat.completions.create(model="deepseek-v3.2", messages=[question], tools=tools)  # type: ignore[list-item, arg-type]
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_price"  # type: ignore[union-attr]
    history = [
        question,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "4 CNY per million tokens"},
    ]
    chunks = list(c.chat.completions.create(model="deepseek-v3.2", messages=history, tools=tools, stream=True))  # type: ignore[arg-type]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    c.close()
