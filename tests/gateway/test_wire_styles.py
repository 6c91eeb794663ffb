"""The money path against every wire style real operators use: streams with and without ``[DONE]``,
chunked or close-delimited, usage as its own chunk, on the finish chunk, always, or never.

Whatever the operator's style, a client gets the usage it asked for (with the cost as charged) and
``[DONE]``, the call is ``ok``, the charge is the list price of what the operator reported and the
operator's health counts a success. A stream that ends before the operator's final event is still a cut.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from suanli.money import cny_to_nano
from tests.conftest import Gateway, Simulator
from tests.gateway.styled import PRICE_INPUT_NANO, PRICE_OUTPUT_NANO, list_price

STYLES: dict[str, dict[str, object]] = {
    "openai": {},  # [DONE], usage as its own chunk when asked, chunked
    "no-done": {"stream_done": False},
    "usage-on-finish": {"stream_usage": "finish", "stream_done": False},  # vLLM-like
    "transformers-serve": {"stream_usage": "finish_always", "stream_done": False, "close_delimited": True},
    "usage-always": {"stream_usage": "chunk_always"},
    "close-delimited": {"close_delimited": True},
    "never-in-stream": {"stream_usage": "never"},
    "no-usage-at-all": {"report_usage": False, "stream_done": False},
}
ESTIMATED_STYLES = {"never-in-stream", "no-usage-at-all"}
SETTLE_WAIT_S = 10.0


@pytest.fixture(params=sorted(STYLES))
def style(request: pytest.FixtureRequest, simulator: Simulator) -> Iterator[str]:
    name: str = request.param
    simulator.reset("rough")
    simulator.set("rough", **STYLES[name])
    yield name
    simulator.reset("rough")


def events_of(gateway: Gateway, account: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SETTLE_WAIT_S
    while time.monotonic() < deadline:
        events = gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"]
        if len(events) >= count:
            return list(events)
        time.sleep(0.05)
    raise AssertionError("the call was never settled")


def wallet_nano(gateway: Gateway, account: str) -> dict[str, int]:
    return dict(gateway.admin("GET", f"/admin/v1/accounts/{account}").json()["wallet"])


def offer_health(gateway: Gateway, offer: str) -> dict[str, Any]:
    operators = gateway.admin("GET", "/admin/v1/operators").json()["data"]
    return next(o for op in operators for o in op["offers"] if o["offer"] == offer)


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage-asked", "usage-not-asked"])
def test_a_stream_ends_cleanly_in_every_style(gateway: Gateway, unique: str, style: str, include_usage: bool) -> None:
    key = gateway.account(unique, topup_cny="1")
    before = offer_health(gateway, "rough/styled")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client.chat.completions.create(
            model="styled",
            messages=[{"role": "user", "content": f"A story, {unique}."}],
            stream=True,
            **options,  # type: ignore[arg-type, call-overload]
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    [event] = events_of(gateway, unique)
    estimated = style in ESTIMATED_STYLES
    assert event["outcome"] == ("ok_estimated" if estimated else "ok"), event
    assert chunks[-1].choices == [] or not include_usage
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    if include_usage:
        [last] = with_usage  # one usage chunk, the last, with the cost as charged
        assert last is chunks[-1] and last.choices == []
        usage = last.usage.model_dump()  # type: ignore[union-attr]
        assert cny_to_nano(usage["cost"]) == event["cost_nano"]
        assert usage.get("estimated", False) is estimated
        if not estimated:
            assert event["cost_nano"] == list_price(usage)
    else:
        assert with_usage == []  # usage on a finish chunk reaches only clients that asked for it
    assert event["uncharged_nano"] == 0 and event["cost_nano"] <= event["reserved_nano"]
    wallet = wallet_nano(gateway, unique)
    assert wallet["reserved_nano"] == 0 and wallet["balance_nano"] == 10**9 - event["cost_nano"]
    after = offer_health(gateway, "rough/styled")
    assert after["failures_total"] == before["failures_total"]  # a clean end is a success for the breaker
    assert after["calls_total"] == before["calls_total"] + 1 and after["state"] == "closed"


def test_raw_bytes_end_with_the_usage_chunk_and_done(gateway: Gateway, unique: str, style: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    body = {
        "model": "styled",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    raw = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    events = [e for e in raw.content.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]" and events.count(b"data: [DONE]") == 1
    usage_chunk = orjson.loads(events[-2].removeprefix(b"data: "))
    assert usage_chunk["choices"] == [] and "cost" in usage_chunk["usage"]
    assert not any(b"stream_cut" in e or b'"error"' in e for e in events)


def test_a_cut_is_still_a_cut_in_every_style(gateway: Gateway, simulator: Simulator, unique: str, style: str) -> None:
    simulator.set("rough", drop_after_chunks=3, completion_tokens=40)
    key = gateway.account(unique, topup_cny="1")
    before = offer_health(gateway, "rough/styled")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    contents: list[str] = []
    with pytest.raises(openai.APIError):
        stream = client.chat.completions.create(
            model="styled", messages=[{"role": "user", "content": "go"}], stream=True
        )
        for chunk in stream:
            contents.extend(c.delta.content or "" for c in chunk.choices)
    [event] = events_of(gateway, unique)
    assert event["outcome"] == "cut_short" and event["estimated"] is True
    # Charged by the documented rule: the prompt as counted at admission plus the delivered text.
    assert event["cost_nano"] == event["input_tokens"] * PRICE_INPUT_NANO + event["output_tokens"] * PRICE_OUTPUT_NANO
    assert wallet_nano(gateway, unique)["reserved_nano"] == 0
    assert offer_health(gateway, "rough/styled")["failures_total"] == before["failures_total"] + 1


def test_a_client_leaving_before_any_content_pays_for_the_prompt_alone(
    gateway: Gateway, simulator: Simulator, unique: str
) -> None:
    # Headers at once, the first token half a second later (the operator still reading the prompt).
    simulator.set("rough", headers_first_ms=500, completion_tokens=50)
    try:
        key = gateway.account(unique, topup_cny="1")
        body = {"model": "styled", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers) as response:
            assert response.status_code == 200  # the headers came; the client leaves before the first token
        [event] = events_of(gateway, unique)
    finally:
        simulator.reset("rough")
    assert event["outcome"] == "client_gone" and event["output_tokens"] == 0
    assert event["cost_nano"] == event["input_tokens"] * PRICE_INPUT_NANO


def test_anthropic_clients_get_the_cost_in_message_delta_from_an_openai_operator(
    gateway: Gateway, unique: str, style: str
) -> None:
    key = gateway.account(unique, topup_cny="1")
    body = {"model": "styled", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    raw = httpx.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": key})
    names = [line.removeprefix(b"event: ") for line in raw.content.splitlines() if line.startswith(b"event: ")]
    assert names[-2:] == [b"message_delta", b"message_stop"] and b"error" not in names
    delta = next(orjson.loads(e.split(b"data: ", 1)[1]) for e in raw.content.split(b"\n\n") if b"message_delta" in e)
    [event] = events_of(gateway, unique)
    assert cny_to_nano(delta["usage"]["cost"]) == event["cost_nano"] > 0
    assert event["outcome"] == ("ok_estimated" if style in ESTIMATED_STYLES else "ok")


@pytest.mark.parametrize("stop", [True, False], ids=["message_stop", "no-message_stop"])
@pytest.mark.parametrize("framing", [False, True], ids=["chunked", "close-delimited"])
def test_a_native_anthropic_stream_ends_cleanly_with_or_without_message_stop(
    gateway: Gateway, simulator: Simulator, unique: str, stop: bool, framing: bool
) -> None:
    simulator.set("roughdual", stream_done=stop, close_delimited=framing)
    try:
        key = gateway.account(unique, topup_cny="1")
        body = {
            "model": "styled-dual",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": f"hi {unique}"}],
        }
        raw = httpx.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": key})
    finally:
        simulator.reset("roughdual")
    names = [line.removeprefix(b"event: ") for line in raw.content.splitlines() if line.startswith(b"event: ")]
    assert names[-2:] == [b"message_delta", b"message_stop"] and names.count(b"message_stop") == 1
    delta = next(orjson.loads(e.split(b"data: ", 1)[1]) for e in raw.content.split(b"\n\n") if b"message_delta" in e)
    [event] = events_of(gateway, unique)
    assert event["outcome"] == "ok" and cny_to_nano(delta["usage"]["cost"]) == event["cost_nano"]
    usage = delta["usage"]
    assert event["output_tokens"] == usage["output_tokens"]


def test_stream_without_usage_gets_an_estimated_usage_chunk_when_asked(
    gateway: Gateway, simulator: Simulator, unique: str
) -> None:
    simulator.set("rough", report_usage=False, completion_tokens=7)
    try:
        key = gateway.account(unique, topup_cny="1")
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="styled",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    finally:
        simulator.reset("rough")
    usage = chunks[-1].usage.model_dump()  # type: ignore[union-attr]
    [event] = events_of(gateway, unique)
    assert usage["estimated"] is True and usage["completion_tokens"] == 7 == event["output_tokens"]
    assert cny_to_nano(usage["cost"]) == event["cost_nano"]
