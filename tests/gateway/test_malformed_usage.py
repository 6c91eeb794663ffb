"""An operator's malformed usage report (a negative count, a word, an absurd number) is charged as the local
estimate, never as zero: through OpenAI's and Anthropic's protocols, streamed or not, passed through or
translated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, Simulator

QUESTION = [{"role": "user", "content": "Say something about the weather in a few words."}]
MALFORMED = [{"prompt_tokens": -50}, {"completion_tokens": "many"}, {"prompt_tokens": 10**30}]
MALFORMED_ANTHROPIC = [{"input_tokens": -50}, {"output_tokens": "many"}]


@pytest.fixture
def malformed(simulator: Simulator) -> Iterator[Simulator]:
    try:
        yield simulator
    finally:
        simulator.reset("alpha")
        simulator.reset("gamma")


def post(gateway: Gateway, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{gateway.url}{path}", json=body, headers=headers, timeout=30)


def charged_estimate(gateway: Gateway, account: str) -> dict[str, Any]:
    [event] = gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"]
    assert event["estimated"] is True and event["outcome"] == "ok_estimated", event
    assert event["input_tokens"] > 0 and event["output_tokens"] > 0 and event["cost_nano"] > 0
    return dict(event)


@pytest.mark.parametrize("override", MALFORMED)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_operator(gateway: Gateway, malformed: Simulator, unique: str, override: Any, stream: bool) -> None:
    malformed.set("alpha", usage_override=override)
    key = gateway.account(unique)
    body = {
        "model": "deepseek-v3.2",
        "messages": QUESTION,
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
    }
    response = post(gateway, key, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    event = charged_estimate(gateway, unique)
    if not stream:
        usage = response.json()["usage"]
        assert usage["estimated"] is True and usage["prompt_tokens"] == event["input_tokens"]


@pytest.mark.parametrize("override", MALFORMED)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_operator_to_an_anthropic_client(
    gateway: Gateway, malformed: Simulator, unique: str, override: Any, stream: bool
) -> None:
    malformed.set("alpha", usage_override=override)
    key = gateway.account(unique)
    body = {"model": "deepseek-v3.2", "messages": QUESTION, "max_tokens": 50, "stream": stream}
    response = post(gateway, key, "/v1/messages", body)
    assert response.status_code == 200, response.text
    charged_estimate(gateway, unique)


@pytest.mark.parametrize("override", MALFORMED_ANTHROPIC)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_operator(gateway: Gateway, malformed: Simulator, unique: str, override: Any, stream: bool) -> None:
    malformed.set("gamma", usage_override=override)
    key = gateway.account(unique)
    body = {"model": "anthropic-only", "messages": QUESTION, "max_tokens": 50, "stream": stream}
    response = post(gateway, key, "/v1/messages", body)
    assert response.status_code == 200, response.text
    charged_estimate(gateway, unique)
    if not stream:
        assert response.json()["usage"]["estimated"] is True
