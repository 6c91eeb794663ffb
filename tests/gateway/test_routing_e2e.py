"""Routing preferences and failover through the gateway, over real sockets (the logic itself is
unit-tested in test_routing.py and test_health.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from suanli.cli import main
from tests.conftest import ADMIN_KEY, Gateway, Simulator

MESSAGES = [{"role": "user", "content": "Route me."}]
WARM_UP_ROUNDS = 12  # enough for the gateway's moving averages to forget earlier tests


def call(gateway: Gateway, key: str, **body: Any) -> httpx.Response:
    payload = {"messages": MESSAGES, "max_tokens": 8, **body}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=payload, timeout=30, headers={"Authorization": f"Bearer {key}"}
    )


def served_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == response.headers["x-suanli-operator"]
    return response.headers["x-suanli-operator"]


def test_default_is_the_cheapest_operator(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    assert served_by(call(gateway, key, model="multi")) == "alpha"


def test_order_puts_an_operator_first(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    assert served_by(call(gateway, key, model="multi", provider={"order": ["beta", "alpha"]})) == "beta"


def test_only_and_ignore(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    assert served_by(call(gateway, key, model="multi", provider={"only": ["beta"]})) == "beta"
    assert served_by(call(gateway, key, model="multi", provider={"ignore": ["alpha"]})) == "beta"
    response = call(gateway, key, model="multi", provider={"only": ["nobody"]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_operator_allowed"


def test_max_price(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    within = call(gateway, key, model="multi", provider={"max_price": {"prompt": 1.5, "completion": 3}})
    assert served_by(within) == "alpha"
    response = call(gateway, key, model="multi", provider={"max_price": {"prompt": 0.5}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "no_offer_within_max_price" and "alpha" in error["message"]


def test_sort_by_latency_prefers_the_faster_operator(gateway: Gateway, simulator: Simulator, unique: str) -> None:
    key = gateway.account(unique)
    simulator.set("alpha", ttft_ms=40)
    try:
        for operator in ("alpha", "beta") * WARM_UP_ROUNDS:  # let the gateway learn both operators' latency
            served_by(call(gateway, key, model="multi", provider={"only": [operator]}))
        assert served_by(call(gateway, key, model="multi", provider={"sort": "latency"})) == "beta"
        assert served_by(call(gateway, key, model="multi", provider={"sort": "price"})) == "alpha"
    finally:
        simulator.reset("alpha")


def test_sort_by_throughput_prefers_the_faster_stream(gateway: Gateway, simulator: Simulator, unique: str) -> None:
    key = gateway.account(unique)
    simulator.set("beta", tokens_per_s=200, completion_tokens=8)
    try:
        for operator in ("alpha", "beta") * WARM_UP_ROUNDS:
            served_by(call(gateway, key, model="multi", provider={"only": [operator]}))
        assert served_by(call(gateway, key, model="multi", provider={"sort": "throughput"})) == "alpha"
    finally:
        simulator.reset("beta")


def test_failover_to_the_next_operator_before_the_first_byte(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    response = call(gateway, key, model="fallback-test", provider={"order": ["nowhere"]})
    assert served_by(response) == "alpha"
    assert int(response.headers["x-suanli-attempts"]) in (1, 2)  # 1 once nowhere's breaker has opened
    usage = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert len(usage) == 1 and usage[0]["operator"] == "alpha"


def test_allow_fallbacks_false_stays_on_the_chosen_operator(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    response = call(gateway, key, model="fallback-test", provider={"order": ["nowhere"], "allow_fallbacks": False})
    assert response.status_code in (502, 503)
    assert response.json()["error"]["code"] in ("upstream_unreachable", "no_healthy_offer")
    wallet = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["balance_nano"] == 10**9 and wallet["reserved_nano"] == 0


def test_models_fallback_list(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    response = call(gateway, key, model="dead-model", models=["dead-model", "glm-5"])
    assert served_by(response) == "beta"
    usage = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert usage[0]["model"] == "glm-5"


def test_retry_after_keeps_calls_away_until_it_passes(gateway: Gateway, simulator: Simulator, unique: str) -> None:
    key = gateway.account(unique)
    simulator.set("faulty", error_rate_percent=100, error_status=429)  # answers with Retry-After: 1
    try:
        first = call(gateway, key, model="retry-test")
        assert served_by(first) == "beta" and first.headers["x-suanli-attempts"] == "2"
        second = call(gateway, key, model="retry-test")
        assert served_by(second) == "beta" and second.headers["x-suanli-attempts"] == "1"
        simulator.reset("faulty")
        time.sleep(1.1)
        assert served_by(call(gateway, key, model="retry-test")) == "faulty"
    finally:
        simulator.reset("faulty")


def test_operators_endpoint_and_metrics(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    served_by(call(gateway, key, model="multi"))
    operators = gateway.admin("GET", "/admin/v1/operators").json()["data"]
    alpha = next(op for op in operators if op["operator"] == "alpha")
    offer = next(o for o in alpha["offers"] if o["model"] == "multi")
    assert offer["state"] == "closed" and offer["latency_p50_ms"] is not None
    text = gateway.admin("GET", "/metrics").text
    assert 'suanli_requests_total{model="multi",operator="alpha",outcome="ok"}' in text
    assert "suanli_breaker_state{" in text and "suanli_time_to_first_token_seconds_bucket" in text
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401


def test_account_default_routing_and_request_override(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    bad = gateway.admin("PUT", f"/admin/v1/accounts/{unique}/routing", json={"provider": {"sort": "fastest"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "provider.sort"
    set_ = gateway.admin("PUT", f"/admin/v1/accounts/{unique}/routing", json={"provider": {"order": ["beta"]}})
    assert set_.status_code == 200 and set_.json()["routing"] == {"order": ["beta"]}
    assert served_by(call(gateway, key, model="multi")) == "beta"  # the account's default
    assert served_by(call(gateway, key, model="multi", provider={"order": ["alpha"]})) == "alpha"  # request wins
    cleared = gateway.admin("PUT", f"/admin/v1/accounts/{unique}/routing", json={"provider": None})
    assert cleared.json()["routing"] is None
    assert served_by(call(gateway, key, model="multi")) == "alpha"


def test_operators_command_shows_health(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["operators", "--url", gateway.url, "--admin-key", ADMIN_KEY, "--json"])
    data = json.loads(capsys.readouterr().out)["data"]
    assert status == 0 and {op["operator"] for op in data} >= {"alpha", "beta", "faulty", "nowhere"}
    assert main(["operators", "--url", gateway.url, "--admin-key", "sk-wrong"]) == 1
    assert "HTTP 401" in capsys.readouterr().err
