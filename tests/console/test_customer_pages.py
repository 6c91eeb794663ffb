"""The customer's pages against the API, to the nano: the wallet, packs, Coding Plan windows and their
countdowns, the usage chart's table, the calls list and its CSV export; a key created in the page answers a
call and, revoked in the page, is refused; a pack bought in the page draws down on the next call."""

from __future__ import annotations

import csv
import io
import time

import httpx
import openai
import pytest
from playwright.sync_api import BrowserContext, Page

from tests.conftest import Gateway
from tests.console.conftest import TIMEZONE, Customer, chat, open_page, sign_in

COUNTDOWN_WAIT_S = 1.2


def attr(page: Page, testid: str, name: str) -> str:
    return str(page.get_by_test_id(testid).get_attribute(name))


def test_overview_shows_the_apis_wallet_packs_windows_and_forecast(context: BrowserContext, customer: Customer) -> None:
    page = context.new_page()
    sign_in(page, customer.gateway, customer.key)
    account, plans, forecast = customer.get("/v1/account"), customer.get("/v1/plans"), customer.get("/v1/forecast")
    wallet = account["wallet"]
    for name in ("balance", "reserved", "available"):
        assert attr(page, f"wallet-{name}", "data-nano") == str(wallet[f"{name}_nano"])
        assert page.get_by_test_id(f"wallet-{name}").inner_text() == f"¥{wallet[name]}"
    for pack in plans["packs"]:
        shown = page.locator(f"[data-testid=pack-row][data-pack='{pack['id']}'] [data-testid=pack-available] span")
        assert shown.get_attribute("data-value") == str(pack["available"])
    allowances = plans["subscription"]["allowances"]
    rows = page.get_by_test_id("window-row")
    assert rows.count() == len(allowances)
    for allowance in allowances:
        row = page.locator(f"[data-testid=window-row][data-window='{allowance['window']}']")
        assert row.get_by_test_id("window-reset").get_attribute("data-ms") == str(allowance["resets_at_ms"])
        assert row.get_by_test_id("window-remaining").get_attribute("data-value") == str(allowance["remaining"])
        assert row.get_by_test_id("window-used").get_attribute("data-value") == str(allowance["used"])
    countdown = page.get_by_test_id("window-countdown").first
    before = countdown.inner_text()
    time.sleep(COUNTDOWN_WAIT_S)
    assert countdown.inner_text() != before  # it moves, every second
    days = forecast["balance"]["days"]
    assert attr(page, "forecast", "data-days") == ("" if days is None else days)


VIEWS = [("day", "model"), ("day", "key"), ("day", "token_class"), ("hour", "operator")]


@pytest.mark.parametrize(("period", "by"), VIEWS)
def test_usage_chart_table_equals_the_summary(
    context: BrowserContext, customer: Customer, period: str, by: str
) -> None:
    page = context.new_page()
    sign_in(page, customer.gateway, customer.key)
    open_page(page, "usage")
    page.get_by_test_id("usage-period").select_option(period)
    page.get_by_test_id("usage-by").select_option(by)
    page.locator(f"[data-testid=usage-out][data-shown='{period}/{by}']").wait_for()
    summary = customer.get("/v1/usage/summary", period=period, by=by, tz=TIMEZONE)
    table = page.get_by_test_id("usage-table")
    assert not table.is_visible()
    page.get_by_test_id("usage-table-toggle").click()
    assert table.is_visible()
    shown = [
        {
            "start_ms": int(str(row.get_attribute("data-start-ms"))),
            "group": row.get_attribute("data-group") or None,
            "calls": int(str(row.get_by_test_id("row-calls").get_attribute("data-value"))),
            "tokens": int(str(row.get_by_test_id("row-tokens").get_attribute("data-value"))),
            "cost_nano": int(str(row.get_by_test_id("row-cost").get_attribute("data-nano"))),
            "cost": row.get_by_test_id("row-cost").inner_text(),
        }
        for row in page.get_by_test_id("usage-row").all()
    ]
    expected = [
        {k: r[k] for k in ("start_ms", "group", "calls", "tokens", "cost_nano")} | {"cost": f"¥{r['cost']}"}
        for r in summary["data"]
    ]
    assert shown == expected and shown
    assert attr(page, "usage-total-cost", "data-nano") == str(summary["totals"]["cost_nano"])
    assert page.get_by_test_id("usage-chart").get_attribute("role") == "img"
    assert summary["totals"]["cost"] in str(page.get_by_test_id("usage-chart").get_attribute("aria-label"))


