"""The Anthropic Messages API end to end: the official anthropic SDK over a real socket, an
OpenAI-compatible operator (the simulator) behind it, the same reservation and settlement."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from suanli.money import cny_to_nano
from tests.conftest import Gateway
from tests.providers.anthropic_fixtures import CLAUDE_CODE_REQUEST

MESSAGES = [{"role": "user", "content": "Say something about tokens."}]


def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)


def usage_events(gateway: Gateway, account: str) -> list[dict[str, object]]:
    return list(gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"])


def test_message_is_charged_like_any_call(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    with client(gateway, key) as c:
        raw = c.messages.with_raw_response.create(
            model="deepseek-v3.2",
            max_tokens=30,
            system="Be brief.",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
        message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 30
    [event] = usage_events(gateway, unique)
    assert event["cost_nano"] == cny_to_nano(raw.headers["x-suanli-cost"]) > 0
    assert event["input_tokens"] == message.usage.input_tokens
    assert event["output_tokens"] == message.usage.output_tokens


def test_streamed_message_has_anthropic_events_and_is_charged(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    with client(gateway, key) as c, c.messages.stream(model="glm-5", max_tokens=40, messages=MESSAGES) as stream:  # type: ignore[arg-type]
        types = [event.type for event in stream]
        final = stream.get_final_message()
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_start" in types and "content_block_delta" in types and "message_delta" in types
    assert final.content[0].type == "text" and final.content[0].text
    [event] = usage_events(gateway, unique)
    assert event["stream"] is True and event["outcome"] == "ok"
    assert event["output_tokens"] == final.usage.output_tokens > 0


def test_multi_turn_with_tool_history(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    tools = [
        {
            "name": "get_price",
            "description": "Price of a model",
            "input_schema": {"type": "object", "properties": {"model": {"type": "string"}}, "required": ["model"]},
        }
    ]
    history = [
        {"role": "user", "content": "What does glm-5 cost?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_price", "input": {"model": "glm-5"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "4 CNY per M"}]},
    ]
    with client(gateway, key) as c:
        message = c.messages.create(
            model="deepseek-v3.2",
            max_tokens=20,
            messages=history,
            tools=tools,  # type: ignore[arg-type]
        )
    assert message.content and message.usage.input_tokens > 0


def test_count_tokens(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    with client(gateway, key) as c:
        counted = c.messages.count_tokens(model="glm-5", messages=MESSAGES)  # type: ignore[arg-type]
    assert counted.input_tokens > 5
    assert usage_events(gateway, unique) == []  # counting is free


def test_count_tokens_is_the_count_a_call_reserves_for(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    tools = [{"name": f"tool_{i}", "description": "Reads a file. " * 20, "input_schema": schema} for i in range(5)]
    with client(gateway, key) as c:
        bare = c.messages.count_tokens(model="glm-5", messages=MESSAGES).input_tokens  # type: ignore[arg-type]
        counted = c.messages.count_tokens(model="glm-5", messages=MESSAGES, tools=tools).input_tokens  # type: ignore[arg-type]
        reply = c.messages.with_raw_response.create(model="glm-5", max_tokens=5, messages=MESSAGES, tools=tools)  # type: ignore[arg-type]
    assert counted > bare + 5 * 100  # the tool definitions are in the prompt, as the operator counts them
    [event] = usage_events(gateway, unique)
    # glm-5's offer: ¥4/M input (4,000 nano), ¥18/M output, the default 10 % margin, 5 output tokens.
    margin = (counted * 10 + 99) // 100
    assert event["reserved_nano"] == (counted + margin) * 4_000 + 5 * 18_000
    assert reply.headers["x-suanli-operator"] == "beta"


def test_errors_come_back_in_anthropic_shape(gateway: Gateway, unique: str) -> None:
    with client(gateway, "sk-nope") as c, pytest.raises(anthropic.AuthenticationError) as bad_key:
        c.messages.create(model="glm-5", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
    assert isinstance(bad_key.value.body, dict) and bad_key.value.body["type"] == "error"
    assert bad_key.value.body["error"]["type"] == "authentication_error"
    assert bad_key.value.response.headers["x-should-retry"] == "false"  # else Claude Code retries for minutes
    key = gateway.account(unique, topup_cny="0.000001")
    with client(gateway, key) as c:
        with pytest.raises(anthropic.APIStatusError) as broke:
            c.messages.create(model="glm-5", max_tokens=500, messages=MESSAGES)  # type: ignore[arg-type]
        assert broke.value.status_code == 402
        assert broke.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
        assert broke.value.response.headers["x-should-retry"] == "false"
        with pytest.raises(anthropic.NotFoundError):
            c.messages.create(model="no-such", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(anthropic.BadRequestError) as invalid:
            c.messages.create(model="glm-5", max_tokens=0, messages=MESSAGES)  # type: ignore[arg-type]
        assert invalid.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_tool_use_round_trip(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    tools = [
        {
            "name": "get_price",
            "description": "Price of a model",
            "input_schema": {"type": "object", "properties": {"model": {"type": "string"}}},
        }
    ]
    question = {"role": "user", "content": "What does glm-5 cost?"}
    with client(gateway, key) as c:
        first = c.messages.create(model="glm-5", max_tokens=50, messages=[question], tools=tools)  # type: ignore[list-item, arg-type]
        assert first.stop_reason == "tool_use"
        [call] = [block for block in first.content if block.type == "tool_use"]
        assert call.name == "get_price" and call.input == {"model": "What does glm-5 cost?"}
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4 CNY"}]}
        history = [question, {"role": "assistant", "content": first.content}, result]
        with c.messages.stream(model="glm-5", max_tokens=20, messages=history, tools=tools) as stream:  # type: ignore[arg-type]
            final = stream.get_final_message()
    assert final.stop_reason in ("end_turn", "max_tokens") and final.content[0].type == "text"
    assert len(usage_events(gateway, unique)) == 2


def test_streamed_tool_call(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    tools = [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    with (
        client(gateway, key) as c,
        c.messages.stream(
            model="deepseek-v3.2",
            max_tokens=50,
            messages=MESSAGES,
            tools=tools,  # type: ignore[arg-type]
        ) as stream,
    ):
        final = stream.get_final_message()
    [call] = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use" and call.name == "lookup" and call.input == {"q": MESSAGES[0]["content"]}


def claude_code_stream(gateway: Gateway, key: str, body: dict[str, Any]) -> list[Any]:
    """The events of a request sent as Claude Code sends it: a bearer key, its betas, ``?beta=true``."""
    headers = {
        "authorization": f"Bearer {key}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,mid-conversation-system-2026-04-07",
        "x-app": "cli",
    }
    url = f"{gateway.url}/v1/messages?beta=true"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=20) as response:
        assert response.status_code == 200, response.read()
        data = [orjson.loads(line.removeprefix("data:")) for line in response.iter_lines() if line.startswith("data:")]
    return [STREAM_EVENT.validate_python(event) for event in data if event["type"] != "ping"]  # ping: not in the union


def test_recorded_claude_code_request(gateway: Gateway, unique: str) -> None:
    """Claude Code's first request, sent as it sends it: a bearer key, its betas, a system turn after the user's
    prompt, 32,000 max_tokens (more than the offer's 16,384), settings with no OpenAI counterpart."""
    key = gateway.account(unique, topup_cny="1")
    events = claude_code_stream(gateway, key, CLAUDE_CODE_REQUEST)
    assert [event.type for event in events][:2] == ["message_start", "content_block_start"]
    assert events[-1].type == "message_stop"
    # The system turn rode in the user message, so the simulated model answers the user, here with a tool call.
    [start] = [event for event in events if event.type == "content_block_start"]
    assert start.content_block.type == "tool_use" and start.content_block.name == "Agent"
    [delta] = [event for event in events if event.type == "message_delta"]
    assert delta.delta.stop_reason == "tool_use"
    [event] = usage_events(gateway, unique)
    assert event["outcome"] == "ok" and event["output_tokens"] == delta.usage.output_tokens > 0


def test_claude_code_at_an_anthropic_operator_reads_the_cache_of_the_last_conversation(
    gateway: Gateway, unique: str
) -> None:
    """``coder`` goes to ``gamma``, which speaks Anthropic's protocol and gets Claude Code's body as it came, system
    turn among the messages included, but for the billing line: its suffix changes with every conversation, and
    at the front of the prompt it would leave nothing for the operator's prefix cache to match."""
    key = gateway.account(unique, topup_cny="1")
    rules = " ".join(f"Rule {n} of {unique}: answer briefly and cite the catalog." for n in range(30))
    for suffix in ("1c0", "e1a"):
        billing = f"x-anthropic-billing-header: cc_version=2.1.197.{suffix}; cc_entrypoint=sdk-cli;"
        system = [
            {"type": "text", "text": billing},
            {"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}},
        ]
        events = claude_code_stream(gateway, key, {**CLAUDE_CODE_REQUEST, "model": "coder", "system": system})
        assert events[-1].type == "message_stop"
    later, earlier = usage_events(gateway, unique)
    assert earlier["operator"] == later["operator"] == "gamma"
    assert earlier["cached_input_tokens"] == 0 < int(later["cached_input_tokens"])  # type: ignore[call-overload]


STREAM_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
