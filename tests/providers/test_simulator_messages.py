"""The simulator's Anthropic Messages endpoint over a real socket, driven by the official anthropic SDK.

The server is started as tests/providers/test_simulator.py starts it (tests/providers/sim_server.py): one
uvicorn server for the module in a background thread, and every operator reset after each test. Raw
answers are also checked against the SDK's pydantic types, which are stricter than what the SDK parses.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import httpx2
import orjson
import pydantic
import pytest
from anthropic.types import (
    Message,
    MessageParam,
    RawMessageStreamEvent,
    TextBlock,
    TextBlockParam,
    ToolParam,
    ToolUseBlock,
)

from suanli.errors import InvariantViolation
from suanli.metering.tokenizer import count_messages
from suanli.providers.simulator import SimProfile
from suanli.providers.simulator.messages import split_input_tokens
from tests.providers.sim_server import no_delay_client, running_simulator

MODEL = "sim-claude"
HELLO: list[MessageParam] = [{"role": "user", "content": "Say something."}]
LOOKUP: ToolParam = {
    "name": "lookup",
    "description": "Look a word up.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
PROFILES = {"alpha": SimProfile(seed=1)}
STREAM_EVENTS = pydantic.TypeAdapter[RawMessageStreamEvent](RawMessageStreamEvent)


@dataclass
class Sim:
    base_url: str
    http: httpx.Client

    def client(self, operator: str | None = None) -> anthropic.Anthropic:
        prefix = f"/{operator}" if operator else ""
        return anthropic.Anthropic(
            base_url=f"{self.base_url}{prefix}", api_key="x", max_retries=0, http_client=_no_delay_sdk_client()
        )

    def put(self, operator: str, **knobs: Any) -> None:
        self.http.put(f"/_sim/operators/{operator}", content=orjson.dumps(knobs)).raise_for_status()

    def post(self, body: dict[str, Any], path: str = "/v1/messages") -> httpx.Response:
        return self.http.post(path, content=orjson.dumps(body))


def _no_delay_sdk_client() -> httpx2.Client:
    # The anthropic SDK runs on httpx2, whose transport takes the same socket options.
    transport = httpx2.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return anthropic.DefaultHttpxClient(transport=transport)


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_simulator(PROFILES) as base_url, no_delay_client(base_url) as http:
        http.headers["anthropic-version"] = "2023-06-01"
        yield Sim(base_url, http)


@pytest.fixture(autouse=True)
def _reset_operators(sim: Sim) -> Iterator[None]:
    yield
    for name in sim.http.get("/_sim/operators").json():
        sim.http.post(f"/_sim/operators/{name}/reset").raise_for_status()


def _input_sum(message: Message) -> int:
    usage = message.usage
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


def _text(message: Message) -> str:
    [block] = message.content
    assert isinstance(block, TextBlock)
    return block.text


def _long_system(topic: str) -> str:
    return " ".join(f"{topic} paragraph {index} explains the quarterly token budget." for index in range(40))


def _sse_events(text: str) -> list[RawMessageStreamEvent]:
    """The events of a streamed answer, each validated; ``ping`` is not in the SDK's union, so it is
    checked by hand and left out."""
    events = []
    for raw in text.split("\n\n"):
        if not raw:
            continue
        name_line, data_line = raw.split("\n")
        data = data_line.removeprefix("data: ")
        if name_line == "event: ping":
            assert orjson.loads(data) == {"type": "ping"}
            continue
        event = STREAM_EVENTS.validate_json(data)
        assert name_line == f"event: {event.type}"
        events.append(event)
    return events


def test_non_streamed_answer_matches_the_chat_endpoint_and_anthropic_types(sim: Sim) -> None:
    with sim.client() as client:
        answer = client.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
    raw = sim.post({"model": MODEL, "max_tokens": 1000, "messages": HELLO})
    assert raw.status_code == 200
    message = Message.model_validate(raw.json())
    assert message.id.startswith("msg_sim_") and message.stop_sequence is None
    assert (message.role, message.model, message.stop_reason) == ("assistant", MODEL, "end_turn")
    chat = sim.post({"model": MODEL, "messages": HELLO}, "/v1/chat/completions").json()
    assert _text(answer) == _text(message) == chat["choices"][0]["message"]["content"]
    assert _input_sum(answer) == count_messages(HELLO) == chat["usage"]["prompt_tokens"]
    assert answer.usage.output_tokens == chat["usage"]["completion_tokens"]


def test_streamed_answer_equals_the_non_streamed_one(sim: Sim) -> None:
    with sim.client("alpha") as client:
        whole = client.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
        with client.messages.stream(model=MODEL, max_tokens=1000, messages=HELLO) as stream:
            streamed = stream.get_final_message()
    assert _text(streamed) == _text(whole)
    assert streamed.stop_reason == "end_turn"
    assert streamed.usage.output_tokens == whole.usage.output_tokens
    assert _input_sum(streamed) == count_messages(HELLO)


def test_stream_events_follow_anthropic_order(sim: Sim) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}
    with sim.http.stream("POST", "/v1/messages", content=orjson.dumps(body)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    events = _sse_events(raw.decode())
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert (
        raw.index(b"event: content_block_start") < raw.index(b"event: ping") < raw.index(b"event: content_block_delta")
    )
    assert events[0].type == "message_start" and events[0].message.usage.output_tokens == 1
    assert events[-2].type == "message_delta" and events[-2].usage.output_tokens == 5
    assert events[-2].delta.stop_reason == "max_tokens"


def test_max_tokens_cuts_the_answer(sim: Sim) -> None:
    with sim.client() as client:
        whole = client.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
        cut = client.messages.create(model=MODEL, max_tokens=3, messages=HELLO)
    assert (cut.stop_reason, cut.usage.output_tokens) == ("max_tokens", 3)
    assert _text(whole).startswith(_text(cut))


def test_repeated_long_prompt_is_read_from_the_cache(sim: Sim) -> None:
    with sim.client("alpha") as client:
        first = client.messages.create(model=MODEL, max_tokens=10, system=_long_system("Budget"), messages=HELLO)
        second = client.messages.create(model=MODEL, max_tokens=10, system=_long_system("Budget"), messages=HELLO)
    assert first.usage.cache_read_input_tokens == 0
    assert (second.usage.cache_read_input_tokens or 0) > 0
    assert first.usage.cache_creation_input_tokens == second.usage.cache_creation_input_tokens == 0
    assert _input_sum(first) == _input_sum(second) > (second.usage.cache_read_input_tokens or 0)
    stats = sim.http.get("/_sim/operators/alpha/stats").json()
    assert stats["cached_tokens"] == second.usage.cache_read_input_tokens


def test_cache_control_block_is_written_to_the_cache_first(sim: Sim) -> None:
    system: list[TextBlockParam] = [
        {"type": "text", "text": _long_system("Ledger"), "cache_control": {"type": "ephemeral"}}
    ]
    prefix_tokens = count_messages([{"role": "system", "content": system[0]["text"]}])
    with sim.client() as client:
        first = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HELLO)
        second = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HELLO)
    assert first.usage.cache_creation_input_tokens == prefix_tokens
    assert first.usage.cache_read_input_tokens == 0
    read = second.usage.cache_read_input_tokens or 0
    assert read > 0 and second.usage.cache_creation_input_tokens == max(0, prefix_tokens - read)
    assert _input_sum(first) == _input_sum(second)


def test_tools_get_a_tool_use_answer_and_a_tool_result_gets_text(sim: Sim) -> None:
    ask: list[MessageParam] = [{"role": "user", "content": "What is a ledger?"}]
    with sim.client() as client:
        call = client.messages.create(model=MODEL, max_tokens=100, messages=ask, tools=[LOOKUP])
        with client.messages.stream(model=MODEL, max_tokens=100, messages=ask, tools=[LOOKUP]) as stream:
            streamed = stream.get_final_message()
        [block] = call.content
        assert isinstance(block, ToolUseBlock)
        result: MessageParam = {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "A book of accounts."}],
        }
        used: MessageParam = {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}],
        }
        turns = [*ask, used, result]
        answer = client.messages.create(model=MODEL, max_tokens=100, messages=turns, tools=[LOOKUP])
    assert (call.stop_reason, block.name, block.input) == ("tool_use", "lookup", {"query": "What is a ledger?"})
    assert block.id.startswith("toolu_") and call.usage.output_tokens > 0
    assert streamed.stop_reason == "tool_use" and streamed.content == call.content
    assert answer.stop_reason == "end_turn" and _text(answer)


def test_a_system_turn_among_the_messages_is_context_for_the_user_turn_before_it(sim: Sim) -> None:
    """Claude Code sends its list of agent types as a system turn right after the user's prompt."""
    system_turn = {"role": "system", "content": [{"type": "text", "text": "Agent types: claude."}]}
    turns = [{"role": "user", "content": "Please echo: the ledger balances"}, system_turn]
    answer = sim.post({"model": MODEL, "max_tokens": 50, "messages": turns})
    assert answer.status_code == 200, answer.text
    message = Message.model_validate(answer.json())
    assert _text(message) == "the ledger balances" and message.stop_reason == "end_turn"
    as_chat = [turns[0], {"role": "system", "content": "Agent types: claude."}]
    assert _input_sum(message) == count_messages(as_chat)
    asking = [*HELLO, {"role": "system", "content": "Agent types: claude."}]
    call = Message.model_validate(
        sim.post({"model": MODEL, "max_tokens": 100, "messages": asking, "tools": [LOOKUP]}).json()
    )
    [block] = call.content
    assert isinstance(block, ToolUseBlock) and block.input == {"query": "Say something."}