def shown_calls(page: Page) -> list[dict[str, str]]:
    return [
        {
            "request_id": str(row.get_attribute("data-request-id")),
            "model": row.get_by_test_id("call-model").inner_text(),
            "operator": row.get_by_test_id("call-operator").inner_text(),
            "input_tokens": str(row.get_by_test_id("call-input").get_attribute("data-value")),
            "cost_nano": str(row.get_by_test_id("call-cost").get_attribute("data-nano")),
            "cost": row.get_by_test_id("call-cost").inner_text(),
            "price_window": row.get_by_test_id("call-window").inner_text(),
            "outcome": str(row.get_by_test_id("call-outcome").get_attribute("data-value")),
        }
        for row in page.get_by_test_id("call-row").all()
    ]


def api_calls(events: list[dict[str, object]]) -> list[dict[str, str]]:
    return [
        {
            "request_id": str(e["request_id"]),
            "model": str(e["model"]),
            "operator": str(e["operator"]),
            "input_tokens": str(e["input_tokens"]),
            "cost_nano": str(e["cost_nano"]),
            "cost": f"¥{e['cost']}",
            "price_window": str(e["price_window"]),
            "outcome": str(e["outcome"]),
        }
        for e in events
    ]


def test_calls_list_filters_and_csv_equal_the_api(context: BrowserContext, customer: Customer) -> None:
    page = context.new_page()
    sign_in(page, customer.gateway, customer.key)
    open_page(page, "calls")
    events = customer.get("/v1/usage", limit=50)["data"]
    assert shown_calls(page) == api_calls(events) and len(events) >= 8

    page.get_by_test_id("filter-model").select_option("coder")
    page.get_by_test_id("calls-apply").click()
    expected = api_calls(customer.get("/v1/usage", limit=50, model="coder")["data"])
    page.wait_for_function("n => document.querySelectorAll('[data-testid=call-row]').length === n", arg=len(expected))
    assert shown_calls(page) == expected and {c["model"] for c in expected} == {"coder"}

    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    body = download.value.path().read_bytes()
    from_api = httpx.get(
        f"{customer.gateway.url}/v1/usage", params={"format": "csv", "model": "coder"}, headers=customer.headers()
    )
    assert body == from_api.content
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [(r["request_id"], r["cost"], r["cost_nano"]) for r in rows] == [
        (c["request_id"], c["cost"].removeprefix("¥"), c["cost_nano"]) for c in expected
    ]


def test_a_key_created_in_the_page_answers_and_once_revoked_is_refused(
    context: BrowserContext, customer: Customer
) -> None:
    page = context.new_page()
    sign_in(page, customer.gateway, customer.key)
    open_page(page, "keys")
    page.get_by_test_id("key-name").fill("made-in-page")
    page.get_by_test_id("key-model-deepseek-v3.2").check()
    page.get_by_test_id("create-key").click()
    secret = page.get_by_test_id("new-key-secret").input_value()
    assert secret.startswith("sk-")
    page.get_by_test_id("close-secret").click()
    row = page.locator("[data-testid=key-row]", has_text="made-in-page")
    row.wait_for()
    assert secret not in page.content()  # shown once, in the dialog only

    client = openai.OpenAI(base_url=f"{customer.gateway.url}/v1", api_key=secret, max_retries=0)
    answer = client.chat.completions.create(model="deepseek-v3.2", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):  # the key's model limit, set in the page
        client.chat.completions.create(model="glm-5", messages=[{"role": "user", "content": "hi"}])

    row.get_by_test_id("revoke-key").click()
    page.get_by_test_id("confirm-yes").click()
    page.locator("[data-testid=key-row]", has_text="made-in-page").get_by_test_id("key-state").filter(
        has_text="revoked"
    ).wait_for()
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="deepseek-v3.2", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "key_revoked"


def test_a_pack_bought_in_the_page_draws_down_on_the_next_call(
    context: BrowserContext, console_gateway: Gateway
) -> None:
    key = console_gateway.account("pack-buyer", topup_cny="5")
    buyer = Customer("pack-buyer", key, console_gateway)
    page = context.new_page()
    sign_in(page, console_gateway, key)
    open_page(page, "plans")
    page.get_by_test_id("buy-pack-late").click()
    page.get_by_test_id("confirm-yes").click()
    page.locator(".page[data-page=plans][data-ready=true]").wait_for()
    page.wait_for_function("() => !!document.querySelector('[data-testid=transfer-pack] option')")
    packs = buyer.get("/v1/plans")["packs"]
    assert [(p["product"], p["available"]) for p in packs] == [("pack-late", 100000)]
    assert buyer.get("/v1/account")["wallet"]["balance"] == "3"

    chat(console_gateway, key, "deepseek-v3.2", "Drawn from the pack")
    open_page(page, "overview")
    pack = buyer.get("/v1/plans")["packs"][0]
    assert pack["available"] < 100000
    shown = page.locator(f"[data-testid=pack-row][data-pack='{pack['id']}'] [data-testid=pack-available] span")
    assert shown.get_attribute("data-value") == str(pack["available"])
    assert page.get_by_test_id("wallet-balance").inner_text() == "¥3"  # the call was paid from the pack
