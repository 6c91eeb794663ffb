"""Bad input is a 4xx, always: each input a fuzzer once turned into a 500 is refused with a 400 (or 404, 409)
naming what is wrong, through the real gateway. Dates, amounts and limits are held to the bounds in limits.py."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from suanli.limits import PRICE_VERSION_HORIZON_DAYS, TOKENS_AMOUNT_MAX
from tests.conftest import ADMIN_KEY, Gateway
from tests.stores import ON_POSTGRES

MESSAGES = [{"role": "user", "content": "hello"}]
FAR_DATES = ["9999-12-31T23:59:59", "0001-01-01", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z"]


def call(gateway: Gateway, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}"}, **kwargs)


def refused(response: httpx.Response, status: int = 400, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)
    return error


@pytest.mark.parametrize("at", FAR_DATES)
def test_pricing_and_quotes_at_an_instant_out_of_range_are_refused(gateway: Gateway, unique: str, at: str) -> None:
    key = gateway.account(unique)
    error = refused(call(gateway, key, "GET", "/v1/pricing", params={"at": at}), code="invalid_field")
    assert error["param"] == "at" and "1970" in error["message"]
    quote = call(gateway, key, "POST", "/v1/quote", json={"model": "glm-5", "messages": MESSAGES, "at": at})
    assert refused(quote, code="invalid_field")["param"] == "at"


def test_a_key_expiring_out_of_range_is_refused(gateway: Gateway, unique: str) -> None:
    gateway.account(unique)
    for expires_at in ("9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+01:00"):
        response = gateway.admin("POST", f"/admin/v1/accounts/{unique}/keys", json={"expires_at": expires_at})
        assert refused(response)["param"] == "expires_at"


@pytest.mark.parametrize("tokens", [2**63, 2**64 + 1, TOKENS_AMOUNT_MAX + 1, 0, -1])
def test_a_token_transfer_of_too_many_tokens_is_refused(gateway: Gateway, unique: str, tokens: int) -> None:
    key = gateway.account(unique)
    gateway.account(unique + "-to", topup_cny=None)
    body = {"pack": "pack_nothing", "to": unique + "-to", "tokens": tokens}
    assert refused(call(gateway, key, "POST", "/v1/token-transfers", json=body))["param"] == "tokens"
    assert refused(gateway.admin("POST", "/admin/v1/token-transfers", json=body))["param"] == "tokens"


BUDGETS_OUT_OF_BOUNDS = [
    ("tokens", 2**63),
    ("tokens", TOKENS_AMOUNT_MAX + 1),
    ("cny", "1e30"),
    ("cny", "1e999999"),
    ("cny", "1000000000.000000001"),
    ("cny", "9" * 5000),
]


@pytest.mark.parametrize(("unit", "amount"), BUDGETS_OUT_OF_BOUNDS)
def test_a_budget_beyond_its_bound_is_refused(gateway: Gateway, unique: str, unit: str, amount: object) -> None:
    gateway.account(unique)
    body = {"period": "day", "unit": unit, "amount": amount}
    assert refused(gateway.admin("POST", f"/admin/v1/accounts/{unique}/budgets", json=body))["param"] == "amount"


def test_contract_thresholds_and_product_prices_beyond_their_bound_are_refused(gateway: Gateway, unique: str) -> None:
    gateway.account(unique)
    tiers = [{"above": "0", "percent": 100}, {"above": "1e30", "percent": 90}]
    contract = gateway.admin("PUT", f"/admin/v1/accounts/{unique}/contract", json={"credit_limit": "0", "tiers": tiers})
    assert refused(contract)["param"] == "tiers"
    product = {"id": unique, "kind": "pack", "price": "1e30", "tokens": 10, "valid_days": 1, "models": ["glm-5"]}
    assert refused(gateway.admin("POST", "/admin/v1/products", json=product))["param"] == "price"
    weights = {**product, "price": "1", "weights": {"input": "1e999999"}}
    assert refused(gateway.admin("POST", "/admin/v1/products", json=weights))["param"] == "weights"


@pytest.mark.parametrize("limit", ["²", "٣", "99999999999999999999999", "0", "-1", "1e3", "9" * 5000])
def test_a_usage_limit_that_is_no_small_ascii_number_is_refused(gateway: Gateway, unique: str, limit: str) -> None:
    gateway.account(unique)
    response = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage", params={"limit": limit})
    assert refused(response)["param"] == "limit"


def wallet_nano(gateway: Gateway, account: str) -> int:
    return int(gateway.admin("GET", f"/admin/v1/accounts/{account}").json()["wallet"]["balance_nano"])


def topup(gateway: Gateway, account: str, amount: str, key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Idempotency-Key": key}
    return httpx.post(f"{gateway.url}/admin/v1/accounts/{account}/topup", json={"amount": amount}, headers=headers)


def test_a_topup_key_is_scoped_to_its_account_and_a_reuse_with_another_amount_is_409(
    gateway: Gateway, unique: str
) -> None:
    gateway.account(unique, topup_cny=None)
    gateway.account(unique + "-b", topup_cny=None)
    key = f"topup-{unique}"
    assert topup(gateway, unique, "5", key).status_code == 200
    assert topup(gateway, unique, "5", key).status_code == 200  # a retry: applied once
    assert wallet_nano(gateway, unique) == 5 * 10**9
    error = refused(topup(gateway, unique, "6", key), 409, "idempotency_conflict")
    assert error["param"] == "Idempotency-Key"
    assert topup(gateway, unique + "-b", "7", key).status_code == 200  # another account's own key
    assert (wallet_nano(gateway, unique), wallet_nano(gateway, unique + "-b")) == (5 * 10**9, 7 * 10**9)
    too_long = topup(gateway, unique, "1", "k" * 201)
    assert refused(too_long)["param"] == "Idempotency-Key"


def test_a_fallback_model_of_another_kind_is_refused(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    body = {"model": "glm-5", "messages": MESSAGES, "models": ["deepseek-v3.2", "embed"]}
    error = refused(call(gateway, key, "POST", "/v1/chat/completions", json=body), code="wrong_model_kind")
    assert error["param"] == "models" and "embed" in error["message"]
    quote = call(gateway, key, "POST", "/v1/quote", json=body)
    assert refused(quote, code="wrong_model_kind")["param"] == "models"
    embedding = {"model": "embed", "input": "hello", "models": ["glm-5"]}
    assert refused(call(gateway, key, "POST", "/v1/embeddings", json=embedding), code="wrong_model_kind")
    fine = call(gateway, key, "POST", "/v1/chat/completions", json={**body, "models": ["deepseek-v3.2"]})
    assert fine.status_code == 200, fine.text


def test_a_price_version_beyond_the_horizon_is_refused(gateway: Gateway) -> None:
    beyond = datetime.now(UTC) + timedelta(days=PRICE_VERSION_HORIZON_DAYS + 1)
    for effective in ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-10:00", beyond.isoformat()):
        price = {"effective_from": effective, "price": {"input": "0.1", "output": "0"}}
        response = gateway.admin("POST", "/admin/v1/offers/alpha/embed/prices", json=price)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] in ("effective_from", "price")
    history = gateway.admin("GET", "/admin/v1/offers/alpha/embed/prices").json()["data"]
    assert all(v["effective_from"] < "2100" for v in history)


@pytest.mark.skipif(ON_POSTGRES, reason="a file's mode: the SQLite store's; PostgreSQL keeps its own files")
def test_the_database_files_are_the_owners_alone(gateway: Gateway) -> None:
    database = Path(gateway.database)
    for path in (database, database.with_name(database.name + "-wal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