def test_server_tools_are_never_called(sim: Sim) -> None:
    """A typed tool such as web search runs at Anthropic, not at the client (the Cline CLI offers one always)."""
    web_search: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    with sim.client() as client:
        alone = client.messages.create(model=MODEL, max_tokens=100, messages=HELLO, tools=[web_search])
        both = client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=HELLO,
            tools=[web_search, LOOKUP],
            tool_choice={"type": "tool", "name": "web_search"},
        )
    assert alone.stop_reason == "end_turn" and _text(alone)
    [block] = both.content
    assert isinstance(block, ToolUseBlock) and block.name == "lookup"


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, anthropic.InternalServerError), (429, anthropic.RateLimitError), (529, anthropic.OverloadedError)],
)
def test_injected_errors_are_anthropic_errors(sim: Sim, status: int, error: type[anthropic.APIStatusError]) -> None:
    sim.put("alpha", error_rate_percent=100, error_status=status)
    with sim.client("alpha") as client, pytest.raises(error) as raised:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    body = raised.value.response.json()
    assert body["type"] == "error" and body["error"]["message"].endswith(f"(HTTP {status}).")
    assert (raised.value.response.headers.get("retry-after") == "1") is (status == 429)
    assert sim.http.get("/_sim/operators/alpha/stats").json()["errors_injected"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL, "messages": HELLO},
        {"model": MODEL, "max_tokens": 0, "messages": HELLO},
        {"model": MODEL, "max_tokens": True, "messages": HELLO},
        {"model": MODEL, "max_tokens": 5, "messages": []},
        {"model": MODEL, "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]},
        {"model": MODEL, "max_tokens": 5, "messages": [*HELLO, {"role": "system", "content": [{"type": "image"}]}]},
        {"model": MODEL, "max_tokens": 5, "messages": HELLO, "system": [{"type": "image"}]},
        {"max_tokens": 5, "messages": HELLO},
    ],
)
def test_bad_input_is_an_invalid_request_error(sim: Sim, body: dict[str, Any]) -> None:
    answer = sim.post(body)
    assert answer.status_code == 400
    assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "invalid_request_error"


