"""The simulator's wire-style knobs over a real socket: rough operators, as real servers are.

Each test sets an operator's knobs through the control API (so the knobs are checked to work there too),
drives the endpoint with a raw socket, httpx, the official SDKs or the gateway's own upstream client, and
an autouse fixture resets the operators afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from suanli.catalog import parse_catalog
from suanli.cli import main
from suanli.metering.tokenizer import count_messages, count_text
from suanli.providers.http1 import Http1Upstream
from suanli.providers.simulator import SimProfile
from suanli.providers.simulator.messages import chat_messages
from suanli.providers.simulator.prompt import IMAGE_PART_TOKENS, scale_tokens
from tests.providers.sim_server import no_delay_client, running_simulator

MODEL = "sim-model"
HELLO: Any = [{"role": "user", "content": "Say something."}]
LOOKUP: Any = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
}
ANTHROPIC_LOOKUP: Any = {"name": "lookup", "input_schema": {"type": "object", "properties": {"query": {}}}}
IMAGE_URL_PART: Any = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
IMAGE_BLOCK: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
SCHEMA_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}},
}
RAW_READ_TIMEOUT_S = 5.0
RAW_READ_BYTES = 65_536
CLI_START_TIMEOUT_S = 30.0


@dataclass
class Sim:
    base_url: str
    http: httpx.Client

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def openai(self, operator: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/{operator}/v1", api_key="x", max_retries=0)

    def anthropic(self, operator: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=f"{self.base_url}/{operator}", api_key="x", max_retries=0)

    def put(self, operator: str, **knobs: Any) -> None:
        self.http.put(f"/_sim/operators/{operator}", content=orjson.dumps(knobs)).raise_for_status()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, content=orjson.dumps(body))

    def chunks(self, body: dict[str, Any], operator: str = "rough") -> tuple[list[dict[str, Any]], bool]:
        """The chunks of a streamed chat answer, and whether it ended with ``data: [DONE]``."""
        with self.http.stream("POST", f"/{operator}/v1/chat/completions", content=orjson.dumps(body)) as response:
            assert response.status_code == 200
            events = [event.removeprefix("data: ") for event in response.read().decode().split("\n\n") if event]
        done = events[-1] == "[DONE]"
        return [orjson.loads(event) for event in events[: -1 if done else None]], done

    def events(self, body: dict[str, Any], operator: str = "rough") -> list[str]:
        """The event names of a streamed Anthropic answer."""
        with self.http.stream("POST", f"/{operator}/v1/messages", content=orjson.dumps(body)) as response:
            assert response.status_code == 200
            text = response.read().decode()
        return [event.split("\n")[0].removeprefix("event: ") for event in text.split("\n\n") if event]


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_simulator({"rough": SimProfile(seed=3)}) as base_url, no_delay_client(base_url) as http:
        http.headers["anthropic-version"] = "2023-06-01"
        yield Sim(base_url, http)


@pytest.fixture(autouse=True)
def _reset_operators(sim: Sim) -> Iterator[None]:
    yield
    for name in sim.http.get("/_sim/operators").json():
        sim.http.post(f"/_sim/operators/{name}/reset").raise_for_status()


def _stream_body(include_usage: bool | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, "stream": True, **fields}
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    return body


# --- stream_done


def test_no_done_ends_the_stream_after_the_last_chunk(sim: Sim) -> None:
    sim.put("rough", stream_done=False)
    chunks, done = sim.chunks(_stream_body(include_usage=True))
    assert not done
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    chunks, done = sim.chunks(_stream_body())
    assert not done and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    with sim.openai("rough") as client:  # the SDK reads to the end of the body without [DONE]
        streamed = list(client.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_no_done_drops_message_stop_from_an_anthropic_stream(sim: Sim) -> None:
    sim.put("rough", stream_done=False)
    body = {"model": MODEL, "max_tokens": 50, "messages": HELLO, "stream": True}
    assert sim.events(body)[-2:] == ["content_block_stop", "message_delta"]
    with sim.anthropic("rough") as client, client.messages.stream(model=MODEL, max_tokens=50, messages=HELLO) as s:
        final = s.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


# --- stream_usage


@pytest.mark.parametrize(
    ("style", "asked", "placement"),
    [
        ("chunk", True, "chunk"),
        ("chunk", False, None),
        ("chunk_always", False, "chunk"),
        ("chunk_always", True, "chunk"),
        ("finish", True, "finish"),
        ("finish", False, None),
        ("finish_always", False, "finish"),
        ("finish_always", True, "finish"),
        ("never", True, None),
    ],
)
def test_stream_usage_goes_where_the_style_puts_it(sim: Sim, style: str, asked: bool, placement: str | None) -> None:
    sim.put("rough", stream_usage=style)
    chunks, done = sim.chunks(_stream_body(include_usage=asked))
    assert done
    carrying = [chunk for chunk in chunks if chunk.get("usage")]
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    if placement is None:
        assert carrying == []
        return
    [usage_chunk] = carrying
    assert usage_chunk is chunks[-1]
    assert usage_chunk["usage"]["completion_tokens"] == len(content_chunks)
    assert usage_chunk["usage"]["prompt_tokens"] == count_messages(HELLO)
    if placement == "chunk":
        assert usage_chunk["choices"] == []
    else:
        assert usage_chunk["choices"][0]["finish_reason"] == "stop"
    # OpenAI's "usage": null on the other chunks only in OpenAI's own style, when asked.
    nulls = [chunk for chunk in chunks[:-1] if "usage" in chunk]
    assert len(nulls) == (len(chunks) - 1 if placement == "chunk" and asked else 0)


def test_never_streams_usage_but_a_whole_answer_carries_it(sim: Sim) -> None:
    sim.put("rough", stream_usage="never")
    answer = sim.post("/rough/v1/chat/completions", {"model": MODEL, "messages": HELLO}).json()
    assert answer["usage"]["prompt_tokens"] == count_messages(HELLO)


def test_report_usage_false_wins_over_an_always_style(sim: Sim) -> None:
    sim.put("rough", stream_usage="finish_always", report_usage=False)
    chunks, _ = sim.chunks(_stream_body(include_usage=True))
    assert all("usage" not in chunk for chunk in chunks)


def test_the_sdk_reads_usage_from_the_finish_chunk(sim: Sim) -> None:
    sim.put("rough", stream_usage="finish", completion_tokens=6)
    with sim.openai("rough") as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    last = chunks[-1]
    assert last.usage is not None and last.usage.completion_tokens == 6
    assert last.choices[0].finish_reason == "stop"
    assert [chunk for chunk in chunks if chunk.usage is not None] == [last]


# --- close_delimited


def _raw_exchange(port: int, path: str, body: dict[str, Any]) -> tuple[str, bytes]:
    """Send one keep-alive HTTP/1.1 request on a raw socket and read until the server closes it.

    Returns the response head (lower-cased) and the body bytes exactly as they came off the wire; a
    server that kept the connection open would make ``recv`` time out instead.
    """
    data = orjson.dumps(body)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
        f"anthropic-version: 2023-06-01\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=RAW_READ_TIMEOUT_S) as raw:
        raw.sendall(request)
        while piece := raw.recv(RAW_READ_BYTES):  # b"" only when the server closes the connection
            received += piece
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    return head.decode().lower(), rest


def _assert_close_delimited(head: str) -> None:
    assert head.startswith("http/1.1 200")
    assert "transfer-encoding" not in head and "content-length" not in head
    assert "connection: close" in head.split("\r\n")
    assert "x-suanli-sim" not in head  # the private marker never leaves the server


def test_close_delimited_openai_stream_has_no_chunk_framing_and_closes(sim: Sim) -> None:
    sim.put("rough", close_delimited=True, completion_tokens=4)
    head, body = _raw_exchange(sim.port, "/rough/v1/chat/completions", _stream_body(include_usage=True))
    _assert_close_delimited(head)
    # The body is the SSE text itself: no hex chunk sizes and no "0\r\n\r\n" terminator.
    assert body.startswith(b"data: {") and body.endswith(b"data: [DONE]\n\n")
    events = body.split(b"\n\n")[:-1]
    assert all(event.startswith(b"data: ") for event in events) and len(events) == 1 + 4 + 1 + 1 + 1


def test_close_delimited_anthropic_stream_has_no_chunk_framing_and_closes(sim: Sim) -> None:
    sim.put("rough", close_delimited=True)
    body = {"model": MODEL, "max_tokens": 3, "messages": HELLO, "stream": True}
    head, raw = _raw_exchange(sim.port, "/rough/v1/messages", body)
    _assert_close_delimited(head)
    assert raw.startswith(b"event: message_start\n") and raw.endswith(b'data: {"type":"message_stop"}\n\n')


def test_close_delimited_leaves_whole_answers_with_a_length(sim: Sim) -> None:
    sim.put("rough", close_delimited=True)
    response = sim.post("/rough/v1/chat/completions", {"model": MODEL, "messages": HELLO})
    assert int(response.headers["content-length"]) == len(response.content)
    default = sim.post("/v1/chat/completions", _stream_body())
    assert default.headers["transfer-encoding"] == "chunked"


def test_close_delimited_streams_read_whole_in_the_sdks_and_the_gateway_client(sim: Sim) -> None:
    sim.put("rough", close_delimited=True, stream_done=False, stream_usage="finish_always", completion_tokens=5)
    with sim.openai("rough") as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    with sim.anthropic("rough") as claude, claude.messages.stream(model=MODEL, max_tokens=9, messages=HELLO) as s:
        assert s.get_final_message().usage.output_tokens == 5
    raw = asyncio.run(_read_with_gateway_client(sim.base_url, orjson.dumps(_stream_body())))
    last = orjson.loads(raw.strip().split(b"\n\n")[-1].removeprefix(b"data: "))
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]["completion_tokens"] == 5


def test_a_cut_close_delimited_stream_ends_like_a_whole_one(sim: Sim) -> None:
    """Without framing, a cut is a clean close: only the missing finish chunk and [DONE] tell."""
    sim.put("rough", close_delimited=True, drop_after_chunks=2, completion_tokens=6)
    chunks, done = sim.chunks(_stream_body())  # no RemoteProtocolError, unlike a cut chunked stream
    assert not done
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None]


async def _read_with_gateway_client(base_url: str, body: bytes) -> bytes:
    offer = {
        "operator": "rough",
        "model": "m",
        "context_window": 10,
        "max_output_tokens": 10,
        "price": {"input": "1", "output": "1"},
    }
    catalog = {"operators": {"rough": {"base_url": f"{base_url}/rough/v1"}}, "models": {"m": {}}, "offers": [offer]}
    upstream = Http1Upstream(parse_catalog(catalog, {}).operators["rough"])
    try:
        response = await upstream.send("/chat/completions", body)
        return await response.read()
    finally:
        await upstream.close()


# --- prompt_tokens_percent and what a prompt counts


def _openai_prompt() -> dict[str, Any]:
    messages = [
        {"role": "system", "content": "You are terse and exact."},
        {"role": "user", "content": [{"type": "text", "text": "Describe both."}, IMAGE_URL_PART, IMAGE_URL_PART]},
    ]
    choice = {"type": "function", "function": {"name": "lookup"}}
    return {
        "model": MODEL,
        "messages": messages,
        "tools": [LOOKUP],
        "tool_choice": choice,
        "response_format": SCHEMA_FORMAT,
    }


def _definitions_count(*definitions: Any) -> int:
    return sum(count_text(orjson.dumps(definition).decode()) for definition in definitions)


@pytest.mark.parametrize("percent", [100, 80, 120])
def test_prompt_counts_tools_choice_schema_and_images_then_scales(sim: Sim, percent: int) -> None:
    sim.put("rough", prompt_tokens_percent=percent)
    body = _openai_prompt()
    counted = count_messages(body["messages"]) + 2 * IMAGE_PART_TOKENS
    counted += _definitions_count(body["tools"], body["tool_choice"], body["response_format"])
    answer = sim.post("/rough/v1/chat/completions", body).json()
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"]["prompt_tokens"] == (counted * percent + 50) // 100
    # A string tool_choice and a response_format without a schema are not written into the prompt.
    plain = {**body, "tool_choice": "none", "response_format": {"type": "json_object"}}
    text_answer = sim.post("/rough/v1/chat/completions", plain).json()
    assert text_answer["choices"][0]["finish_reason"] == "stop"
    expected = count_messages(body["messages"]) + 2 * IMAGE_PART_TOKENS + _definitions_count(body["tools"])
    assert text_answer["usage"]["prompt_tokens"] == scale_tokens(expected, percent)
    completion = text_answer["usage"]["completion_tokens"]
    assert 8 <= completion <= 64  # the answer is generated in exact tokens, never scaled


@pytest.mark.parametrize("percent", [100, 80, 120])
def test_anthropic_prompt_counts_system_tools_choice_and_images_then_scales(sim: Sim, percent: int) -> None:
    sim.put("rough", prompt_tokens_percent=percent)
    system: Any = [{"type": "text", "text": "You are terse and exact."}]
    messages: Any = [{"role": "user", "content": [{"type": "text", "text": "Describe it."}, IMAGE_BLOCK]}]
    choice = {"type": "auto"}
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "system": system,
        "messages": messages,
        "tools": [ANTHROPIC_LOOKUP],
        "tool_choice": choice,
    }
    usage = sim.post("/rough/v1/messages", body).json()["usage"]
    counted = count_messages(chat_messages(system, messages)) + IMAGE_PART_TOKENS
    counted += _definitions_count([ANTHROPIC_LOOKUP], choice)
    inputs = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    assert inputs == scale_tokens(counted, percent)
    assert sim.http.get("/_sim/operators/rough/stats").json()["prompt_tokens"] == inputs


@pytest.mark.parametrize("percent", [50, 120, 200])
def test_scaled_prompts_keep_the_prefix_cache_within_the_prompt(sim: Sim, percent: int) -> None:
    sim.put("rough", prompt_tokens_percent=percent, cache_block_tokens=16)
    text = " ".join(f"Clause {index} of the contract sets a price per token." for index in range(30))
    body = {"model": MODEL, "messages": [{"role": "system", "content": text}, *HELLO], "tools": [LOOKUP]}
    first, second = (sim.post("/rough/v1/chat/completions", body).json()["usage"] for _ in range(2))
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached <= second["prompt_tokens"] == first["prompt_tokens"]
    claude = {
        "model": MODEL,
        "max_tokens": 5,
        "messages": HELLO,
        "system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}],
    }
    for _ in range(2):
        usage = sim.post("/rough/v1/messages", claude).json()["usage"]
        assert min(usage.values()) >= 0
    assert usage["cache_read_input_tokens"] > 0


# --- n


def test_n_choices_whole_each_with_its_own_answer(sim: Sim) -> None:
    sim.put("rough", completion_tokens=5)
    with sim.openai("rough") as client:
        single = client.chat.completions.create(model=MODEL, messages=HELLO)
        three = client.chat.completions.create(model=MODEL, messages=HELLO, n=3)
    assert [choice.index for choice in three.choices] == [0, 1, 2]
    texts = [choice.message.content for choice in three.choices]
    assert texts[0] == single.choices[0].message.content and len(set(texts)) == 3
    assert three.usage is not None and single.usage is not None
    assert three.usage.completion_tokens == 15
    assert three.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt is counted once


def test_n_choices_stream_round_robin_each_with_a_finish_chunk(sim: Sim) -> None:
    sim.put("rough", completion_tokens=4)
    chunks, done = sim.chunks(_stream_body(include_usage=True, n=3))
    assert done
    choice_chunks = chunks[:-1]
    assert [chunk["choices"][0]["index"] for chunk in choice_chunks] == [0, 1, 2] * 6  # role, 4 tokens, finish
    assert [chunk["choices"][0]["finish_reason"] for chunk in choice_chunks[-3:]] == ["stop"] * 3
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_the_sdk_reads_an_n_stream_with_usage_on_the_last_finish_chunk(sim: Sim) -> None:
    sim.put("rough", stream_usage="finish")
    with sim.openai("rough") as client:
        whole = client.chat.completions.create(model=MODEL, messages=HELLO, n=3)
        stream = client.chat.completions.create(
            model=MODEL, messages=HELLO, n=3, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    texts = ["", "", ""]
    finishes: list[int] = []
    for chunk in chunks:
        [choice] = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason is not None:
            finishes.append(choice.index)
    assert texts == [choice.message.content for choice in whole.choices]
    assert sorted(finishes) == [0, 1, 2]
    assert [chunk for chunk in chunks if chunk.usage is not None] == [chunks[-1]]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage == whole.usage


def test_n_tool_calls_are_n_choices(sim: Sim) -> None:
    body = {"model": MODEL, "messages": HELLO, "tools": [LOOKUP]}
    single = sim.post("/rough/v1/chat/completions", body).json()
    double = sim.post("/rough/v1/chat/completions", {**body, "n": 2}).json()
    calls = [choice["message"]["tool_calls"][0] for choice in double["choices"]]
    assert [choice["finish_reason"] for choice in double["choices"]] == ["tool_calls"] * 2
    assert calls[0] == single["choices"][0]["message"]["tool_calls"][0] and calls[0]["id"] != calls[1]["id"]
    assert double["usage"]["completion_tokens"] == 2 * single["usage"]["completion_tokens"]
    chunks, _ = sim.chunks({**body, "n": 2, "stream": True})
    assert {chunk["choices"][0]["index"] for chunk in chunks} == {0, 1}


# --- output_cap_tokens and over_cap


def test_the_output_cap_stops_answers_without_max_tokens(sim: Sim) -> None:
    sim.put("rough", output_cap_tokens=5, completion_tokens=20)
    answer = sim.post("/rough/v1/chat/completions", {"model": MODEL, "messages": HELLO}).json()
    assert (answer["usage"]["completion_tokens"], answer["choices"][0]["finish_reason"]) == (5, "length")
    asked = sim.post("/rough/v1/chat/completions", {"model": MODEL, "messages": HELLO, "max_tokens": 3}).json()
    assert asked["usage"]["completion_tokens"] == 3


def test_an_honouring_operator_serves_above_its_cap(sim: Sim) -> None:
    sim.put("rough", output_cap_tokens=5, completion_tokens=20, over_cap="honour")
    body = {"model": MODEL, "messages": HELLO, "max_completion_tokens": 12}
    assert sim.post("/rough/v1/chat/completions", body).json()["usage"]["completion_tokens"] == 12
    claude = {"model": MODEL, "max_tokens": 12, "messages": HELLO}
    assert sim.post("/rough/v1/messages", claude).json()["usage"]["output_tokens"] == 12


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_a_refusing_operator_answers_openai_400_above_its_cap(sim: Sim, field: str) -> None:
    sim.put("rough", output_cap_tokens=8, over_cap="refuse")
    response = sim.post("/rough/v1/chat/completions", {"model": MODEL, "messages": HELLO, field: 9})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "max_tokens is too large: 9. This model supports at most 8 completion tokens, whereas you "
        "provided 9.",
        "type": "invalid_request_error",
        "param": field,
        "code": "invalid_value",
    }
    ok = sim.post("/rough/v1/chat/completions", {"model": MODEL, "messages": HELLO, field: 8})
    assert ok.status_code == 200
    assert sim.http.get("/_sim/operators/rough/stats").json()["requests"] == 1  # the refusal is not counted
    with sim.openai("rough") as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=100)


def test_a_refusing_operator_answers_anthropic_400_above_its_cap(sim: Sim) -> None:
    sim.put("rough", output_cap_tokens=8, over_cap="refuse")
    response = sim.post("/rough/v1/messages", {"model": MODEL, "max_tokens": 9, "messages": HELLO})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": f"max_tokens: 9 > 8, which is the maximum allowed number of output tokens for {MODEL}",
    }
    with sim.anthropic("rough") as client, pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)


def test_completion_tokens_reach_long_answers(sim: Sim) -> None:
    sim.put("rough", completion_tokens=131_072, output_cap_tokens=1_000_000)
    answer = sim.post("/rough/v1/chat/completions", {"model": MODEL, "messages": HELLO}).json()
    assert answer["usage"]["completion_tokens"] == 131_072


# --- validation, the control API and the command line


@pytest.mark.parametrize(
    "knobs",
    [
        {"stream_done": 0},
        {"stream_usage": "sometimes"},
        {"close_delimited": "yes"},
        {"prompt_tokens_percent": 49},
        {"prompt_tokens_percent": 201},
        {"output_cap_tokens": 0},
        {"output_cap_tokens": 1_000_001},
        {"over_cap": "ignore"},
    ],
)
def test_the_control_api_refuses_bad_style_knobs(sim: Sim, knobs: dict[str, Any]) -> None:
    response = sim.http.put("/_sim/operators/rough", content=orjson.dumps(knobs))
    assert response.status_code == 400
    assert next(iter(knobs)) in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "args",
    [
        ["--operator-profile", "telecom"],
        ["--operator-profile", "telecom={not json"],
        ["--operator-profile", "telecom=[1]"],
        ["--operator-profile", 'telecom={"stream_usage": "sometimes"}'],
        ["--operator-profile", "bad name!={}"],
        ["--prompt-tokens-percent", "10"],
        ["--output-cap", "0"],
    ],
)
def test_simulate_refuses_bad_style_flags(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--port", "1", *args]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_simulate_flags_and_operator_profiles_set_the_knobs() -> None:
    port = _free_port()
    style = "--no-done --stream-usage finish --close-delimited --prompt-tokens-percent 90 --output-cap 4096"
    command = [sys.executable, "-m", "suanli.cli", "simulate", "--port", str(port), "--operators", "a", "b"]
    command += [*style.split(), "--over-cap", "refuse"]
    command += ["--operator-profile", 'b={"stream_usage": "never", "over_cap": "honour"}']
    command += ["--operator-profile", 'c={"stream_done": true}']
    process = subprocess.Popen(command)
    try:
        operators = _wait_for_operators(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        process.wait()
    flags = {
        "stream_done": False,
        "stream_usage": "finish",
        "close_delimited": True,
        "prompt_tokens_percent": 90,
        "output_cap_tokens": 4096,
        "over_cap": "refuse",
    }
    assert operators["a"] == {**SimProfile().to_dict(), **flags}
    assert operators["b"] == {**operators["a"], "stream_usage": "never", "over_cap": "honour"}
    assert operators["c"] == {**operators["a"], "stream_done": True}


def _wait_for_operators(base_url: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + CLI_START_TIMEOUT_S
    while True:
        assert process.poll() is None, "suanli simulate exited"
        try:
            operators: dict[str, Any] = httpx.get(f"{base_url}/_sim/operators").json()
            return operators
        except httpx.TransportError:
            assert time.monotonic() < deadline, "suanli simulate did not start"
            time.sleep(0.05)


# --- headers_first_ms


@pytest.mark.parametrize("path", ["/rough/v1/chat/completions", "/rough/v1/messages"])
def test_headers_first_sends_the_headers_before_the_first_chunk(sim: Sim, path: str) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}
    sim.post(path, body).raise_for_status()  # warm: the tokenizer loads on the first answer
    sim.put("rough", headers_first_ms=300)
    started = time.monotonic()
    with sim.http.stream("POST", path, content=orjson.dumps(body)) as response:
        headers_s = time.monotonic() - started
        first = next(response.iter_raw())
        first_s = time.monotonic() - started
    assert response.status_code == 200 and first
    assert headers_s < 0.2 and first_s - headers_s >= 0.25  # the headers at once, the first chunk after the pause
