"""``window.used`` and ``pack.used`` through the real gateway (docs/statements.md, *Alerts and webhooks*): a
Coding Plan window and a pack drawn down by real calls with the openai SDK make exactly one event at 80 % and
one at 100 %, each with the documented id and data, and nothing before its level or after it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

from tests.conftest import Gateway

QUESTION = [{"role": "user", "content": "Say something about windows."}]
WAIT_S = 10.0  # the delivery loop fixes an event's body within a poll (WEBHOOK_POLL_S, 1 s)


def _used_alerts(api: httpx.Client, kind: str, expected: set[str]) -> dict[str, dict[str, Any]]:
    """The account's ``kind`` events by id, once they are exactly ``expected`` and their bodies are fixed."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = api.get("/v1/alerts")
        response.raise_for_status()
        events = [e for e in response.json()["data"] if e["type"] == kind]
        ids = [e["id"] for e in events]
        if sorted(ids) == sorted(expected) and all(e["prepared"] for e in events):
            return {e["id"]: e for e in events}
        assert set(ids) <= expected and len(ids) == len(set(ids)), ids  # never one too many, nor early
        assert time.monotonic() < deadline, f"{kind}: {ids}, expected {sorted(expected)}"
        time.sleep(0.1)


def _account_id(gateway: Gateway, name: str) -> str:
    return str(gateway.admin("GET", f"/admin/v1/accounts/{name}").json()["account"]["id"])


def _clients(gateway: Gateway, name: str) -> tuple[httpx.Client, openai.OpenAI]:
    key = gateway.account(name, topup_cny="10")
    api = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return api, openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def _alerts_on_and_buy(api: httpx.Client, path: str, product: str) -> None:
    assert api.put("/v1/alerts/settings", json={}).json()["enabled"] is True  # the defaults: on for both kinds
    bought = api.post(path, json={"product": product})
    assert bought.status_code == 201, bought.text


def test_a_coding_plan_window_alerts_once_at_80_and_once_at_100_percent(gateway: Gateway, unique: str) -> None:
    api, sdk = _clients(gateway, unique)
    with api, sdk:
        _alerts_on_and_buy(api, "/v1/subscription", "plan-50")  # 50 requests a 5 h window
        expected: set[str] = set()
        for n in range(1, 51):
            sdk.chat.completions.create(model="multi", messages=QUESTION, max_tokens=5)  # type: ignore[arg-type]
            if n == 1:  # the window starts at its first request
                sub = api.get("/v1/plans").json()["subscription"]
                start_ms = sub["allowances"][0]["window_start_ms"]
                subject = f"allow:{sub['id']}:5h:requests:{start_ms}"
            if n in (39, 40, 49, 50):  # just below and at each level (ceil(80 % of 50) = 40)
                expected |= {f"evt:window.used:{subject}:50:{p}" for p in (80, 100) if n >= p // 2}
                _used_alerts(api, "window.used", expected)
        refused = api.post("/v1/chat/completions", json={"model": "multi", "messages": QUESTION})
        assert refused.status_code == 429  # the window is spent; a refusal uses nothing
        events = _used_alerts(api, "window.used", expected)
    for percent, used in ((80, 40), (100, 50)):
        event = events[f"evt:window.used:{subject}:50:{percent}"]
        assert event["account"] == _account_id(gateway, unique)
        assert event["data"] == {
            "subscription": sub["id"],
            "window": "5h",
            "unit": "requests",
            "window_start_ms": start_ms,
            "percent": percent,
            "used": used,
            "granted": 50,
        }


def test_a_pack_alerts_once_at_80_and_once_at_100_percent_used(gateway: Gateway, unique: str) -> None:
    api, sdk = _clients(gateway, unique)
    with api, sdk:
        _alerts_on_and_buy(api, "/v1/packs", "pack-small")  # 3,000 tokens
        pack = api.get("/v1/plans").json()["packs"][0]["id"]
        expected: set[str] = set()
        used_at: dict[int, int] = {}
        used = 0
        while used < 3000:  # the last call takes what is left and the rest from the wallet
            sdk.chat.completions.create(model="deepseek-v3.2", messages=QUESTION, max_tokens=200)  # type: ignore[arg-type]
            before, used = used, 3000 - api.get("/v1/plans").json()["packs"][0]["available"]
            for percent, level in ((80, 2400), (100, 3000)):
                if before < level <= used:
                    used_at[percent] = used
                    expected.add(f"evt:pack.used:pack:{pack}:3000:{percent}")
            events = _used_alerts(api, "pack.used", expected)
    assert set(used_at) == {80, 100}
    for percent, used in used_at.items():
        event = events[f"evt:pack.used:pack:{pack}:3000:{percent}"]
        assert event["account"] == _account_id(gateway, unique)
        assert event["data"] == {"pack": pack, "unit": "tokens", "percent": percent, "used": used, "granted": 3000}
