"""Image generation through the gateway: the official openai SDK, charged in image tokens at the rate
the offer declares (size × quality → tokens), on the same reservation and settlement path."""

from __future__ import annotations

import base64

import httpx
import openai

from suanli.metering import count_text
from tests.conftest import Gateway

PROMPT = "A lighthouse made of tokens"


def test_images_are_charged_at_the_declared_rate(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        result = client.images.generate(model="painter", prompt=PROMPT, n=2, size="1024x1536", quality="high")
    assert len(result.data or []) == 2
    assert base64.b64decode((result.data or [])[0].b64_json or "").startswith(b"\x89PNG")
    [event] = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    prompt_tokens = count_text(PROMPT)
    assert event["output_tokens"] == 2 * 6240 and event["input_tokens"] == prompt_tokens
    assert event["cost_nano"] == prompt_tokens * 10_000 + 2 * 6240 * 40_000  # ¥10 / ¥40 per million tokens
    wallet = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["balance_nano"] == 10**9 - event["cost_nano"] and wallet["reserved_nano"] == 0


def test_unoffered_size_and_bad_input(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{gateway.url}/v1/images/generations"
    odd = httpx.post(url, headers=headers, json={"model": "painter", "prompt": PROMPT, "size": "7x7"})
    assert odd.status_code == 400 and odd.json()["error"]["code"] == "unsupported_image_options"
    many = httpx.post(url, headers=headers, json={"model": "painter", "prompt": PROMPT, "n": 11})
    assert many.status_code == 400 and many.json()["error"]["param"] == "n"
    empty = httpx.post(url, headers=headers, json={"model": "painter"})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "prompt"
    wrong = httpx.post(url, headers=headers, json={"model": "glm-5", "prompt": PROMPT})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "wrong_model_kind"
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert events == []  # refused requests cost nothing and record nothing
