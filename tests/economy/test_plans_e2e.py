"""The token economy through the real gateway: products, packs drawn down, the Coding Plan's allowance,
token transfers and budgets, with the official SDKs over a real socket."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from suanli.money import cny_to_nano
from tests.conftest import Gateway

QUESTION = [{"role": "user", "content": "Say something about tokens."}]


def call(
    gateway: Gateway, key: str, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    return httpx.request(
        method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}", **(headers or {})}, **kwargs
    )


def plans(gateway: Gateway, key: str) -> dict[str, Any]:
    response = call(gateway, key, "GET", "/v1/plans")
    response.raise_for_status()
    return dict(response.json())


def wallet(gateway: Gateway, account: str) -> str:
    return str(gateway.admin("GET", f"/admin/v1/accounts/{account}").json()["wallet"]["available"])


def events(gateway: Gateway, account: str) -> list[dict[str, Any]]:
    return list(gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"])


def chat(gateway: Gateway, key: str, model: str = "deepseek-v3.2", max_tokens: int = 20) -> Any:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        return client.chat.completions.with_raw_response.create(
            model=model,
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=max_tokens,
        )


def test_products_are_listed_for_the_callers_tier(gateway: Gateway, unique: str) -> None:
    household = {
        p["id"] for p in call(gateway, gateway.account(unique, "household"), "GET", "/v1/products").json()["data"]
    }
    enterprise = {p["id"] for p in call(gateway, gateway.account(unique + "e"), "GET", "/v1/products").json()["data"]}
    assert "household-pack" in household and "household-pack" not in enterprise
    assert {"pack-small", "coding-lite"} <= enterprise


def test_a_pack_is_bought_and_drawn_down_at_its_weights_before_the_wallet(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="5")
    bought = call(gateway, key, "POST", "/v1/packs", json={"product": "pack-small"})
    assert bought.status_code == 201, bought.text
    assert wallet(gateway, unique) == "4"  # ¥5 - ¥1
    pack = bought.json()["pack"]
    assert (pack["tokens"], pack["available"], pack["state"]) == (3000, 3000, "active")
    served = chat(gateway, key).parse()
    (event,) = events(gateway, unique)
    drawn = -(
        -(event["input_tokens"] * 1000 + event["cached_input_tokens"] * 100 + event["output_tokens"] * 2000) // 1000
    )
    assert served.usage.completion_tokens == event["output_tokens"]
    assert plans(gateway, key)["packs"][0]["available"] == 3000 - drawn
    assert wallet(gateway, unique) == "4"  # the pack paid all of it
    assert event["cost_nano"] > 0  # the operator is paid the call's price all the same


def test_a_call_larger_than_the_pack_takes_the_rest_from_the_wallet(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="5")
    call(gateway, key, "POST", "/v1/packs", json={"product": "pack-small"}).raise_for_status()
    while plans(gateway, key)["packs"][0]["available"] >= 100:  # spend the pack down to under 100 tokens
        chat(gateway, key, max_tokens=30)
    left = plans(gateway, key)["packs"][0]["available"]
    before = wallet(gateway, unique)
    chat(gateway, key, max_tokens=200)  # its most draw is well over what is left
    last = events(gateway, unique)[0]
    pack_leg, wallet_leg = last["funding"]
    assert pack_leg["source"] == "pack" and pack_leg["reserved"] == left
    assert wallet_leg["source"] == "wallet" and 0 < wallet_leg["used"] <= wallet_leg["reserved"]
    assert pack_leg["used"] == left  # the pack went first and was used up; the wallet paid only the rest
    assert plans(gateway, key)["packs"][0]["available"] == 0
    assert cny_to_nano(before) - cny_to_nano(wallet(gateway, unique)) == wallet_leg["used"] < last["cost_nano"]


def test_coding_plan_81st_prompt_gets_429_with_its_reset_time(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="60")
    subscribed = call(gateway, key, "POST", "/v1/subscription", json={"product": "coding-lite"})
    assert subscribed.status_code == 201, subscribed.text
    assert wallet(gateway, unique) == "11"  # ¥60 - ¥49
    with anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0) as client:
        for n in range(80):
            raw = client.messages.with_raw_response.create(model="coder", max_tokens=10, messages=QUESTION)  # type: ignore[arg-type]
            assert raw.headers["anthropic-ratelimit-requests-remaining"] == str(79 - n)
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model="coder", max_tokens=10, messages=QUESTION)  # type: ignore[arg-type]
    headers = refused.value.response.headers
    window = plans(gateway, key)["subscription"]["allowances"][0]
    assert window["window"] == "5h" and window["used"] == 80 and window["remaining"] == 0
    assert window["resets_at_ms"] - window["window_start_ms"] == 5 * 3600 * 1000
    assert 5 * 3600 - 120 <= int(headers["retry-after"]) <= 5 * 3600
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert wallet(gateway, unique) == "11"  # the plan paid for the 80; the 81st never fell through to the wallet
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client,
        pytest.raises(openai.RateLimitError) as openai_refused,
    ):
        client.chat.completions.create(model="glm-5", messages=QUESTION)  # type: ignore[arg-type]
    assert openai_refused.value.code == "allowance_exhausted"


def test_a_spent_allowance_falls_through_when_the_account_opted_in(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="10")
    call(gateway, key, "POST", "/v1/subscription", json={"product": "plan-50"}).raise_for_status()
    gateway.admin(
        "PUT", f"/admin/v1/accounts/{unique}/funding", json={"order": ["subscription", "wallet"], "fallthrough": True}
    ).raise_for_status()
    for _ in range(50):
        chat(gateway, key, model="multi")
    before = wallet(gateway, unique)
    assert chat(gateway, key, model="multi").status_code == 200
    assert wallet(gateway, unique) != before  # the 51st was paid from the wallet


def test_tokens_move_only_to_a_trusted_account_with_an_audit_trail(gateway: Gateway, unique: str) -> None:
    parent = gateway.account(unique, topup_cny="5")
    team = gateway.account(unique + "-team", topup_cny=None)
    pack = call(gateway, parent, "POST", "/v1/packs", json={"product": "pack-late"}).json()["pack"]
    body = {"pack": pack["id"], "to": unique + "-team", "tokens": 40_000, "memo": "Q4 budget"}
    refused = call(gateway, parent, "POST", "/v1/token-transfers", json=body)
    missing = call(gateway, parent, "POST", "/v1/token-transfers", json={**body, "to": unique + "-nobody"})
    # Not trusted and not there are told apart by nothing but the name asked for: no account oracle.
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["error"]["code"] == missing.json()["error"]["code"] == "account_not_found"
    assert refused.json()["error"]["message"].replace("-team", "-nobody") == missing.json()["error"]["message"]
    gateway.admin("POST", f"/admin/v1/accounts/{unique}/trust", json={"account": unique + "-team"}).raise_for_status()
    moved = call(gateway, parent, "POST", "/v1/token-transfers", json=body)
    assert moved.status_code == 201, moved.text
    assert plans(gateway, parent)["packs"][0]["available"] == 60_000
    (received,) = plans(gateway, team)["packs"]
    assert (received["available"], received["expires_at_ms"]) == (40_000, pack["expires_at_ms"])
    assert chat(gateway, team).status_code == 200  # the team spends it with no money in its wallet
    trail = call(gateway, team, "GET", "/v1/token-transfers").json()["data"]
    assert [(t["from_account"], t["tokens"], t["memo"]) for t in trail] == [
        (trail[0]["from_account"], 40_000, "Q4 budget")
    ]
    too_many = call(gateway, parent, "POST", "/v1/token-transfers", json={**body, "tokens": 70_000})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "insufficient_tokens"


def test_buying_needs_the_money_and_the_right_tier(gateway: Gateway, unique: str) -> None:
    poor = gateway.account(unique, topup_cny="0.5")
    refused = call(gateway, poor, "POST", "/v1/packs", json={"product": "pack-small"})
    assert refused.status_code == 402 and plans(gateway, poor)["packs"] == []
    wrong_tier = call(gateway, poor, "POST", "/v1/packs", json={"product": "household-pack"})
    assert wrong_tier.status_code == 403
    unknown = call(gateway, poor, "POST", "/v1/packs", json={"product": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "product_not_found"
    assert call(gateway, poor, "POST", "/v1/subscription", json={"product": "pack-small"}).status_code == 404


def test_a_retried_purchase_with_the_same_idempotency_key_buys_once(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="5")
    headers = {"Idempotency-Key": "order-42"}
    first = call(gateway, key, "POST", "/v1/packs", json={"product": "pack-small"}, headers=headers)
    again = call(gateway, key, "POST", "/v1/packs", json={"product": "pack-small"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["pack"]["id"] == again.json()["pack"]["id"]
    assert wallet(gateway, unique) == "4" and len(plans(gateway, key)["packs"]) == 1  # charged once
    other = call(gateway, key, "POST", "/v1/packs", json={"product": "pack-late"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
