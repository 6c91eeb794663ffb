"""Streams cut short: by the client leaving, or by the operator breaking off. Each is charged for what
was delivered, exactly once, and the ledger reconciles."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from suanli.metering import count_text, delivered_texts
from tests.conftest import Gateway, Simulator

MESSAGES = [{"role": "user", "content": "Tell a long story about tokens."}]
SETTLE_WAIT_S = 10.0


def wait_for_usage(gateway: Gateway, account: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + SETTLE_WAIT_S
    while time.monotonic() < deadline:
        events = gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"]
        if events:
            return list(events)
        time.sleep(0.05)
    raise AssertionError("the stream was never settled")


def assert_settled(gateway: Gateway, account: str, charged: int) -> None:
    wallet = gateway.admin("GET", f"/admin/v1/accounts/{account}").json()["wallet"]
    assert wallet["reserved_nano"] == 0
    assert wallet["balance_nano"] == 10**9 - charged


@pytest.fixture
def slow_faulty(simulator: Simulator) -> object:
    # 200 tokens at 100 tokens/s: a two-second stream to leave in the middle of.
    simulator.set("faulty", completion_tokens=200, tokens_per_s=100)
    yield None
    simulator.reset("faulty")


def test_client_leaving_mid_stream_pays_for_what_was_delivered(
    gateway: Gateway, unique: str, slow_faulty: object
) -> None:
    key = gateway.account(unique, topup_cny="1")
    received: list[bytes] = []
    body = {"model": "faulty-model", "messages": MESSAGES, "stream": True, "max_tokens": 100}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received.append(chunk)
            if b"".join(received).count(b"data:") >= 10:
                break  # leave: closing the response closes the connection
    events = wait_for_usage(gateway, unique)
    [event] = events
    assert event["outcome"] == "client_gone" and event["estimated"] is True
    seen_tokens = sum(count_text(text) for text in delivered_texts([b"".join(received)]))
    assert seen_tokens <= int(event["output_tokens"]) < 100  # type: ignore[call-overload]
    assert int(event["cost_nano"]) > 0  # type: ignore[call-overload]
    assert_settled(gateway, unique, int(event["cost_nano"]))  # type: ignore[call-overload]


def test_operator_breaking_off_a_stream_sends_an_error_event(
    gateway: Gateway, simulator: Simulator, unique: str
) -> None:
    key = gateway.account(unique, topup_cny="1")
    simulator.set("faulty", drop_after_chunks=5, completion_tokens=50)
    try:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        contents: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in client.chat.completions.create(model="faulty-model", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
                contents.extend(c.delta.content or "" for c in chunk.choices)
    finally:
        simulator.reset("faulty")
    assert "broke off" in str(caught.value)
    [event] = wait_for_usage(gateway, unique)
    assert event["outcome"] == "cut_short" and event["estimated"] is True
    assert event["output_tokens"] == count_text("".join(contents))
    # The prompt is charged as counted at admission, plus the delivered tokens, at the quoted prices.
    assert event["cost_nano"] == int(event["input_tokens"]) * 1000 + int(event["output_tokens"]) * 2000  # type: ignore[call-overload]
    assert_settled(gateway, unique, int(event["cost_nano"]))  # type: ignore[call-overload]


def test_operator_reporting_no_usage_is_charged_by_local_count(
    gateway: Gateway, simulator: Simulator, unique: str
) -> None:
    key = gateway.account(unique, topup_cny="1")
    simulator.set("faulty", report_usage=False, completion_tokens=12)
    try:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="faulty-model", messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        simulator.reset("faulty")
    assert reply.usage is not None and (reply.usage.model_extra or {})["estimated"] is True
    [event] = wait_for_usage(gateway, unique)
    assert event["outcome"] == "ok_estimated" and event["output_tokens"] == 12
    assert_settled(gateway, unique, int(event["cost_nano"]))  # type: ignore[call-overload]
