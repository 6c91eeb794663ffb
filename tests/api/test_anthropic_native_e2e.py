"""Anthropic-protocol operators: the official anthropic SDK through the gateway to an operator that speaks
the Messages API natively (passed through), next to an OpenAI-protocol operator of the same model
(translated), on the one reservation and settlement path.

In the test catalog, ``coder`` is offered by ``gamma`` (Anthropic protocol only, the cheaper) and by
``alpha`` (OpenAI protocol); ``anthropic-only`` by gamma alone; ``dual`` by ``delta``, which speaks both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Gateway, Simulator

GAMMA_PRICES = {"input": 1000, "cached_input": 100, "cache_write": 1250, "output": 5000}  # nano-CNY per token
QUESTION = [{"role": "user", "content": "Say something about tokens."}]
# A system prompt long enough to fill several of the simulator's 64-token cache blocks.
LONG_SYSTEM = " ".join(f"Rule {n}: answer briefly, cite the catalog, and never guess a price." for n in range(30))


def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)


def events_of(gateway: Gateway, account: str) -> list[dict[str, Any]]:
    return list(gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"])


def gamma_cost(event: dict[str, Any]) -> int:
    return (
        event["input_tokens"] * GAMMA_PRICES["input"]
        + event["cached_input_tokens"] * GAMMA_PRICES["cached_input"]
        + event["cache_write_tokens"] * GAMMA_PRICES["cache_write"]
        + event["output_tokens"] * GAMMA_PRICES["output"]
    )


@pytest.fixture
def gamma(simulator: Simulator) -> Iterator[Simulator]:
    yield simulator
    simulator.reset("gamma")


def test_a_native_operator_gets_the_message_as_sent_and_its_answer_comes_back_with_the_cost(
    gateway: Gateway, unique: str
) -> None:
    key = gateway.account(unique)
    with client(gateway, key) as c:
        raw = c.messages.with_raw_response.create(model="coder", max_tokens=60, messages=QUESTION)  # type: ignore[arg-type]
    message = raw.parse()
    assert raw.headers["x-suanli-operator"] == "gamma"
    assert message.type == "message" and message.model == "coder" and message.content[0].type == "text"
    (event,) = events_of(gateway, unique)
    assert event["operator"] == "gamma" and event["outcome"] == "ok" and not event["estimated"]
    assert (event["input_tokens"], event["output_tokens"]) == (message.usage.input_tokens, message.usage.output_tokens)
    assert event["cost_nano"] == gamma_cost(event) > 0
    assert message.usage.model_dump()["cost"] == event["cost"]


def test_cache_writes_and_reads_are_priced_in_their_own_classes_once(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    system = [{"type": "text", "text": LONG_SYSTEM + unique, "cache_control": {"type": "ephemeral"}}]
    with client(gateway, key) as c:
        first = c.messages.create(model="coder", max_tokens=20, system=system, messages=QUESTION)  # type: ignore[arg-type]
        second = c.messages.create(model="coder", max_tokens=20, system=system, messages=QUESTION)  # type: ignore[arg-type]
    assert first.usage.cache_creation_input_tokens and not first.usage.cache_read_input_tokens
    # The simulator reads whole 64-token blocks back, as DeepSeek does; the tail of the prefix is written again.
    assert second.usage.cache_read_input_tokens
    assert (second.usage.cache_creation_input_tokens or 0) < first.usage.cache_creation_input_tokens
    later, earlier = events_of(gateway, unique)
    for event, message in ((earlier, first), (later, second)):
        assert event["input_tokens"] == message.usage.input_tokens  # Anthropic's input excludes the cache
        assert event["cache_write_tokens"] == (message.usage.cache_creation_input_tokens or 0)
        assert event["cached_input_tokens"] == (message.usage.cache_read_input_tokens or 0)
        assert event["cost_nano"] == gamma_cost(event)
    # The same prompt, counted once in either call: written the first time, read the second.
    total = earlier["input_tokens"] + earlier["cache_write_tokens"] + earlier["cached_input_tokens"]
    assert total == later["input_tokens"] + later["cache_write_tokens"] + later["cached_input_tokens"]
    assert later["cost_nano"] < earlier["cost_nano"]


def test_a_native_stream_is_relayed_and_settled_before_message_stop(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    with (
        client(gateway, key) as c,
        c.messages.stream(model="coder", max_tokens=40, messages=QUESTION) as stream,  # type: ignore[arg-type]
    ):
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    assert final.model == "coder" and final.content[0].type == "text" and final.content[0].text
    (event,) = events_of(gateway, unique)  # durable before message_stop reached the client
    assert event["operator"] == "gamma" and event["outcome"] == "ok" and event["stream"]
    assert event["output_tokens"] == final.usage.output_tokens and event["cost_nano"] == gamma_cost(event)


def test_a_native_tool_use_round_trip(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    tools = [
        {
            "name": "get_price",
            "description": "Price of a model",
            "input_schema": {"type": "object", "properties": {"model": {"type": "string"}}},
        }
    ]
    question = {"role": "user", "content": "What does glm-5 cost? Use the tool."}
    with client(gateway, key) as c:
        first = c.messages.create(model="coder", max_tokens=60, messages=[question], tools=tools)  # type: ignore[list-item, arg-type]
        (use,) = [block for block in first.content if block.type == "tool_use"]
        answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "¥4/Mtok"}]}
        history = [question, {"role": "assistant", "content": first.content}, answer]
        second = c.messages.create(model="coder", max_tokens=30, messages=history, tools=tools)  # type: ignore[arg-type]
    assert first.stop_reason == "tool_use" and second.content[0].type == "text"
    assert [e["operator"] for e in events_of(gateway, unique)] == ["gamma", "gamma"]


def test_openai_clients_are_never_sent_to_an_anthropic_only_operator(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(model="coder", messages=QUESTION)  # type: ignore[arg-type]
        assert raw.headers["x-suanli-operator"] == "alpha"
        with pytest.raises(openai.BadRequestError) as refused:
            c.chat.completions.create(model="anthropic-only", messages=QUESTION)  # type: ignore[arg-type]
    assert refused.value.code == "wrong_protocol" and "/v1/messages" in refused.value.message
    assert [e["operator"] for e in events_of(gateway, unique)] == ["alpha"]


def test_provider_preferences_send_an_anthropic_client_to_the_translated_operator(
    gateway: Gateway, unique: str
) -> None:
    key = gateway.account(unique)
    with client(gateway, key) as c:
        raw = c.messages.with_raw_response.create(
            model="coder",
            max_tokens=30,
            messages=QUESTION,  # type: ignore[arg-type]
            extra_body={"provider": {"order": ["alpha"]}},
        )
    assert raw.headers["x-suanli-operator"] == "alpha" and raw.parse().content[0].type == "text"


def test_a_failing_native_operator_fails_over_to_the_translated_one(
    gateway: Gateway, gamma: Simulator, unique: str
) -> None:
    gamma.set("gamma", error_rate_percent=100, error_status=529)
    key = gateway.account(unique)
    with client(gateway, key) as c:
        raw = c.messages.with_raw_response.create(model="coder", max_tokens=30, messages=QUESTION)  # type: ignore[arg-type]
    assert raw.headers["x-suanli-operator"] == "alpha" and raw.headers["x-suanli-attempts"] == "2"
    (event,) = events_of(gateway, unique)
    assert event["operator"] == "alpha" and event["outcome"] == "ok"


def test_a_native_stream_cut_short_is_charged_for_what_was_delivered(
    gateway: Gateway, gamma: Simulator, unique: str
) -> None:
    gamma.set("gamma", drop_after_chunks=3)
    key = gateway.account(unique)
    with (
        client(gateway, key) as c,
        pytest.raises(anthropic.APIError),
        c.messages.stream(model="anthropic-only", max_tokens=200, messages=QUESTION) as stream,  # type: ignore[arg-type]
    ):
        for _ in stream:
            pass
    (event,) = events_of(gateway, unique)
    assert event["outcome"] == "cut_short" and event["estimated"]
    assert event["input_tokens"] > 0 and 0 < event["output_tokens"] < 200  # input as reported, output as delivered
    assert event["cost_nano"] == event["input_tokens"] * 1000 + event["output_tokens"] * 5000


def test_an_operator_speaking_both_protocols_serves_each_client_in_its_own(
    gateway: Gateway, simulator: Simulator, unique: str
) -> None:
    key = gateway.account(unique)
    system = [{"type": "text", "text": LONG_SYSTEM + unique, "cache_control": {"type": "ephemeral"}}]
    with client(gateway, key) as c:
        native = c.messages.create(model="dual", max_tokens=20, system=system, messages=QUESTION)  # type: ignore[arg-type]
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as c:
        chat = c.chat.completions.create(model="dual", messages=QUESTION, max_tokens=20)  # type: ignore[arg-type]
    assert native.usage.cache_creation_input_tokens  # only the Messages endpoint reports cache writes
    assert chat.choices[0].message.content
    stats = httpx.get(f"{simulator.url}/_sim/operators/delta/stats").json()
    assert stats["requests"] >= 2
    assert [e["operator"] for e in events_of(gateway, unique)] == ["delta", "delta"]
