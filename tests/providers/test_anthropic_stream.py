# The fixtures keep one recorded request or chunk per line, as on the wire; longer lines are clearer.
# ruff: noqa: E501
"""OpenAI chat streams, recorded as DeepSeek, OpenAI and Zhipu send them, turned into Anthropic stream
events; and the official SDK reading what comes out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anthropic
import httpx2  # the anthropic SDK's own HTTP client, for its in-process MockTransport
import orjson
from anthropic.types import ErrorResponse, MessageParam, RawMessageStreamEvent, ToolParam
from pydantic import TypeAdapter

from suanli.metering.usage import usage_from_openai
from suanli.pricing import TokenUsage
from suanli.providers.anthropic_stream import AnthropicStreamTranslator
from suanli.providers.anthropic_translate import (
    anthropic_to_openai_request,
    openai_to_anthropic_message,
)
from tests.providers.anthropic_fixtures import completion, recorded_stream

STREAM_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "cache_control": {"type": "ephemeral"},
}


# Streams as the operators send them, one SSE event per chunk (tests/providers/recorded/*.sse; the closing
# `data: [DONE]` is left out: the translator is given parsed chunks). Zhipu repeats the role in every delta and
# sends a tool call whole, in one chunk.
DEEPSEEK_CHAT_CHUNKS = recorded_stream("deepseek_chat")
DEEPSEEK_REASONER_CHUNKS = recorded_stream("deepseek_reasoner")
OPENAI_TOOL_CHUNKS = recorded_stream("openai_parallel_tools")
ZHIPU_CHUNKS = recorded_stream("zhipu_text_then_tool")


def usage_of(chunks: Iterable[Mapping[str, Any]]) -> TokenUsage:
    """The usage the gateway settles on: the one chunk that carries it."""
    [usage] = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    return usage_from_openai(usage)


def translate(chunks: Iterable[Mapping[str, Any]], input_tokens: int = 11) -> list[bytes]:
    chunks = list(chunks)
    translator = AnthropicStreamTranslator("deepseek-v3.2", "msg_req_42", input_tokens)
    events = [translator.start()]
    for chunk in chunks:
        events.extend(translator.feed(chunk))
    return [*events, *translator.finish(usage_of(chunks))]


def decoded(events: Iterable[bytes]) -> list[dict[str, Any]]:
    """Each event's data, after checking its SSE framing and its shape against the SDK's models."""
    out: list[dict[str, Any]] = []
    for event in events:
        head, data_line, tail = event.split(b"\n", 2)
        data = orjson.loads(data_line.removeprefix(b"data: "))
        assert head == b"event: " + data["type"].encode() and data_line.startswith(b"data: ") and tail == b"\n"
        STREAM_EVENT.validate_python(data)
        out.append(data)
    return out


def outline(events: Iterable[bytes]) -> list[str]:
    """Each event in a few words: its type, block index and block or delta type."""
    words: list[str] = []
    for data in decoded(events):
        kind = data["type"]
        detail = data.get("content_block", data.get("delta", {})).get("type", "")
        if kind == "message_delta":
            detail = data["delta"]["stop_reason"]
        words.append(" ".join(str(w) for w in (kind, data.get("index", ""), detail) if w != ""))
    return words


def deltas(events: Iterable[bytes], index: int, field: str) -> str:
    return "".join(
        d["delta"][field] for d in decoded(events) if d["type"] == "content_block_delta" and d["index"] == index
    )


def test_deepseek_chat_text_stream() -> None:
    events = translate(DEEPSEEK_CHAT_CHUNKS)
    assert outline(events) == [
        "message_start",
        "content_block_start 0 text",
        *["content_block_delta 0 text_delta"] * 7,
        "content_block_stop 0",
        "message_delta end_turn",
        "message_stop",
    ]
    assert deltas(events, 0, "text") == "Hello! How can I help?"
    first, *_, message_delta, message_stop = decoded(events)
    assert first == {
        "type": "message_start",
        "message": {
            "id": "msg_req_42",
            "type": "message",
            "role": "assistant",
            "model": "deepseek-v3.2",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 11,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        },
    }
    assert message_delta == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 11,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 7,
        },
    }
    assert message_stop == {"type": "message_stop"}


def test_deepseek_reasoner_stream_thinks_then_answers() -> None:
    events = translate(DEEPSEEK_REASONER_CHUNKS, input_tokens=17)
    assert outline(events) == [
        "message_start",
        "content_block_start 0 thinking",
        *["content_block_delta 0 thinking_delta"] * 3,
        "content_block_stop 0",
        "content_block_start 1 text",
        *["content_block_delta 1 text_delta"] * 2,
        "content_block_stop 1",
        "message_delta end_turn",
        "message_stop",
    ]
    assert deltas(events, 0, "thinking") == "Okay, the user asks for 9.11 vs 9.8."
    assert deltas(events, 1, "text") == "9.8 is greater."
    assert decoded(events)[-2]["usage"]["output_tokens"] == 24  # the thinking is output too


def test_openai_parallel_tool_call_stream() -> None:
    events = translate(OPENAI_TOOL_CHUNKS, input_tokens=81)
    assert outline(events) == [
        "message_start",
        "content_block_start 0 tool_use",
        *["content_block_delta 0 input_json_delta"] * 3,
        "content_block_stop 0",
        "content_block_start 1 tool_use",
        *["content_block_delta 1 input_json_delta"] * 3,
        "content_block_stop 1",
        "message_delta tool_use",
        "message_stop",
    ]
    starts = [d["content_block"] for d in decoded(events) if d["type"] == "content_block_start"]
    assert starts == [
        {"type": "tool_use", "id": "call_3GjWmR9xN2kLpQ8vT1sY5bHd", "name": "get_weather", "input": {}},
        {"type": "tool_use", "id": "call_8TqZcV4nB7mXwE2rK6yU0aLs", "name": "get_weather", "input": {}},
    ]
    assert orjson.loads(deltas(events, 0, "partial_json")) == {"city": "Paris"}
    assert orjson.loads(deltas(events, 1, "partial_json")) == {"city": "Tokyo"}


def test_zhipu_text_then_whole_tool_call() -> None:
    events = translate(ZHIPU_CHUNKS, input_tokens=140)
    assert outline(events) == [
        "message_start",
        "content_block_start 0 text",
        "content_block_delta 0 text_delta",
        "content_block_stop 0",
        "content_block_start 1 tool_use",
        "content_block_delta 1 input_json_delta",
        "content_block_stop 1",
        "message_delta tool_use",
        "message_stop",
    ]
    assert orjson.loads(deltas(events, 1, "partial_json")) == {"city": "北京"}
    assert decoded(events)[-2]["usage"] == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 128,
        "output_tokens": 23,
    }


def tool_delta(call: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}


def test_tool_calls_identified_by_id_when_index_is_reused_or_missing() -> None:
    """Some servers give every call of a batch index 0, or leave the index out; a new id is a new call."""
    chunks = [
        tool_delta({"index": 0, "id": "call_a", "function": {"name": "ls", "arguments": '{"p":'}}),
        tool_delta({"index": 0, "function": {"arguments": '"a"}'}}),
        tool_delta({"index": 0, "id": "call_b", "function": {"name": "ls", "arguments": ""}}),
        tool_delta({"id": "call_b", "function": {"arguments": '{"p":"b"}'}}),
        tool_delta({"id": "call_c", "function": {"name": "cat"}}),
        tool_delta({"function": {"arguments": "{}"}}),
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9},
        },
    ]
    events = translate(chunks)
    starts = [d["content_block"] for d in decoded(events) if d["type"] == "content_block_start"]
    assert [(s["id"], s["name"]) for s in starts] == [("call_a", "ls"), ("call_b", "ls"), ("call_c", "cat")]
    assert [deltas(events, i, "partial_json") for i in range(3)] == ['{"p":"a"}', '{"p":"b"}', "{}"]
    assert decoded(events)[-2]["delta"]["stop_reason"] == "tool_use"  # finished with "stop", but tools were called


def test_chunks_without_content_produce_nothing() -> None:
    translator = AnthropicStreamTranslator("m", "msg_1", 0)
    quiet: list[dict[str, Any]] = [
        {"choices": []},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 0}},
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "reasoning_content": None}}]},
        {"choices": [{"index": 0, "delta": {"content": None, "tool_calls": []}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [{"index": 1, "delta": {"content": "another choice"}}]},
        {"object": "chat.completion.chunk"},
    ]
    assert [event for chunk in quiet for event in translator.feed(chunk)] == []
    assert outline(translator.finish(TokenUsage())) == ["message_delta max_tokens", "message_stop"]


def test_text_after_thinking_after_text_opens_new_blocks() -> None:
    def delta(**fields: str) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": fields}]}

    translator = AnthropicStreamTranslator("m", "msg_1", 0)
    events = [translator.start()]
    for chunk in (delta(content="a"), delta(reasoning_content="b"), delta(reasoning_content="c", content="d")):
        events.extend(translator.feed(chunk))
    events.extend(translator.finish(TokenUsage()))
    assert outline(events)[1:-2] == [
        "content_block_start 0 text",
        "content_block_delta 0 text_delta",
        "content_block_stop 0",
        "content_block_start 1 thinking",
        "content_block_delta 1 thinking_delta",
        "content_block_delta 1 thinking_delta",
        "content_block_stop 1",
        "content_block_start 2 text",
        "content_block_delta 2 text_delta",
        "content_block_stop 2",
    ]


def test_error_and_ping_events() -> None:
    translator = AnthropicStreamTranslator("m", "msg_1", 0)
    error = translator.error("overloaded_error", "No operator can serve this model now.")
    assert (
        error
        == b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"No operator can serve this model now."}}\n\n'
    )
    ErrorResponse.model_validate(orjson.loads(error.split(b"data: ", 1)[1]))
    assert translator.ping() == b'event: ping\ndata: {"type":"ping"}\n\n'


# The official SDK reading what we produce, through an in-process transport.


def sdk_client(answer_for: Callable[[dict[str, Any]], bytes]) -> anthropic.Anthropic:
    """An SDK client whose every request is answered, in process, with ``answer_for(request body)``."""

    def handle(sent: httpx2.Request) -> httpx2.Response:
        body = answer_for(orjson.loads(sent.content))
        media_type = "text/event-stream" if body.startswith(b"event:") else "application/json"
        return httpx2.Response(200, headers={"content-type": media_type}, content=body)

    http_client = httpx2.Client(transport=httpx2.MockTransport(handle))
    return anthropic.Anthropic(
        api_key="sk-test", base_url="http://gateway.test", http_client=http_client, max_retries=0
    )


def streamed(chunks: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bytes]:
    def answer_for(body: dict[str, Any]) -> bytes:
        assert anthropic_to_openai_request(body)["stream_options"] == {"include_usage": True}
        translator = AnthropicStreamTranslator(body["model"], "msg_req_42", 11)
        events = [translator.start(), translator.ping()]
        for chunk in chunks:
            events.extend(translator.feed(chunk))
        return b"".join([*events, *translator.finish(usage_of(chunks))])

    return answer_for


USER_TURN: list[MessageParam] = [{"role": "user", "content": "Hi"}]


def test_sdk_reads_a_streamed_text_answer() -> None:
    with (
        sdk_client(streamed(DEEPSEEK_CHAT_CHUNKS)) as client,
        client.messages.stream(model="deepseek-v3.2", max_tokens=64, messages=USER_TURN) as stream,
    ):
        assert "".join(stream.text_stream) == "Hello! How can I help?"
        final = stream.get_final_message()
    assert final.model_dump(exclude_unset=True, exclude_none=True) == {
        "id": "msg_req_42",
        "type": "message",
        "role": "assistant",
        "model": "deepseek-v3.2",
        "content": [{"type": "text", "text": "Hello! How can I help?"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 11,
            "output_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_sdk_reads_a_streamed_reasoner_answer() -> None:
    with (
        sdk_client(streamed(DEEPSEEK_REASONER_CHUNKS)) as client,
        client.messages.stream(model="deepseek-v3.2", max_tokens=64, messages=USER_TURN) as stream,
    ):
        final = stream.get_final_message()
    assert [block.model_dump(exclude_none=True) for block in final.content] == [
        {"type": "thinking", "thinking": "Okay, the user asks for 9.11 vs 9.8.", "signature": ""},
        {"type": "text", "text": "9.8 is greater."},
    ]


def test_sdk_reads_streamed_parallel_tool_calls() -> None:
    with (
        sdk_client(streamed(OPENAI_TOOL_CHUNKS)) as client,
        client.messages.stream(model="deepseek-v3.2", max_tokens=64, messages=USER_TURN) as stream,
    ):
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [block.model_dump(exclude_none=True) for block in final.content] == [
        {"type": "tool_use", "id": "call_3GjWmR9xN2kLpQ8vT1sY5bHd", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_8TqZcV4nB7mXwE2rK6yU0aLs", "name": "get_weather", "input": {"city": "Tokyo"}},
    ]


def test_sdk_reads_a_translated_answer() -> None:
    call = {
        "index": 0,
        "id": "call_0_6f1e",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    data = completion(
        {"content": "Checking.", "reasoning_content": "Need weather.", "tool_calls": [call]}, "tool_calls"
    )
    usage = usage_from_openai(data["usage"])

    def answer_for(body: dict[str, Any]) -> bytes:
        return orjson.dumps(openai_to_anthropic_message(data, body["model"], usage))

    with sdk_client(answer_for) as client:
        message = client.messages.create(model="deepseek-v3.2", max_tokens=64, messages=USER_TURN)
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].type == "tool_use" and message.content[2].input == {"city": "Paris"}
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("tool_use", 20, 5)


# A Claude-Code-like conversation as the SDK's typed params, and what it must become for an OpenAI operator.
SDK_CONVERSATION: list[MessageParam] = [
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18°C"}]},
            {"type": "text", "text": "Is that warm?", "cache_control": {"type": "ephemeral"}},
        ],
    },
]
SDK_WEATHER_TOOL: ToolParam = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
SDK_CONVERSATION_IN_OPENAI = {
    "model": "deepseek-v3.2",
    "max_tokens": 100,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
        {"role": "user", "content": "Is that warm?"},
    ],
    "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": SDK_WEATHER_TOOL["input_schema"]}}
    ],
    "tool_choice": "auto",
    "temperature": 0.5,
    "stop": ["END"],
    "user": "u1",
}


def test_what_the_official_sdk_sends_translates() -> None:
    """The SDK's own serialisation of a Claude-Code-like conversation, with typed params."""
    sent: list[dict[str, Any]] = []

    def answer_for(body: dict[str, Any]) -> bytes:
        sent.append(body)
        return orjson.dumps(openai_to_anthropic_message(completion({"content": "Yes."}), body["model"], TokenUsage()))

    with sdk_client(answer_for) as client:
        client.messages.create(
            model="deepseek-v3.2",
            max_tokens=100,
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            messages=SDK_CONVERSATION,
            tools=[SDK_WEATHER_TOOL],
            tool_choice={"type": "auto"},
            stop_sequences=["END"],
            metadata={"user_id": "u1"},
            # Sampling settings are no longer among the SDK's arguments, but clients still send them.
            extra_body={"temperature": 0.5, "top_k": 5},
        )
    assert anthropic_to_openai_request(sent[0]) == SDK_CONVERSATION_IN_OPENAI
