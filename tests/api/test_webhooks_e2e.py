"""Alerts delivered by webhooks, end to end: a real gateway, real calls, and a real receiver on 127.0.0.1 that
first fails, then times out, then accepts. Each alert reaches it exactly once after de-duplication by id,
signed as docs/statements.md says; a gateway killed with SIGKILL between the ledger movement and the delivery
loses nothing (the next one on the same database delivers it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import Gateway, Simulator, start_gateway, stop
from tests.webhook_receiver import Receiver, receiving, verify

FAST = {
    "SUANLI_WEBHOOK_RETRY_S": "0.3,0.3,0.3,0.3,0.3,0.3",
    "SUANLI_WEBHOOK_TIMEOUT_S": "1",
    "SUANLI_WEBHOOK_POLL_S": "0.1",
}
MESSAGES = [{"role": "user", "content": "Say something about ledgers."}]
WAIT_S = 20.0


@dataclass
class ScriptedReceiver(Receiver):
    """Answers 500 to its first request, sleeps past the gateway's timeout on its second, then accepts."""

    accepted: dict[str, bytes] = field(default_factory=dict)  # event id -> body, de-duplicated

    def answer(self, event_id: str, signature: str, body: bytes, sender_port: int = 0) -> int:
        n = self.record(event_id, signature, body)
        if n == 1:
            return 500
        if n == 2:
            time.sleep(1.5)  # past SUANLI_WEBHOOK_TIMEOUT_S: the gateway gives up and tries again later
        with self.lock:
            self.accepted.setdefault(event_id, body)
        return 200


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    with receiving(ScriptedReceiver()) as state:
        yield state


def _client(gw: Gateway, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def _alerts(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/v1/alerts")
    response.raise_for_status()
    return list(response.json()["data"])


def _wait_delivered(api: httpx.Client) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        events = _alerts(api)
        if events and all(d["state"] == "delivered" for e in events for d in e["deliveries"]):
            return events
        time.sleep(0.2)
    raise AssertionError(f"not all delivered: {_alerts(api)}")


def _register(api: httpx.Client, url: str) -> str:
    made = api.post("/v1/webhooks", json={"url": url})
    assert made.status_code == 201, made.text
    assert api.put("/v1/alerts/settings", json={"balance_below": "10"}).status_code == 200
    return str(made.json()["secret"])


def test_each_alert_arrives_once_signed_through_a_failure_and_a_timeout(
    simulator: Simulator, tmp_path: Path, receiver: ScriptedReceiver
) -> None:
    gw = start_gateway(tmp_path, simulator, env=FAST)
    key = gw.account("hooked", topup_cny="10")
    with _client(gw, key) as api, openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0) as sdk:
        secret = _register(api, receiver.url)
        assert api.post("/v1/budgets", json={"period": "day", "unit": "tokens", "amount": 120}).status_code == 201
        for _ in range(12):  # until the budget refuses: 50 %, 80 % (and maybe 100 %) crossed on the way
            try:
                sdk.chat.completions.create(model="deepseek-v3.2", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
            except openai.RateLimitError:
                break
        events = _wait_delivered(api)
    stop(gw.process)
    types = {e["type"] for e in events}
    assert {"balance.below", "budget.used"} <= types
    assert set(receiver.accepted) == {e["id"] for e in events}  # each once, after de-duplication
    assert len(receiver.requests) > len(receiver.accepted)  # the failure and the timeout were retried
    for event_id, signature, body in receiver.requests:
        assert verify(secret, signature, body)
        assert orjson.loads(body)["id"] == event_id
    balance = next(e for e in events if e["type"] == "balance.below")
    sent = {k: v for k, v in balance.items() if k not in ("prepared", "deliveries")}
    assert orjson.loads(receiver.accepted[balance["id"]]) == sent
    assert set(balance["data"]["forecast"]) == {"days", "runs_out_at", "runs_out_at_ms"}
    assert not verify("whsec_wrong", receiver.requests[0][1], receiver.requests[0][2])


def test_a_gateway_killed_before_delivery_loses_no_alert(
    simulator: Simulator, tmp_path: Path, receiver: ScriptedReceiver
) -> None:
    slow = {**FAST, "SUANLI_WEBHOOK_POLL_S": "3600"}  # its loop runs once, at start: nothing is sent after
    first = start_gateway(tmp_path, simulator, env=slow)
    try:
        key = first.account("killed", topup_cny="10")
        with _client(first, key) as api, openai.OpenAI(base_url=f"{first.url}/v1", api_key=key, max_retries=0) as sdk:
            secret = _register(api, receiver.url)
            sdk.chat.completions.create(model="deepseek-v3.2", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
            written = _alerts(api)
        assert [e["type"] for e in written] == ["balance.below"]
        assert written[0]["deliveries"][0]["state"] == "pending"
    finally:
        first.process.kill()  # SIGKILL: no shutdown of any kind
        first.process.wait()
    assert receiver.requests == []
    second = start_gateway(tmp_path, simulator, database=first.database, env=FAST)
    try:
        with _client(second, key) as api:
            events = _wait_delivered(api)
    finally:
        stop(second.process)
    assert set(receiver.accepted) == {written[0]["id"]} == {e["id"] for e in events}
    assert all(verify(secret, signature, body) for _, signature, body in receiver.requests)


def test_a_bad_url_and_another_accounts_webhook_are_refused(gateway: Gateway, unique: str) -> None:
    with _client(gateway, gateway.account(unique)) as api, _client(gateway, gateway.account(unique + "-o")) as other:
        _check_refusals(gateway, unique, api, other)


def _check_refusals(gateway: Gateway, unique: str, api: httpx.Client, other: httpx.Client) -> None:
    for url in ("ftp://example.com/x", "http://", "not a url", "http://user:pw@example.com/", 7):
        answer = api.post("/v1/webhooks", json={"url": url})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_url", url
    bad_type = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["nope"]})
    assert bad_type.json()["error"]["code"] == "unknown_event_type"
    made = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["budget.used"]}).json()
    assert made["secret"].startswith("whsec_") and made["events"] == ["budget.used"]
    assert "secret" not in api.get("/v1/webhooks").json()["data"][0]
    assert other.delete(f"/v1/webhooks/{made['id']}").json()["error"]["code"] == "webhook_not_found"
    listed = gateway.admin("GET", f"/admin/v1/accounts/{unique}/webhooks").json()["data"]
    assert [w["id"] for w in listed] == [made["id"]]
    assert api.delete(f"/v1/webhooks/{made['id']}").json()["deleted"] is True
    assert api.get("/v1/webhooks").json()["data"] == []
    assert api.put("/v1/alerts/settings", json={"pack_expiry_days": 0}).status_code == 400
    assert api.get("/v1/alerts/settings").json()["pack_expiry_days"] == 3
