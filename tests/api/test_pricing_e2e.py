"""The price list and quotes end to end: ``GET /v1/pricing`` and ``POST /v1/quote`` through the official
openai SDK over a real socket, a quote that is the reservation a real call makes, long-context prices on
the usage event, and a call locked at 11:59:59.999 Beijing time that settles at its peak price after noon."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from suanli.catalog import load_catalog
from suanli.gateway import accounts as ops
from suanli.gateway import lifecycle
from suanli.gateway.chat import chat_completion
from suanli.gateway.platform import Platform, Settings
from suanli.money import cny_to_nano
from suanli.pricing.calendar import epoch_ms
from suanli.store.accounts import find_account
from suanli.store.db import open_database, run_in_transaction
from tests.conftest import Gateway, Simulator, start_gateway, stop
from tests.pricing.catalogs import DEEPSEEK_OFFER_PRICING

CATALOG = (
    """
[operators.alpha]
base_url = "${SIM_URL}/alpha/v1"
api_key_env = "ALPHA_KEY"
[operators.beta]
base_url = "${SIM_URL}/beta/v1"

[models."deepseek-v3.2"]
[models."glm-5"]
[models."household-only"]
[models.embed]
kind = "embedding"

[[offers]]
operator = "alpha"
model = "deepseek-v3.2"
"""
    + DEEPSEEK_OFFER_PRICING
    + """
[[offers]]
operator = "beta"
model = "deepseek-v3.2"
context_window = 128000
max_output_tokens = 8192
price = { input = "2.5", output = "4" }

[[offers]]
operator = "beta"
model = "glm-5"
context_window = 200000
max_output_tokens = 16384
price = { input = "4", cached_input = "1", output = "18" }
[offers.pricing]
long_context = [{ above_input_tokens = 32000, input = "6", cached_input = "1.5", output = "24" }]
batch_percent = 50

[[offers]]
operator = "alpha"
model = "household-only"
tiers = ["household"]
context_window = 1000
max_output_tokens = 100
price = { input = "1", output = "2" }

[[offers]]
operator = "alpha"
model = "embed"
context_window = 8192
max_output_tokens = 1
price = { input = "0.5", output = "0" }

