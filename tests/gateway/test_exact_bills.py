"""Exact bills in front of a rough operator: whatever a request holds (tools, ``n``, images, a
``max_tokens`` above the offer's cap) and however the operator's tokenizer counts (up to 20 % off the
gateway's), the charge is the list price of what the operator reported, to the nano, nothing is left
uncharged, and the reservation covered the charge. An operator that counts beyond the reservation is
charged from the balance; only what the balance cannot pay is recorded as uncharged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.money import cny_to_nano, nano_to_cny
from tests.conftest import Gateway, Simulator
from tests.gateway.styled import OFFER_OUTPUT_CAP, list_price

SETTLE_WAIT_S = 10.0
WORDS = ["token", "operator", "算力", "ledger", "quote", "price", "电信", "stream", "cache", "模型", "pack"]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def event_of(gateway: Gateway, account: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_WAIT_S
    while time.monotonic() < deadline:
        events = gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"]
        found = [e for e in events if e["request_id"] == request_id]
        if found:
            return dict(found[0])
        time.sleep(0.02)
    raise AssertionError(f"{request_id} was never settled")


@pytest.fixture(scope="module")
def payer(gateway: Gateway) -> Iterator[tuple[str, str]]:
    name = f"exact-{time.monotonic_ns()}"
    yield name, gateway.account(name, topup_cny="1000")


def tool(name: str, words: list[str]) -> dict[str, Any]:
    properties = {w: {"type": "string", "description": " ".join(words)} for w in words[:3]}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": " ".join(words),
            "parameters": {"type": "object", "properties": properties},
        },
    }


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=60).map(" ".join)
requests = st.fixed_dictionaries(
    {
        "messages": st.lists(texts, min_size=1, max_size=3),
        "system": st.none() | texts,
        "tools": st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=20), max_size=4),
        "n": st.integers(1, 3),
        "images": st.integers(0, 2),
        "max_tokens": st.none() | st.integers(1, 3 * OFFER_OUTPUT_CAP),
        "stream": st.booleans(),
        "json_schema": st.booleans(),
    }
)
operators = st.fixed_dictionaries(
    {
        "prompt_tokens_percent": st.integers(80, 120),
        "completion_tokens": st.integers(1, 2 * OFFER_OUTPUT_CAP),
        "stream_usage": st.sampled_from(["chunk", "finish", "finish_always", "chunk_always"]),
        "stream_done": st.booleans(),
        "close_delimited": st.booleans(),
        "over_cap": st.sampled_from(["honour", "refuse"]),
        "output_cap_tokens": st.sampled_from([None, OFFER_OUTPUT_CAP]),
    }
)


def chat_body(spec: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": spec["system"]}] if spec["system"] else []
    for index, text in enumerate(spec["messages"]):
        content: Any = text
        if index == len(spec["messages"]) - 1 and spec["images"]:
            content = [{"type": "text", "text": text}] + [IMAGE] * spec["images"]
        messages.append({"role": "user", "content": content})
    body: dict[str, Any] = {"model": "styled", "messages": messages, "n": spec["n"], "stream": spec["stream"]}
    if spec["stream"]:
        body["stream_options"] = {"include_usage": True}
    if spec["tools"]:
        body["tools"] = [tool(f"tool_{i}", words) for i, words in enumerate(spec["tools"])]
        body["tool_choice"] = "none"  # tools are offered, counted, and not called: the answer is text
    if spec["max_tokens"] is not None:
        body["max_tokens"] = spec["max_tokens"]
    if spec["json_schema"]:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    return body


def reported_usage(response: httpx.Response, stream: bool) -> dict[str, Any]:
    if not stream:
        return dict(response.json()["usage"])
    events = [e for e in response.content.split(b"\n\n") if e.startswith(b"data: {")]
    return dict(orjson.loads(events[-1].removeprefix(b"data: "))["usage"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=requests, profile=operators)
def test_the_charge_is_the_list_price_of_what_the_operator_reported(
    gateway: Gateway, simulator: Simulator, payer: tuple[str, str], spec: dict[str, Any], profile: dict[str, Any]
) -> None:
    account, key = payer
    simulator.reset("rough")
    simulator.set("rough", **profile)
    body = chat_body(spec)
    response = post_chat(gateway, key, body)
    assert response.status_code == 200, response.text  # an over-cap max_tokens was clamped, never refused
    usage = reported_usage(response, spec["stream"])
    event = event_of(gateway, account, response.headers["x-request-id"])
    assert event["outcome"] == "ok" and not event["estimated"]
    assert event["cost_nano"] == list_price(usage) == cny_to_nano(usage["cost"])
    assert event["uncharged_nano"] == 0
    assert event["reserved_nano"] >= event["cost_nano"]  # the reservation bounded the bill
    assert usage["completion_tokens"] <= spec["n"] * OFFER_OUTPUT_CAP
    asked = spec["max_tokens"]
    assert (response.headers.get("x-suanli-max-tokens-clamped") == str(OFFER_OUTPUT_CAP)) == (
        asked is not None and asked > OFFER_OUTPUT_CAP
    )


TIGHT_BODY = {"model": "styled-tight", "max_tokens": 5, "messages": [{"role": "user", "content": " ".join(WORDS * 9)}]}


def post_chat(gateway: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def quote_nano(gateway: Gateway, key: str, body: dict[str, Any]) -> int:
    quoted = httpx.post(f"{gateway.url}/v1/quote", json=body, headers={"Authorization": f"Bearer {key}"})
    quoted.raise_for_status()
    return int(quoted.json()["data"][0]["now"]["max_cost_nano"])


def test_counts_beyond_the_reservation_are_charged_from_the_balance(
    gateway: Gateway, simulator: Simulator, unique: str
) -> None:
    simulator.set("rough", prompt_tokens_percent=150, completion_tokens=5)
    try:
        key = gateway.account(unique, topup_cny="1")
        response = post_chat(gateway, key, TIGHT_BODY)
    finally:
        simulator.reset("rough")
    usage = response.json()["usage"]
    event = event_of(gateway, unique, response.headers["x-request-id"])
    assert event["reserved_nano"] < list_price(usage) == event["cost_nano"]  # counted beyond; charged all
    assert event["uncharged_nano"] == 0 and cny_to_nano(usage["cost"]) == event["cost_nano"]
    wallet = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["balance_nano"] == 10**9 - event["cost_nano"] and wallet["reserved_nano"] == 0


def test_what_no_balance_can_pay_is_recorded_as_uncharged(
    gateway: Gateway, simulator: Simulator, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = gateway.account(unique, topup_cny=None)
    reservation = quote_nano(gateway, key, TIGHT_BODY)
    gateway.admin("POST", f"/admin/v1/accounts/{unique}/topup", json={"amount": nano_to_cny(reservation)})
    simulator.set("rough", prompt_tokens_percent=150, completion_tokens=5)
    try:
        response = post_chat(gateway, key, TIGHT_BODY)
    finally:
        simulator.reset("rough")
    usage = response.json()["usage"]
    event = event_of(gateway, unique, response.headers["x-request-id"])
    price = list_price(usage)
    # The wallet paid everything it held; the rest is the platform's, recorded on the event, never hidden.
    assert event["cost_nano"] == reservation and event["uncharged_nano"] == price - reservation > 0
    wallet = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["balance_nano"] == 0
    metrics = gateway.admin("GET", "/metrics").text
    assert 'suanli_uncharged_nano_cny_total{offer="rough/styled-tight",operator="rough"}' in metrics
    assert gateway.cli("uncharged", "--json") == 0
    report = orjson.loads(capsys.readouterr().out)["data"]
    assert any(r["offer"] == "rough/styled-tight" and r["uncharged_nano"] >= price - reservation for r in report)
    assert gateway.cli("ledger", "verify") == 0
