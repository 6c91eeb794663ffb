"""An account serving itself with its key, end to end: its account and wallet, its keys (made, used, revoked;
never another account's), its budgets, its forecast (recomputed here from its own usage list), bad
parameters refused by name; and the admin's lists of top-ups and contracts."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from suanli.money import cny_to_nano, nano_to_cny
from tests.conftest import Gateway

DAY_MS = 86_400_000
MESSAGES = [{"role": "user", "content": "Count some tokens for me."}]


def call(gateway: Gateway, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}"}, **kwargs)


def chat(gateway: Gateway, key: str, model: str = "deepseek-v3.2", *, stream: bool = False) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20) as client:
        if stream:
            assert list(client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=20, stream=True))  # type: ignore[arg-type]
        else:
            client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=20)  # type: ignore[arg-type]


def test_the_account_view_names_the_account_its_wallet_and_the_key(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="3")
    view = call(gateway, key, "GET", "/v1/account").json()
    admin_view = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()
    assert view["account"] == admin_view["account"] and view["wallet"] == admin_view["wallet"]
    assert view["wallet"]["available"] == "3" and view["wallet"]["available_nano"] == 3 * 10**9
    assert view["key"]["prefix"] == key[:10] and set(view["key"]) == {"id", "name", "prefix"}


def test_a_key_made_with_a_key_answers_calls_until_it_is_revoked(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="3")
    made = call(gateway, key, "POST", "/v1/keys", json={"name": "ci", "models": ["deepseek-v3.2"]})
    assert made.status_code == 201
    new = made.json()
    assert new["key"].startswith("sk-") and new["name"] == "ci" and new["models"] == ["deepseek-v3.2"]
    chat(gateway, new["key"])
    chat(gateway, new["key"], stream=True)
    listed = call(gateway, key, "GET", "/v1/keys").json()
    assert listed["object"] == "list" and new["id"] in [k["id"] for k in listed["data"]]
    assert all("key" not in k and "hash" not in k for k in listed["data"])  # never a secret
    revoked = call(gateway, key, "POST", f"/v1/keys/{new['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at_ms"] is not None
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(gateway, new["key"])
    assert refused.value.code == "key_revoked"
    with (
        anthropic.Anthropic(base_url=gateway.url, api_key=new["key"], max_retries=0) as c,
        pytest.raises(anthropic.AuthenticationError),
    ):
        c.messages.create(model="deepseek-v3.2", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    chat(gateway, key)  # the key that revoked it still works


def test_another_accounts_key_is_not_found_and_stays_usable(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    other_key = gateway.account(f"{unique}-other", topup_cny="1")
    other_id = call(gateway, other_key, "GET", "/v1/account").json()["key"]["id"]
    refused = call(gateway, key, "POST", f"/v1/keys/{other_id}/revoke")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "key_not_found"
    assert call(gateway, key, "POST", "/v1/keys/key_nonexistent/revoke").json()["error"]["code"] == "key_not_found"
    keys = gateway.admin("GET", f"/admin/v1/accounts/{unique}-other/keys").json()["data"]
    assert [k["revoked_at_ms"] for k in keys] == [None]
    chat(gateway, other_key)


def test_a_key_limited_to_models_makes_keys_no_wider(gateway: Gateway, unique: str) -> None:
    gateway.account(unique, topup_cny="1")
    limited = gateway.admin("POST", f"/admin/v1/accounts/{unique}/keys", json={"models": ["glm-5"]}).json()["key"]
    wider = call(gateway, limited, "POST", "/v1/keys", json={"models": ["glm-5", "deepseek-v3.2"]})
    assert wider.status_code == 400 and wider.json()["error"]["param"] == "models"
    inherited = call(gateway, limited, "POST", "/v1/keys", json={})
    assert inherited.status_code == 201 and inherited.json()["models"] == ["glm-5"]


def test_budgets_set_and_removed_with_the_key_limit_calls(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="2")
    made = call(gateway, key, "POST", "/v1/budgets", json={"period": "day", "unit": "tokens", "amount": 10})
    assert made.status_code == 201
    budget = made.json()
    assert budget["unit"] == "tokens" and budget["key"] is None
    plans = call(gateway, key, "GET", "/v1/plans").json()
    assert [b["id"] for b in plans["budgets"]] == [budget["id"]]
    with pytest.raises(openai.RateLimitError) as refused:  # a call's token bound is far over 10 tokens
        chat(gateway, key)
    assert refused.value.code == "budget_exhausted"
    other = gateway.account(f"{unique}-other", topup_cny="1")
    foreign = call(gateway, other, "DELETE", f"/v1/budgets/{budget['id']}")
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "budget_not_found"
    removed = call(gateway, key, "DELETE", f"/v1/budgets/{budget['id']}")
    assert removed.json() == {"id": budget["id"], "removed": True}
    assert call(gateway, key, "GET", "/v1/plans").json()["budgets"] == []
    chat(gateway, key)


def days_text(remaining: int, per_day: int) -> str:
    tenths = remaining * 10 // per_day
    return f"{tenths // 10}.{tenths % 10}"


def test_the_forecast_is_the_usage_lists_own_arithmetic(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="4")
    pack = gateway.admin("POST", f"/admin/v1/accounts/{unique}/packs", json={"product": "pack-late"}).json()["pack"]
    cny_budget = call(gateway, key, "POST", "/v1/budgets", json={"period": "month", "unit": "cny", "amount": "3"})
    for model, stream in (("deepseek-v3.2", False), ("glm-5", True), ("glm-5", False), ("deepseek-v3.2", True)):
        chat(gateway, key, model, stream=stream)
    events = call(gateway, key, "GET", "/v1/usage", params={"limit": 100}).json()["data"]
    forecast = call(gateway, key, "GET", "/v1/forecast").json()
    now = forecast["at_ms"]
    recent = [e for e in events if e["created_at_ms"] >= now - DAY_MS]
    cost, tokens = sum(e["cost_nano"] for e in recent), sum(e["input_tokens"] + e["output_tokens"] for e in recent)
    assert forecast["rates"]["1d"] == {"calls": 4, "tokens": tokens, "cost": nano_to_cny(cost), "cost_nano": cost}
    week = forecast["rates"]["7d"]
    assert week == {"calls": 4 // 7, "tokens": tokens // 7, "cost": nano_to_cny(cost // 7), "cost_nano": cost // 7}
    # The wallet: what it may still spend, at the week's rate.
    wallet = call(gateway, key, "GET", "/v1/account").json()["wallet"]
    balance = forecast["balance"]
    assert balance["available_nano"] == wallet["available_nano"] == balance["spendable_nano"]
    assert balance["days"] == days_text(wallet["available_nano"], cost // 7)
    assert balance["runs_out_at_ms"] == now + wallet["available_nano"] * DAY_MS // (cost // 7)
    # The pack: the tokens it gave (its legs in the events' funding), at the week's rate.
    drawn = sum(leg["used"] for e in events for leg in e["funding"] or [] if leg.get("account") == f"pack:{pack['id']}")
    assert drawn > 0
    [shown] = forecast["packs"]
    available = call(gateway, key, "GET", "/v1/plans").json()["packs"][0]["available"]
    assert shown["pack"] == pack["id"] and shown["available_tokens"] == available == pack["tokens"] - drawn
    assert shown["tokens_per_day"] == drawn // 7 and shown["days"] == days_text(available, drawn // 7)
    assert shown["runs_out_at_ms"] == now + available * DAY_MS // (drawn // 7)
    # The budget counts the account's cost: what is left of it, at the week's rate.
    [budget] = forecast["budgets"]
    left = cny_to_nano("3") - cost
    assert budget["budget"] == cny_budget.json()["id"] and budget["remaining_units"] == left
    assert budget["remaining"] == nano_to_cny(left) and budget["per_day_units"] == cost // 7
    assert budget["days"] == days_text(left, cost // 7)


def test_a_forecast_without_spending_runs_out_never(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    forecast = call(gateway, key, "GET", "/v1/forecast").json()
    assert forecast["object"] == "forecast" and forecast["timezone"] == "Asia/Shanghai"
    assert forecast["rates"]["7d"]["cost_nano"] == 0
    assert (forecast["balance"]["days"], forecast["balance"]["runs_out_at"]) == (None, None)
    assert forecast["packs"] == [] and forecast["budgets"] == []


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/usage", {"limit": "0"}, "limit"),
        ("/v1/usage", {"limit": "10001"}, "limit"),
        ("/v1/usage", {"limit": "ten"}, "limit"),
        ("/v1/usage", {"format": "xml"}, "format"),
        ("/v1/usage", {"from": "yesterday"}, "from"),
        ("/v1/usage", {"to": "2026-13-45"}, "to"),
        ("/v1/usage", {"before_ms": "-5"}, "before_ms"),
        ("/v1/usage", {"before_id": "req_x"}, "before_id"),
        ("/v1/usage", {"tz": "Mars/Olympus"}, "tz"),
        ("/v1/usage", {"model": "m" * 201}, "model"),
        ("/v1/usage/summary", {"period": "week"}, "period"),
        ("/v1/usage/summary", {"by": "tier"}, "by"),  # the admin's grouping, not a customer's
        ("/v1/usage/summary", {"tz": "../../etc/passwd"}, "tz"),
        ("/v1/usage/summary", {"tz": "Asia/Nowhere"}, "tz"),
        ("/v1/usage/summary", {"from": "2026-01-01T00:00:00", "to": "2025-01-01T00:00:00"}, "to"),
        ("/v1/usage/summary", {"period": "hour", "from": "2026-01-01", "to": "2026-03-01"}, "from"),
        ("/v1/usage/summary", {"period": "day", "from": "2024-01-01", "to": "2026-01-01"}, "from"),
    ],
)
def test_bad_parameters_are_refused_by_name(gateway: Gateway, path: str, params: dict[str, str], param: str) -> None:
    key = gateway.account(f"bad-{abs(hash((path, orjson.dumps(params))))}", topup_cny=None)
    response = call(gateway, key, "GET", path, params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("invalid_field", param, "invalid_request_error")


def test_the_admins_summary_and_lists_need_the_admin_key(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    for path in ("/admin/v1/usage/summary", "/admin/v1/topups", "/admin/v1/contracts"):
        assert call(gateway, key, "GET", path).status_code == 401
    bad = gateway.admin("GET", "/admin/v1/usage/summary", params={"by": "key"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "by"


def test_the_admin_lists_top_ups_newest_first_and_every_contract(gateway: Gateway, unique: str) -> None:
    gateway.account(unique, topup_cny="7")
    gateway.admin("POST", f"/admin/v1/accounts/{unique}/topup", json={"amount": "0.5"})
    topups = gateway.admin("GET", "/admin/v1/topups", params={"limit": 2}).json()["data"]
    assert [(t["account_name"], t["amount"], t["amount_nano"]) for t in topups] == [
        (unique, "0.5", 5 * 10**8),
        (unique, "7", 7 * 10**9),
    ]
    assert topups[0]["at_ms"] >= topups[1]["at_ms"] and topups[0]["account"].startswith("acct_")
    contract = {"credit_limit": "100", "tiers": [{"above": "0", "percent": 100}, {"above": "50", "percent": 90}]}
    assert gateway.admin("PUT", f"/admin/v1/accounts/{unique}/contract", json=contract).status_code == 200
    contracts = gateway.admin("GET", "/admin/v1/contracts").json()["data"]
    [mine] = [c for c in contracts if c["account_name"] == unique]
    assert mine["credit_limit"] == "100" and mine["tiers"] == contract["tiers"]
    # On a contract the wallet may go below zero down to the credit limit: the forecast counts that room.
    key = gateway.admin("POST", f"/admin/v1/accounts/{unique}/keys", json={}).json()["key"]
    balance = call(gateway, key, "GET", "/v1/forecast").json()["balance"]
    assert balance["spendable_nano"] == balance["available_nano"] + cny_to_nano("100")


def test_the_admins_account_list_carries_each_wallet_as_the_account_view_does(gateway: Gateway, unique: str) -> None:
    gateway.account(unique, topup_cny="3.5")
    listed = {a["name"]: a for a in gateway.admin("GET", "/admin/v1/accounts").json()["data"]}
    view = gateway.admin("GET", f"/admin/v1/accounts/{unique}").json()
    assert listed[unique]["wallet"] == view["wallet"] and listed[unique]["wallet"]["balance"] == "3.5"
    assert {k: v for k, v in listed[unique].items() if k != "wallet"} == view["account"]
