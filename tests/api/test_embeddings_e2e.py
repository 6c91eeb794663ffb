"""Embeddings through the gateway: the official openai SDK, metered by input tokens on the same
reservation and settlement path as chat."""

from __future__ import annotations

import httpx
import openai

from suanli.metering import count_text
from tests.conftest import Gateway

TEXTS = ["算力 is computing power.", "A token is the unit of AI work."]


def test_embeddings_are_charged_by_input_tokens(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        raw = client.embeddings.with_raw_response.create(model="embed", input=TEXTS)
        result = raw.parse()
    assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) == 256
    tokens = sum(count_text(t) for t in TEXTS)
    assert result.usage.prompt_tokens == tokens
    assert raw.headers["x-suanli-operator"] == "alpha"  # the cheaper offer
    [event] = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert event["input_tokens"] == tokens and event["output_tokens"] == 0
    assert event["cost_nano"] == tokens * 500  # ¥0.5 per million input tokens
    assert event["reserved_nano"] >= event["cost_nano"]
    wallet = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["balance_nano"] == 10**9 - tokens * 500 and wallet["reserved_nano"] == 0


def test_equal_texts_embed_equally(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        first = client.embeddings.create(model="embed", input="same text").data[0].embedding
        second = client.embeddings.create(model="embed", input=["same text"]).data[0].embedding
    assert first == second


def test_embedding_bad_input_and_wrong_kind(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    headers = {"Authorization": f"Bearer {key}"}
    missing = httpx.post(f"{gateway.url}/v1/embeddings", json={"model": "embed"}, headers=headers)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_field"
    empty = httpx.post(f"{gateway.url}/v1/embeddings", json={"model": "embed", "input": []}, headers=headers)
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
    chat_model = httpx.post(f"{gateway.url}/v1/embeddings", json={"model": "glm-5", "input": "x"}, headers=headers)
    assert chat_model.status_code == 400 and chat_model.json()["error"]["code"] == "wrong_model_kind"
    as_chat = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers=headers,
        json={"model": "embed", "messages": [{"role": "user", "content": "x"}]},
    )
    assert as_chat.status_code == 400 and as_chat.json()["error"]["code"] == "wrong_model_kind"
