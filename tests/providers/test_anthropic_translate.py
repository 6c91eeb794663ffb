"""Non-streamed OpenAI chat completions translated to Anthropic messages: content blocks, stop reasons,
usage."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from suanli.pricing import TokenUsage
from suanli.providers.anthropic_translate import (
    anthropic_usage,
    openai_to_anthropic_message,
)
from tests.providers.anthropic_fixtures import completion

STREAM_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "cache_control": {"type": "ephemeral"},
}


# Answers.


def answer(data: dict[str, Any], usage: TokenUsage | None = None) -> dict[str, Any]:
    """The translated message, checked against the SDK's ``Message`` model."""
    message = openai_to_anthropic_message(data, "deepseek-v3.2", usage or TokenUsage(input=20, output=5))
    Message.model_validate(message)
    return message


def test_text_answer() -> None:
    assert answer(completion({"content": "Hello!"})) == {
        "id": "msg_8d2f6a3c-1b7e-4c9a-9e0f-5a4b3c2d1e0f",
        "type": "message",
        "role": "assistant",
        "model": "deepseek-v3.2",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 5,
        },
    }


def test_answer_without_id_gets_a_random_one() -> None:
    first, second = (answer({**completion({"content": "x"}), "id": None})["id"] for _ in range(2))
    assert first.startswith("msg_") and len(first) == 4 + 24 and first != second


def test_reasoning_content_becomes_a_thinking_block_first() -> None:
    data = completion({"content": "4", "reasoning_content": "2+2 is 4."}, model="deepseek-reasoner")
    assert answer(data)["content"] == [
        {"type": "thinking", "thinking": "2+2 is 4.", "signature": ""},
        {"type": "text", "text": "4"},
    ]


def test_tool_calls_become_tool_use_blocks() -> None:
    calls = [
        {
            "index": 0,
            "id": "call_0_6f1e",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"index": 1, "id": "call_1_9a2b", "type": "function", "function": {"name": "ls", "arguments": ""}},
        {"index": 2, "id": "call_2_c3d4", "type": "function", "function": {"name": "ls", "arguments": '{"path": "/tm'}},
        {"index": 3, "id": "call_3_e5f6", "type": "function", "function": {"name": "ls", "arguments": "[1]"}},
    ]
    message = answer(completion({"content": "", "tool_calls": calls}, "tool_calls"))
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "tool_use", "id": "call_0_6f1e", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_1_9a2b", "name": "ls", "input": {}},
        {"type": "tool_use", "id": "call_2_c3d4", "name": "ls", "input": {"_raw": '{"path": "/tm'}},
        {"type": "tool_use", "id": "call_3_e5f6", "name": "ls", "input": {"_raw": "[1]"}},
    ]


def test_tool_calls_finished_with_stop_still_stop_for_tool_use() -> None:
    call = {"id": "call_x", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
    assert answer(completion({"content": None, "tool_calls": [call]}, "stop"))["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("insufficient_system_resource", "end_turn"),  # DeepSeek's own
        (None, "end_turn"),
    ],
)
def test_finish_reasons(finish_reason: str | None, stop_reason: str) -> None:
    message = answer(completion({"content": "x"}, finish_reason))
    assert (message["stop_reason"], message["stop_sequence"]) == (stop_reason, None)


def test_usage_with_cached_and_reasoning_tokens() -> None:
    usage = TokenUsage(input=300, cached_input=1700, output=40, reasoning=60)
    assert anthropic_usage(usage) == {
        "input_tokens": 300,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1700,
        "output_tokens": 100,
    }
    assert answer(completion({"content": "x"}), usage)["usage"] == anthropic_usage(usage)


def test_empty_answer_is_still_a_message() -> None:
    assert answer(completion({"content": ""}, "length"))["content"] == []
    assert answer({"id": "x", "choices": []})["stop_reason"] == "end_turn"