def test_bad_input_raises_bad_request_in_the_sdk(sim: Sim) -> None:
    with sim.client() as client, pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=10, messages=[])
    with sim.client("nobody") as client, pytest.raises(anthropic.NotFoundError):
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)


def test_dropped_stream_stops_after_n_deltas(sim: Sim) -> None:
    sim.put("alpha", drop_after_chunks=2)
    body = {"model": MODEL, "max_tokens": 20, "messages": HELLO, "stream": True}
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        sim.http.stream("POST", "/alpha/v1/messages", content=orjson.dumps(body)) as response,
    ):
        received.extend(response.iter_lines())
    assert sum(line == "event: content_block_delta" for line in received) == 2
    assert sim.http.get("/_sim/operators/alpha/stats").json()["streams_dropped"] == 1


def test_input_classes_add_up_and_never_go_negative() -> None:
    assert split_input_tokens(100, 64, 80) == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 16,
        "cache_read_input_tokens": 64,
    }
    assert split_input_tokens(100, 128, 150)["cache_read_input_tokens"] == 100
    assert split_input_tokens(100, 0, 150)["cache_creation_input_tokens"] == 100
    with pytest.raises(InvariantViolation):
        split_input_tokens(-1, 0, 0)


def test_anthropic_version_header_is_required(sim: Sim) -> None:
    response = sim.http.post(
        "/v1/messages",
        content=orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": HELLO}),
        headers={"anthropic-version": ""},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
