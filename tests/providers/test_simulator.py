"""The operator simulator over a real socket, driven by the official openai SDK, httpx and the gateway's client.

One server runs for the module in a background thread; every test leaves the operators as it found them
(an autouse fixture resets them), so tests can inject faults through the control API freely.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.catalog import parse_catalog
from suanli.errors import UpstreamError
from suanli.metering.tokenizer import count_messages, decode, encode
from suanli.providers.http1 import Http1Upstream
from suanli.providers.simulator import SimProfile, build_app, serve
from suanli.providers.simulator.completion import Completion
from suanli.providers.simulator.prefix_cache import PrefixCache
from tests.providers.sim_server import no_delay_client, running_simulator

SERVER_START_TIMEOUT_S = 5.0
HANG_CLIENT_TIMEOUT_S = 0.5
MODEL = "sim-model"
HELLO: Any = [{"role": "user", "content": "Say something."}]
PROFILES = {
    "alpha": SimProfile(seed=1),
    "fixed": SimProfile(completion_tokens=5, seed=1, models=["glm-5", "deepseek-v3.2"]),
    "quiet": SimProfile(report_usage=False),
}


@dataclass
class Sim:
    base_url: str
    http: httpx.Client

    def client(self, operator: str | None = None) -> openai.OpenAI:
        prefix = f"/{operator}" if operator else ""
        return openai.OpenAI(base_url=f"{self.base_url}{prefix}/v1", api_key="x", max_retries=0)

    def put(self, operator: str, **knobs: Any) -> httpx.Response:
        return self.http.put(f"/_sim/operators/{operator}", content=orjson.dumps(knobs))

    def stats(self, operator: str) -> dict[str, int]:
        answer: dict[str, int] = self.http.get(f"/_sim/operators/{operator}/stats").json()
        return answer

    def sse(self, path: str, body: dict[str, Any]) -> list[str]:
        """The data lines of a streamed answer, in order."""
        with self.http.stream("POST", path, content=orjson.dumps(body)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            text = response.read().decode()
        events = [event for event in text.split("\n\n") if event]
        assert all(event.startswith("data: ") for event in events)
        return [event.removeprefix("data: ") for event in events]


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_simulator(PROFILES) as base_url, no_delay_client(base_url) as http:
        yield Sim(base_url, http)


@pytest.fixture(autouse=True)
def _reset_operators(sim: Sim) -> Iterator[None]:
    yield
    for name in sim.http.get("/_sim/operators").json():
        sim.http.post(f"/_sim/operators/{name}/reset").raise_for_status()


def _long_prompt(topic: str) -> list[dict[str, Any]]:
    text = " ".join(f"{topic} paragraph {index} explains the quarterly token budget." for index in range(40))
    return [{"role": "system", "content": text}, {"role": "user", "content": "Summarise."}]


def test_non_streamed_answer_reports_usage(sim: Sim) -> None:
    with sim.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=HELLO)
    assert answer.id.startswith("chatcmpl-sim-")
    assert answer.object == "chat.completion"
    assert answer.model == MODEL
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"
    usage = answer.usage
    assert usage is not None
    assert usage.prompt_tokens == count_messages(HELLO)
    assert 8 <= usage.completion_tokens <= 64
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_stream_with_include_usage_ends_with_usage_then_done(sim: Sim) -> None:
    body = {"model": MODEL, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    events = sim.sse("/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all("usage" in chunk and chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    content_chunks = chunks[1:-2]
    assert usage_chunk["usage"]["completion_tokens"] == len(content_chunks)
    assert usage_chunk["usage"]["total_tokens"] == len(content_chunks) + count_messages(HELLO)


def test_stream_without_include_usage_has_no_usage(sim: Sim) -> None:
    events = sim.sse("/v1/chat/completions", {"model": MODEL, "messages": HELLO, "stream": True})
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_deltas_join_to_the_non_streamed_content(sim: Sim) -> None:
    messages: Any = [{"role": "user", "content": "Tell me about tokens."}]
    with sim.client("alpha") as client:
        whole = client.chat.completions.create(model=MODEL, messages=messages)
        stream = client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    joined = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert joined == whole.choices[0].message.content
    assert chunks[-1].usage == whole.usage


def test_non_ascii_echo_streams_whole_characters(sim: Sim) -> None:
    messages: Any = [{"role": "user", "content": "echo: 你好，算力平台！"}]
    with sim.client() as client:
        whole = client.chat.completions.create(model=MODEL, messages=messages)
        chunks = list(client.chat.completions.create(model=MODEL, messages=messages, stream=True))
    deltas = [chunk.choices[0].delta.content or "" for chunk in chunks]
    assert whole.choices[0].message.content == "你好，算力平台！"
    assert "".join(deltas) == "你好，算力平台！"
    assert all("\ufffd" not in delta for delta in deltas)


def test_max_tokens_truncates_with_finish_reason_length(sim: Sim) -> None:
    with sim.client("alpha") as client:
        full = client.chat.completions.create(model=MODEL, messages=HELLO)
        cut = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3)
        cut_new = client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_completion_tokens=4,
        )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 3
    assert cut_new.usage is not None
    assert cut_new.usage.completion_tokens == 4
    full_text = full.choices[0].message.content or ""
    assert full_text.startswith(cut.choices[0].message.content or "-")


def test_echo_answers_the_text_after_the_marker(sim: Sim) -> None:
    messages: Any = [{"role": "user", "content": "Please echo: the quick brown fox"}]
    with sim.client() as client:
        whole = client.chat.completions.create(model=MODEL, messages=messages)
        cut = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    assert whole.choices[0].message.content == "the quick brown fox"
    assert whole.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == "the quick"
    assert cut.choices[0].finish_reason == "length"


def test_repeated_long_prompt_reports_cached_tokens(sim: Sim) -> None:
    messages: Any = _long_prompt("cache")
    with sim.client() as client:
        first = client.chat.completions.create(model=MODEL, messages=messages)
        second = client.chat.completions.create(model=MODEL, messages=messages)
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens > 64
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None
    assert 0 < cached <= second.usage.prompt_tokens
    assert cached % 64 == 0


def test_repeated_long_prompt_answered_with_a_tool_call_reports_cached_tokens(sim: Sim) -> None:
    messages: Any = _long_prompt("tools")
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
    ]
    with sim.client("alpha") as client:
        first = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
        second = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
    assert first.choices[0].finish_reason == second.choices[0].finish_reason == "tool_calls"
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and 0 < cached <= second.usage.prompt_tokens and cached % 64 == 0
    assert sim.stats("alpha")["cached_tokens"] == cached


def test_operators_in_one_process_keep_their_own_knobs(sim: Sim) -> None:
    with sim.client("fixed") as fixed, sim.client("quiet") as quiet, sim.client() as default:
        five = fixed.chat.completions.create(model="glm-5", messages=HELLO)
        silent = quiet.chat.completions.create(model=MODEL, messages=HELLO)
        plain = default.chat.completions.create(model=MODEL, messages=HELLO)
        models = [model.id for model in fixed.models.list()]
    assert five.usage is not None
    assert five.usage.completion_tokens == 5
    assert silent.usage is None
    assert plain.usage is not None
    assert models == ["glm-5", "deepseek-v3.2"]
    assert sim.stats("fixed")["requests"] == 1
    assert sim.stats("default")["requests"] == 1


def test_models_lists_the_default_and_served_names(sim: Sim) -> None:
    with sim.client("alpha") as client:
        client.chat.completions.create(model="coder", messages=HELLO)
        models = client.models.list()
    assert [model.id for model in models] == ["sim-model", "coder"]
    assert all(model.owned_by == "alpha" for model in models)


def test_report_usage_false_omits_the_usage_chunk(sim: Sim) -> None:
    body = {"model": MODEL, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    events = sim.sse("/quiet/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    assert all("usage" not in orjson.loads(event) for event in events[:-1])


def test_injected_503_raises_internal_server_error(sim: Sim) -> None:
    assert sim.put("alpha", error_rate_percent=100, error_status=503).status_code == 200
    with sim.client("alpha") as client, pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model=MODEL, messages=HELLO)
    assert raised.value.status_code == 503
    assert sim.stats("alpha")["errors_injected"] == 1


def test_injected_429_carries_retry_after(sim: Sim) -> None:
    sim.put("alpha", error_rate_percent=100, error_status=429)
    body = orjson.dumps({"model": MODEL, "messages": HELLO})
    response = sim.http.post("/alpha/v1/chat/completions", content=body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    with sim.client("alpha") as client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=HELLO)


def test_error_injection_is_a_fixed_sequence_per_seed(sim: Sim) -> None:
    def statuses() -> list[int]:
        body = orjson.dumps({"model": MODEL, "messages": HELLO})
        return [sim.http.post("/alpha/v1/chat/completions", content=body).status_code for _ in range(12)]

    sim.put("alpha", error_rate_percent=50, error_status=502)
    first = statuses()
    sim.put("alpha", seed=1)  # setting the seed restarts the sequence
    assert statuses() == first
    assert set(first) == {200, 502}


def test_dropped_stream_raises_in_the_sdk_after_n_chunks(sim: Sim) -> None:
    sim.put("alpha", drop_after_chunks=3)
    contents: list[str] = []
    with sim.client("alpha") as client, pytest.raises((openai.APIError, httpx.TransportError)):
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        for chunk in stream:
            contents.append(chunk.choices[0].delta.content or "")
    assert len([content for content in contents if content]) == 3
    assert sim.stats("alpha")["streams_dropped"] == 1


def test_dropped_stream_is_a_protocol_error_for_httpx(sim: Sim) -> None:
    sim.put("alpha", drop_after_chunks=2)
    body = orjson.dumps({"model": MODEL, "messages": HELLO, "stream": True})
    with (
        pytest.raises(httpx.RemoteProtocolError),
        sim.http.stream("POST", "/alpha/v1/chat/completions", content=body) as response,
    ):
        response.read()


async def _read_with_gateway_client(base_url: str, body: bytes) -> bytes:
    upstream = Http1Upstream(parse_catalog(_catalog(base_url), {}).operators["alpha"])
    try:
        response = await upstream.send("/chat/completions", body)
        return await response.read()
    finally:
        await upstream.close()


def _catalog(base_url: str) -> dict[str, Any]:
    offer = {
        "operator": "alpha",
        "model": "m",
        "context_window": 10,
        "max_output_tokens": 10,
        "price": {"input": "1", "output": "1"},
    }
    return {"operators": {"alpha": {"base_url": f"{base_url}/alpha/v1"}}, "models": {"m": {}}, "offers": [offer]}


def test_dropped_stream_is_a_stream_cut_for_the_gateway_client(sim: Sim) -> None:
    sim.put("alpha", drop_after_chunks=2)
    body = orjson.dumps({"model": MODEL, "messages": HELLO, "stream": True})
    with pytest.raises(UpstreamError) as caught:
        asyncio.run(_read_with_gateway_client(sim.base_url, body))
    assert caught.value.code == "stream_cut"


def test_hanging_operator_makes_the_client_time_out(sim: Sim) -> None:
    sim.put("alpha", hang=True)
    started_s = time.monotonic()
    with sim.client("alpha") as client, pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=HANG_CLIENT_TIMEOUT_S).chat.completions.create(
            model=MODEL,
            messages=HELLO,
        )
    assert time.monotonic() - started_s >= HANG_CLIENT_TIMEOUT_S
    assert sim.stats("alpha")["hangs"] == 1


def test_ttft_and_pace_delay_the_answer(sim: Sim) -> None:
    sim.put("alpha", ttft_ms=150, tokens_per_s=100.0, completion_tokens=10)
    started_s = time.monotonic()
    events = sim.sse("/alpha/v1/chat/completions", {"model": MODEL, "messages": HELLO, "stream": True})
    assert time.monotonic() - started_s >= 0.15 + 0.09
    assert len(events) == 1 + 10 + 1 + 1  # role, tokens, finish, [DONE]


def test_control_api_validates_merges_and_resets(sim: Sim) -> None:
    refused = sim.put("alpha", error_rate_percent=101)
    assert refused.status_code == 400
    assert "error_rate_percent" in refused.json()["error"]["message"]
    assert sim.put("alpha", colour="blue").status_code == 400
    assert sim.http.put("/_sim/operators/alpha", content=b"[1]").status_code == 400
    changed = sim.put("alpha", ttft_ms=5).json()
    assert (changed["ttft_ms"], changed["seed"]) == (5, 1)
    assert sim.http.get("/_sim/operators/alpha").json() == changed
    sim.http.post("/alpha/v1/chat/completions", content=orjson.dumps({"model": MODEL, "messages": HELLO}))
    assert sim.stats("alpha")["requests"] == 1
    restored = sim.http.post("/_sim/operators/alpha/reset").json()
    assert restored == PROFILES["alpha"].to_dict()
    assert sim.stats("alpha")["requests"] == 0


def test_control_api_creates_new_operators(sim: Sim) -> None:
    assert sim.put("gamma", completion_tokens=7).status_code == 200
    with sim.client("gamma") as client:
        answer = client.chat.completions.create(model=MODEL, messages=HELLO)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 7
    assert sim.put("bad name!", ttft_ms=1).status_code == 400


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": [{"content": "hi"}]}', "messages[0]"),
        (b'{"model": "m", "messages": [{"role": "user"}], "n": 9}', "n"),
        (b'{"model": "m", "messages": [{"role": "user"}], "n": 0}', "n"),
        (b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": 0}', "max_tokens"),
    ],
)
def test_bad_requests_get_an_openai_400(sim: Sim, body: bytes, param: str | None) -> None:
    response = sim.http.post("/v1/chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_oversized_body_gets_413(sim: Sim) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * (9 * 1024 * 1024) + b'"}]}'
    response = sim.http.post("/v1/chat/completions", content=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_unknown_operator_and_path_get_an_openai_404(sim: Sim) -> None:
    with sim.client("nobody") as client, pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=MODEL, messages=HELLO)
    response = sim.http.get("/nobody/v1/models")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "operator_not_found"
    assert sim.http.get("/v2/whatever").json()["error"]["type"] == "invalid_request_error"
    assert sim.http.get("/_sim/operators/nobody/stats").status_code == 404


def test_profile_from_mapping_validates_and_round_trips() -> None:
    profile = SimProfile.from_mapping({"tokens_per_s": 20, "models": ["a"], "drop_after_chunks": 0})
    assert profile.tokens_per_s == 20.0
    assert SimProfile.from_mapping(profile.to_dict()) == profile
    bad: list[dict[str, object]] = [
        {"ttft_ms": -1},
        {"ttft_ms": 1.5},
        {"hang": 1},
        {"seed": True},
        {"error_status": 200},
        {"tokens_per_s": float("inf")},
        {"models": "glm-5"},
        {"cache_block_tokens": 0},
        {"nonsense": 1},
    ]
    for values in bad:
        with pytest.raises(ValueError):
            SimProfile.from_mapping(values)
    with pytest.raises(ValueError, match="operator name"):
        build_app({"has space": SimProfile()})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _serve_then_cancel(port: int) -> int:
    task = asyncio.create_task(serve("127.0.0.1", port, {}))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                status = (await client.get("/v1/models")).status_code
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "serve() did not start"
                await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return status


def test_serve_runs_until_cancelled() -> None:
    port = _free_port()
    assert asyncio.run(_serve_then_cancel(port)) == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_stream_deltas_join_to_the_decoded_text(text: str) -> None:
    tokens = encode(text)
    for count in {len(tokens), len(tokens) // 2}:
        completion = Completion(tuple(tokens[:count]), "stop")
        deltas = completion.delta_texts()
        assert len(deltas) == count
        assert "".join(deltas) == completion.text() == decode(tokens[:count])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 100_000), max_size=300),
    st.lists(st.integers(0, 100_000), max_size=300),
    st.integers(1, 80),
)
def test_prefix_cache_finds_the_longest_shared_block_prefix(
    first: list[int], second: list[int], block_tokens: int
) -> None:
    cache = PrefixCache()
    assert cache.lookup_and_record("m", first, block_tokens) == 0
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] == second[shared]:
        shared += 1
    assert cache.lookup_and_record("m", second, block_tokens) == shared - shared % block_tokens
    assert cache.lookup_and_record("other-model", second, block_tokens) == 0


def test_prefix_cache_forgets_the_least_recently_used() -> None:
    cache = PrefixCache(entries_max=2)
    cache.lookup_and_record("m", [1, 2, 3], 1)
    assert len(cache) == 2
    assert cache.lookup_and_record("m", [1], 1) == 0