[calendar]
timezone = "Asia/Shanghai"
holidays = [2026-10-01]
"""
)
MESSAGES = [{"role": "user", "content": "What does an hour of computing power cost?"}]
BEFORE_NOON = "2026-06-10T11:59:59.999+08:00"  # a Wednesday


@pytest.fixture(scope="module")
def priced(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    running = start_gateway(tmp_path_factory.mktemp("pricing"), simulator, catalog_text=CATALOG)
    try:
        yield running
    finally:
        stop(running.process)


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)


def pricing(gateway: Gateway, key: str, **params: str) -> Any:
    return client(gateway, key).get("/pricing", cast_to=object, options={"params": params})


def quote(gateway: Gateway, key: str, **body: Any) -> Any:
    return client(gateway, key).post(
        "/quote", cast_to=object, body={"model": "deepseek-v3.2", "messages": MESSAGES, **body}
    )


def offers_of(view: Any, model: str) -> dict[str, Any]:
    return {o["offer"]: o for m in view["data"] if m["model"] == model for o in m["offers"]}


def test_the_price_list_shows_the_window_until_when_the_next_price_and_the_rules(priced: Gateway, unique: str) -> None:
    view = pricing(priced, priced.account(unique, topup_cny=None), at=BEFORE_NOON)
    assert (view["at"], view["timezone"]) == (BEFORE_NOON, "Asia/Shanghai")
    assert [m["model"] for m in view["data"]] == ["deepseek-v3.2", "glm-5", "embed"]  # not household-only
    alpha = offers_of(view, "deepseek-v3.2")["alpha/deepseek-v3.2"]
    current = alpha["current"]
    assert (current["window"], current["window_percent"], current["until"]) == (
        "peak",
        100,
        "2026-06-10T12:00:00+08:00",
    )
    assert current["prices"]["cny_per_mtok"]["input"] == "2" and current["prices"]["nano_per_token"]["output"] == 3000
    following = alpha["next"]
    assert (following["at"], following["window"], following["window_percent"]) == (
        "2026-06-10T12:00:00+08:00",
        "off-peak",
        50,
    )
    assert following["prices"]["cny_per_mtok"] == {
        "input": "1",
        "cached_input": "0.1",
        "output": "1.5",
        "reasoning": "1.5",
        "cache_write": "1",
    }
    rules = alpha["rules"]
    assert len(rules["windows"]) == 4 and rules["default_window_name"] == "peak"
    assert rules["load_surcharge"] == {
        "above_percent": 80,
        "max_percent": 20,
        "utilisation_permille": 0,
        "current_permille": 0,
    }
    glm = offers_of(view, "glm-5")["beta/glm-5"]
    assert glm["next"] is None and glm["rules"]["batch_percent"] == 50
    assert glm["rules"]["long_context"] == [
        {
            "above_input_tokens": 32000,
            "prices": {
                "cny_per_mtok": {
                    "input": "6",
                    "cached_input": "1.5",
                    "output": "24",
                    "reasoning": "24",
                    "cache_write": "6",
                },
                "nano_per_token": {
                    "input": 6000,
                    "cached_input": 1500,
                    "output": 24000,
                    "reasoning": 24000,
                    "cache_write": 6000,
                },
            },
        }
    ]


def test_a_holiday_is_off_peak_all_day(priced: Gateway, unique: str) -> None:
    view = pricing(priced, priced.account(unique, topup_cny=None), at="2026-10-01T10:00", model="deepseek-v3.2")
    alpha = offers_of(view, "deepseek-v3.2")["alpha/deepseek-v3.2"]
    assert alpha["current"]["window"] == "off-peak" and alpha["current"]["until"] == "2026-10-02T09:00:00+08:00"


def test_the_price_list_keeps_to_the_callers_tier_and_key(priced: Gateway, unique: str) -> None:
    household = pricing(priced, priced.account(unique, tier="household", topup_cny=None))
    assert "household-only" in [m["model"] for m in household["data"]]
    priced.account(f"{unique}-k", topup_cny=None)
    limited = priced.admin("POST", f"/admin/v1/accounts/{unique}-k/keys", json={"models": ["glm-5"]}).json()["key"]
    assert [m["model"] for m in pricing(priced, limited)["data"]] == ["glm-5"]


def test_a_quote_answers_now_and_at_the_cheapest_time_today(priced: Gateway, unique: str) -> None:
    key = priced.account(unique, topup_cny=None)
    view = quote(priced, key, max_tokens=1000, at="2026-06-10T10:30:00+08:00")
    assert view["object"] == "quote" and view["input_tokens_max"] >= view["prompt_tokens"] > 0
    by_offer = {entry["offer"]: entry for entry in view["data"]}
    assert list(by_offer) == ["alpha/deepseek-v3.2", "beta/deepseek-v3.2"]  # cheapest first, as routed
    alpha = by_offer["alpha/deepseek-v3.2"]
    input_max = view["input_tokens_max"]
    assert alpha["now"]["window"] == "peak"
    assert alpha["now"]["max_cost_nano"] == input_max * 2000 + 1000 * 3000
    assert cny_to_nano(alpha["now"]["max_cost"]) == alpha["now"]["max_cost_nano"]
    cheapest = alpha["cheapest_today"]
    assert (cheapest["at"], cheapest["window"]) == ("2026-06-10T12:00:00+08:00", "off-peak")
    assert cheapest["max_cost_nano"] == input_max * 1000 + 1000 * 1500
    beta = by_offer["beta/deepseek-v3.2"]  # no windows: its cheapest time is now
    assert beta["cheapest_today"]["max_cost_nano"] == beta["now"]["max_cost_nano"] == input_max * 2500 + 1000 * 4000
    assert beta["fits_context_window"] is True and beta["output_tokens_max"] == 1000


def test_a_quote_reserves_nothing(priced: Gateway, unique: str) -> None:
    key = priced.account(unique, topup_cny="0.001")
    quote(priced, key, max_tokens=8000)  # far more than the wallet could cover: a quote is not refused
    wallet = priced.admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["reserved_nano"] == 0 and wallet["available_nano"] == 1_000_000


def test_a_quote_is_the_reservation_a_real_call_makes(priced: Gateway, unique: str) -> None:
    key = priced.account(unique, topup_cny="1")
    answered = quote(priced, key, model="glm-5", max_tokens=40)
    raw = client(priced, key).chat.completions.with_raw_response.create(
        model="glm-5",
        messages=MESSAGES,
        max_tokens=40,
        stream=True,  # type: ignore[arg-type]
    )
    for _ in raw.parse():
        pass
    assert raw.headers["x-suanli-reserved"] == answered["data"][0]["now"]["max_cost"]


def test_long_context_usage_is_charged_and_recorded_at_the_long_context_price(priced: Gateway, unique: str) -> None:
    key = priced.account(unique, topup_cny="5")
    long_prompt = [{"role": "user", "content": "token " * 40_000}]
    for messages in (MESSAGES, long_prompt):
        client(priced, key).chat.completions.create(model="glm-5", messages=messages, max_tokens=5)  # type: ignore[arg-type]
    conn = open_database(priced.database)
    try:
        account = find_account(conn, unique)
        rows = conn.execute(
            "SELECT input_tokens, output_tokens, price_input_nano, price_output_nano, cost_nano FROM usage_events"
            " WHERE account_id = ? ORDER BY input_tokens",
            (account.id,),
        ).fetchall()
    finally:
        conn.close()
    assert rows[0][0] < 32_000 < rows[1][0]
    assert [(row[2], row[3]) for row in rows] == [(4000, 18000), (6000, 24000)]  # the prices charged, recorded
    tokens_in, tokens_out, _, _, cost = rows[1]
    assert cost == tokens_in * 6000 + tokens_out * 24000


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"at": "noon"}, 400, "invalid_field"),
        ({"at": 12}, 400, "invalid_field"),
        ({"model": "nope"}, 404, "model_not_found"),
        ({"model": "embed"}, 400, "wrong_model_kind"),
        ({"model": "household-only"}, 403, "model_not_offered_to_tier"),
        ({"messages": None}, 400, "missing_field"),
        ({"max_tokens": -1}, 400, "invalid_field"),
    ],
)
def test_a_bad_quote_request_gets_a_clear_error(
    priced: Gateway, unique: str, body: dict[str, Any], status: int, code: str
) -> None:
    key = priced.account(unique, topup_cny=None)
    with pytest.raises(openai.APIStatusError) as refused:
        quote(priced, key, **body)
    error = refused.value.response.json()["error"]
    assert refused.value.status_code == status and error["code"] == code and error["message"]


def test_bad_price_list_requests_get_a_clear_error(priced: Gateway, unique: str) -> None:
    assert httpx.get(f"{priced.url}/v1/pricing").json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(f"{priced.url}/v1/quote", content=b"{}").status_code == 401
    key = priced.account(unique, topup_cny=None)
    for params, code in (({"at": "yesterday"}, "invalid_field"), ({"model": "nope"}, "model_not_found")):
        with pytest.raises(openai.APIStatusError) as refused:
            pricing(priced, key, **params)
        assert refused.value.response.json()["error"]["code"] == code


def test_a_call_locked_at_11_59_59_999_settles_at_the_peak_price_after_noon(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, with the admission's clock pinned: the lock is taken at 11:59:59.999 Beijing time, and
    everything after it (the settlement, the usage event) runs after noon."""
    noon = epoch_ms(datetime.fromisoformat("2026-06-10T12:00:00+08:00"))
    instants = iter([noon - 1])
    monkeypatch.setattr(lifecycle, "now_ms", lambda: next(instants, noon + 500))
    catalog_path = tmp_path / "catalog.toml"
    catalog_path.write_text(CATALOG)
    catalog = load_catalog(catalog_path, {"SIM_URL": simulator.url, "ALPHA_KEY": "sk-upstream-alpha-secret"})
    database = tmp_path / "pin.db"
    conn = open_database(database)
    try:
        run_in_transaction(conn, ops.create_account_job("pin", "enterprise"))
        run_in_transaction(conn, ops.topup_job("pin", cny_to_nano("1")))
        _, raw_key = run_in_transaction(conn, ops.create_key_job("pin", "pin", None, None))
    finally:
        conn.close()
    event = asyncio.run(_one_call(Settings(database, catalog_path), catalog, raw_key))
    assert event.created_at_ms > noon  # settled after noon ...
    assert (event.price_input_nano, event.price_output_nano) == (2000, 3000)  # ... at the peak price locked before
    assert event.cost_nano == event.input_tokens * 2000 + event.cached_input_tokens * 200 + event.output_tokens * 3000


async def _one_call(settings: Settings, catalog: Any, raw_key: str) -> Any:
    platform = Platform(settings, catalog)
    await platform.start()
    try:
        caller = platform.keys.authenticate(raw_key)
        body = b'{"model": "deepseek-v3.2", "max_tokens": 20, "provider": {"only": ["alpha"]}, "messages": ' + (
            b'[{"role": "user", "content": "Lock the price."}]}'
        )
        await chat_completion(platform, caller, body, "req_pinned")
    finally:
        await platform.stop()
    conn = open_database(settings.database_path)
    try:
        return ops.usage_view(conn, "pin", 1)[0]
    finally:
        conn.close()
