"""Anthropic Messages requests translated to OpenAI chat requests, and the bad ones refused by name."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from suanli.errors import BadRequest
from suanli.providers.anthropic_translate import (
    anthropic_to_openai_request,
    without_billing_header,
)
from tests.providers.anthropic_fixtures import CLAUDE_CODE_REQUEST

STREAM_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "cache_control": {"type": "ephemeral"},
}


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "deepseek-v3.2", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}], **fields}


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


# Requests.


def test_minimal_request() -> None:
    assert anthropic_to_openai_request(request()) == {
        "model": "deepseek-v3.2",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 256,
    }


def test_system_string_becomes_the_first_message() -> None:
    messages = anthropic_to_openai_request(request(system="Be brief."))["messages"]
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_system_blocks_are_joined_and_cache_control_ignored() -> None:
    system = [text("You are Claude Code."), {**text("Work in /repo."), "cache_control": {"type": "ephemeral"}}]
    messages = anthropic_to_openai_request(request(system=system))["messages"]
    assert messages[0] == {"role": "system", "content": "You are Claude Code.\n\nWork in /repo."}


def test_multi_turn_with_text_blocks() -> None:
    turns = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        user(text("And times 3?"), {**text("Answer in digits."), "cache_control": {"type": "ephemeral"}}),
        assistant(text("12.")),
        user(text("Thanks")),
    ]
    assert anthropic_to_openai_request(request(messages=turns))["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": [text("And times 3?"), text("Answer in digits.")]},
        {"role": "assistant", "content": "12."},
        {"role": "user", "content": "Thanks"},  # a lone text part collapses to a string
    ]


def test_system_turns_among_the_messages() -> None:
    turns = [
        {"role": "system", "content": [text("Mode: plan.")]},
        {"role": "user", "content": "Go."},
        {"role": "system", "content": "Mode: act."},
        {"role": "assistant", "content": "Acting."},
        {"role": "system", "content": [text("Mode: done.")]},
    ]
    assert anthropic_to_openai_request(request(system="Be brief.", messages=turns))["messages"] == [
        {"role": "system", "content": "Be brief.\n\nMode: plan."},  # leading system turns join the system prompt
        {"role": "user", "content": [text("Go."), text("<system-reminder>\nMode: act.\n</system-reminder>")]},
        {"role": "assistant", "content": "Acting."},
        {"role": "user", "content": "<system-reminder>\nMode: done.\n</system-reminder>"},
    ]


def test_system_turn_after_tool_results_and_parts() -> None:
    turns = [
        user(text("Go."), text("Now.")),
        assistant({"type": "tool_use", "id": "t1", "name": "ls", "input": {}}),
        user({"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"}),
        {"role": "system", "content": "Agents: none."},
        {"role": "system", "content": ""},  # an empty one adds nothing
    ]
    messages = anthropic_to_openai_request(request(messages=turns))["messages"]
    assert messages[0] == {"role": "user", "content": [text("Go."), text("Now.")]}
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "a.txt"},
        {"role": "user", "content": "<system-reminder>\nAgents: none.\n</system-reminder>"},
    ]


def test_system_turn_between_tool_calls_and_their_results_waits_for_the_user_message() -> None:
    turns = [
        user(text("Go.")),
        assistant({"type": "tool_use", "id": "t1", "name": "ls", "input": {}}),
        {"role": "system", "content": "Agents: none."},
        user({"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"}, text("Next?")),
    ]
    assert anthropic_to_openai_request(request(messages=turns))["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "a.txt"},  # still right after the call
        {"role": "user", "content": [text("<system-reminder>\nAgents: none.\n</system-reminder>"), text("Next?")]},
    ]


@pytest.mark.parametrize(
    "system",
    [
        [
            text("x-anthropic-billing-header: cc_version=2.1.197.e1a; cc_entrypoint=sdk-cli;"),
            text("You are Claude Code."),
        ],
        "x-anthropic-billing-header: cc_version=2.1.100.7b4; cc_entrypoint=cli; cch=eb6c6;\nYou are Claude Code.",
    ],
)
def test_claude_code_billing_line_is_cut_from_the_system_prompt(system: Any) -> None:
    messages = anthropic_to_openai_request(request(system=system))["messages"]
    assert messages[0] == {"role": "system", "content": "You are Claude Code."}


def test_billing_line_is_cut_from_a_request_passed_through() -> None:
    body = copy.deepcopy(CLAUDE_CODE_REQUEST)
    cleaned = without_billing_header(body)
    assert cleaned["system"] == CLAUDE_CODE_REQUEST["system"][1:] and body == CLAUDE_CODE_REQUEST
    assert {k: v for k, v in cleaned.items() if k != "system"} == {k: v for k, v in body.items() if k != "system"}
    two_lines = "x-anthropic-billing-header: cc_version=2.1.100.7b4; cch=eb6c6;\nYou are Claude Code."
    assert without_billing_header(request(system=two_lines))["system"] == "You are Claude Code."
    block = {**text(two_lines), "cache_control": {"type": "ephemeral"}}
    assert without_billing_header(request(system=[block, 5]))["system"] == [
        {**block, "text": "You are Claude Code."},
        5,
    ]
    assert without_billing_header(request()) == request()


def test_recorded_claude_code_request() -> None:
    translated = anthropic_to_openai_request(CLAUDE_CODE_REQUEST)
    system, first, *rest = translated["messages"]
    assert system == {
        "role": "system",
        "content": CLAUDE_CODE_REQUEST["system"][1]["text"] + "\n\n" + CLAUDE_CODE_REQUEST["system"][2]["text"],
    }
    # The agent list Claude Code sends as a system turn rides in the user turn, which stays last.
    assert rest == [] and first["role"] == "user" and len(first["content"]) == 3
    assert first["content"][2]["text"].startswith("<system-reminder>\nAvailable agent types")
    assert [tool["function"]["name"] for tool in translated["tools"]] == ["Agent", "Read"]
    assert translated["user"] == CLAUDE_CODE_REQUEST["metadata"]["user_id"]
    assert translated["max_tokens"] == 32000 and translated["stream"] is True
    # thinking, context_management, output_config and cache_control have no OpenAI counterpart.
    assert set(translated) == {"model", "messages", "max_tokens", "tools", "stream", "stream_options", "user"}


def test_images_base64_and_url() -> None:
    turn = user(
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        text("Compare these."),
    )
    assert anthropic_to_openai_request(request(messages=[turn]))["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                text("Compare these."),
            ],
        }
    ]


def test_tool_use_history_and_tool_results() -> None:
    turns = [
        user(text("Weather in Paris and Lyon? Then list /tmp.")),
        assistant(
            {"type": "thinking", "thinking": "Two cities.", "signature": "EqQBCkYIAxgCIkB"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
            text("Checking both."),
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Lyon"}},
            {"type": "tool_use", "id": "toolu_01C", "name": "ls", "input": {}},
        ),
        user(
            text("Also: be quick."),
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [text("21°C"), text("windy")]},
            {"type": "tool_result", "tool_use_id": "toolu_01C", "content": "permission denied", "is_error": True},
        ),
    ]
    assert anthropic_to_openai_request(request(messages=turns))["messages"] == [
        {"role": "user", "content": "Weather in Paris and Lyon? Then list /tmp."},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_01B",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                },
                {"id": "toolu_01C", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C, sunny"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "21°C\n\nwindy"},
        {"role": "tool", "tool_call_id": "toolu_01C", "content": "Error: permission denied"},
        {"role": "user", "content": "Also: be quick."},
    ]


def test_tool_only_turns() -> None:
    turns = [
        user(text("Go.")),
        assistant({"type": "tool_use", "id": "call_1", "name": "ls", "input": {"path": "."}}),
        user({"type": "tool_result", "tool_use_id": "call_1"}),
    ]
    messages = anthropic_to_openai_request(request(messages=turns))["messages"]
    assert messages[1]["content"] is None  # OpenAI's null content beside tool calls
    assert messages[2:] == [{"role": "tool", "tool_call_id": "call_1", "content": ""}]


def test_thinking_only_assistant_turn_keeps_empty_text() -> None:
    turns = [user(text("Hm?")), assistant({"type": "thinking", "thinking": "...", "signature": "x"})]
    assert anthropic_to_openai_request(request(messages=turns))["messages"][1] == {"role": "assistant", "content": ""}


def test_image_returned_by_a_tool_travels_in_the_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}}
    turn = user({"type": "tool_result", "tool_use_id": "toolu_9", "content": [text("screenshot.png"), image]})
    assert anthropic_to_openai_request(request(messages=[turn]))["messages"] == [
        {"role": "tool", "tool_call_id": "toolu_9", "content": "screenshot.png"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}"}}],
        },
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
        ({"type": "none"}, "none"),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto"),
    ],
)
def test_tools_and_every_tool_choice(tool_choice: dict[str, Any], expected: Any) -> None:
    translated = anthropic_to_openai_request(
        request(tools=[WEATHER_TOOL, {"name": "ls", "input_schema": {"type": "object"}}], tool_choice=tool_choice)
    )
    assert translated["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        },
        {"type": "function", "function": {"name": "ls", "parameters": {"type": "object"}}},
    ]
    assert translated["tool_choice"] == expected


def test_tools_anthropic_runs_on_its_servers_are_left_out() -> None:
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    translated = anthropic_to_openai_request(request(tools=[web_search, WEATHER_TOOL], tool_choice={"type": "auto"}))
    assert [tool["function"]["name"] for tool in translated["tools"]] == ["get_weather"]
    only_server = anthropic_to_openai_request(request(tools=[web_search], tool_choice={"type": "auto"}))
    assert "tools" not in only_server and "tool_choice" not in only_server


def test_tool_choice_without_tools_is_left_out() -> None:
    assert "tool_choice" not in anthropic_to_openai_request(request(tools=[], tool_choice={"type": "any"}))


def test_sampling_stop_sequences_and_metadata() -> None:
    translated = anthropic_to_openai_request(
        request(
            stop_sequences=["\n\nHuman:", "END"],
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            metadata={"user_id": "user_42"},
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    )
    assert translated == {
        **anthropic_to_openai_request(request()),
        "stop": ["\n\nHuman:", "END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user_42",
    }


def test_stream_adds_include_usage() -> None:
    streamed = anthropic_to_openai_request(request(stream=True))
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    plain = anthropic_to_openai_request(request(stream=False))
    assert plain["stream"] is False and "stream_options" not in plain


def _without(field: str) -> dict[str, Any]:
    body = request()
    del body[field]
    return body


BAD_REQUESTS: list[tuple[dict[str, Any], str, str]] = [
    (_without("model"), "missing_field", "model"),
    (request(model=""), "invalid_field", "model"),
    (request(model=7), "invalid_field", "model"),
    (_without("max_tokens"), "missing_field", "max_tokens"),
    (request(max_tokens=0), "invalid_field", "max_tokens"),
    (request(max_tokens=True), "invalid_field", "max_tokens"),
    (request(max_tokens=1.5), "invalid_field", "max_tokens"),
    (_without("messages"), "missing_field", "messages"),
    (request(messages=[]), "invalid_field", "messages"),
    (request(messages="Hi"), "invalid_field", "messages"),
    (request(messages=["Hi"]), "invalid_field", "messages[0]"),
    (request(messages=[{"role": "tool", "content": "x"}]), "invalid_field", "messages[0].role"),
    (
        request(messages=[{"role": "system", "content": [{"type": "image"}]}]),
        "invalid_field",
        "messages[0].content[0].type",
    ),
    (request(messages=[{"content": "x"}]), "missing_field", "messages[0].role"),
    (request(messages=[{"role": "user"}]), "missing_field", "messages[0].content"),
    (request(messages=[{"role": "user", "content": 3}]), "invalid_field", "messages[0].content"),
    (request(messages=[user(text("a"), {"type": "document"})]), "invalid_field", "messages[0].content[1].type"),
    (request(messages=[user({"text": "a"})]), "missing_field", "messages[0].content[0].type"),
    (request(messages=[user({"type": "text"})]), "missing_field", "messages[0].content[0].text"),
    (request(messages=[assistant({"type": "image", "source": {}})]), "invalid_field", "messages[0].content[0].type"),
    (request(messages=[user({"type": "image"})]), "missing_field", "messages[0].content[0].source"),
    (
        request(messages=[user({"type": "image", "source": {"type": "file", "file_id": "f"}})]),
        "invalid_field",
        "messages[0].content[0].source.type",
    ),
    (
        request(messages=[user({"type": "image", "source": {"type": "base64", "data": PNG_BASE64}})]),
        "missing_field",
        "messages[0].content[0].source.media_type",
    ),
    (
        request(messages=[user({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]})]),
        "invalid_field",
        "messages[0].content[0].content[0].type",
    ),
    (
        request(messages=[user({"type": "tool_result", "content": "x"})]),
        "missing_field",
        "messages[0].content[0].tool_use_id",
    ),
    (
        request(messages=[assistant({"type": "tool_use", "id": "t", "name": "ls"})]),
        "missing_field",
        "messages[0].content[0].input",
    ),
    (
        request(messages=[assistant({"type": "tool_use", "id": "t", "name": "ls", "input": "x"})]),
        "invalid_field",
        "messages[0].content[0].input",
    ),
    (request(system=[{"type": "image"}]), "invalid_field", "system[0].type"),
    (request(system=5), "invalid_field", "system"),
    (request(tools=[{"name": "ls"}]), "missing_field", "tools[0].input_schema"),
    (request(tools=[{"type": "bash_20250124", "name": "bash"}]), "invalid_field", "tools[0].type"),
    (request(tools=[WEATHER_TOOL], tool_choice={"type": "tool"}), "missing_field", "tool_choice.name"),
    (request(tools=[WEATHER_TOOL], tool_choice={"type": "always"}), "invalid_field", "tool_choice.type"),
    (request(stop_sequences="END"), "invalid_field", "stop_sequences"),
    (request(stop_sequences=["END", 1]), "invalid_field", "stop_sequences[1]"),
    (request(temperature="hot"), "invalid_field", "temperature"),
    (request(stream="yes"), "invalid_field", "stream"),
    (request(metadata={"user_id": 42}), "invalid_field", "metadata.user_id"),
]


@pytest.mark.parametrize(("body", "code", "param"), BAD_REQUESTS, ids=[param for _, _, param in BAD_REQUESTS])
def test_bad_requests_name_the_field(body: dict[str, Any], code: str, param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        anthropic_to_openai_request(body)
    assert (caught.value.code, caught.value.param) == (code, param)
    assert caught.value.status == 400 and caught.value.message


def test_the_request_is_not_modified() -> None:
    body = request(system=[text("s")], tools=[WEATHER_TOOL], messages=[user(text("a"), text("b"))])
    before = copy.deepcopy(body)
    anthropic_to_openai_request(body)
    assert body == before
