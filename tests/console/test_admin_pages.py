"""The platform's pages with an admin session: an operator's breaker opens on the Operators page when the
simulator fails it; revenue and accounts equal the admin API's."""

from __future__ import annotations

import contextlib

import httpx
import openai
from playwright.sync_api import BrowserContext

from tests.conftest import ADMIN_KEY, Gateway, Simulator
from tests.console.conftest import TIMEZONE, Customer, open_page, sign_in

FAILING_CALLS = 6  # more than BREAKER_CONSECUTIVE_FAILURES (5): the breaker opens
BREAKER_WAIT_MS = 15_000  # the page refreshes every 3 s


def test_an_admin_sees_an_operators_breaker_open(
    context: BrowserContext, console_gateway: Gateway, simulator: Simulator, customer: Customer
) -> None:
    page = context.new_page()
    sign_in(page, console_gateway, ADMIN_KEY)
    state = page.locator("[data-testid=offer-row][data-offer='faulty/faulty-model'] [data-testid=breaker-state]")
    assert state.get_attribute("data-state") == "closed"
    assert "closed" in state.inner_text()  # the state is said in words, not by colour alone
    simulator.set("faulty", error_rate_percent=100, error_status=500)
    try:
        client = openai.OpenAI(base_url=f"{console_gateway.url}/v1", api_key=customer.key, max_retries=0)
        for n in range(FAILING_CALLS):
            with contextlib.suppress(openai.APIStatusError):  # each fails: that is the point
                client.chat.completions.create(model="faulty-model", messages=[{"role": "user", "content": f"{n}"}])
        page.locator(
            "[data-testid=offer-row][data-offer='faulty/faulty-model'] [data-testid=breaker-state][data-state=open]"
        ).wait_for(timeout=BREAKER_WAIT_MS)
        assert "open" in state.inner_text()
        api = console_gateway.admin("GET", "/admin/v1/operators").json()["data"]
        faulty = next(o for op in api for o in op["offers"] if o["offer"] == "faulty/faulty-model")
        assert faulty["state"] in ("open", "half_open")
    finally:
        simulator.reset("faulty")


def test_revenue_and_accounts_equal_the_admin_api(
    context: BrowserContext, console_gateway: Gateway, customer: Customer
) -> None:
    page = context.new_page()
    sign_in(page, console_gateway, ADMIN_KEY)
    open_page(page, "revenue")
    page.get_by_test_id("usage-by").select_option("account")
    page.locator("[data-testid=usage-out][data-shown='day/account']").wait_for()
    summary = console_gateway.admin(
        "GET", "/admin/v1/usage/summary", params={"period": "day", "by": "account", "tz": TIMEZONE}
    ).json()
    rows = page.get_by_test_id("usage-row").all()
    assert [(r.get_attribute("data-group"), r.get_by_test_id("row-cost").get_attribute("data-nano")) for r in rows] == [
        (d["group"], str(d["cost_nano"])) for d in summary["data"]
    ]
    assert page.get_by_test_id("usage-total-cost").get_attribute("data-nano") == str(summary["totals"]["cost_nano"])
    uncharged = page.get_by_test_id("usage-uncharged")
    assert uncharged.get_attribute("data-nano") == str(summary["totals"]["uncharged_nano"])

    open_page(page, "accounts")
    wallet = console_gateway.admin("GET", f"/admin/v1/accounts/{customer.name}").json()["wallet"]
    row = page.locator(f"[data-testid=account-row][data-account='{customer.name}']")
    assert row.locator("[data-testid=account-balance] span").get_attribute("data-nano") == str(wallet["balance_nano"])
    listed = console_gateway.admin("GET", "/admin/v1/accounts").json()["data"]
    balances = [r.get_attribute("data-nano") for r in page.locator("[data-testid=account-balance] span").all()]
    assert balances == [str(a["wallet"]["balance_nano"]) for a in listed]  # every account, in the list's order
    topups = console_gateway.admin("GET", "/admin/v1/topups", params={"limit": 50}).json()["data"]
    shown = [s.get_attribute("data-nano") for s in page.locator("[data-testid=topup-amount] span").all()]
    assert shown == [str(t["amount_nano"]) for t in topups]

    open_page(page, "products")
    rule = console_gateway.admin("GET", "/admin/v1/offers/alpha/deepseek-v3.2/prices").json()["rule"]
    notice = page.get_by_test_id("notice-rule").inner_text()
    assert f"{rule['notice_s'] // 60} minutes" in notice and f"{rule['horizon_days']} days" in notice


def test_prices_page_bands_and_quote_equal_the_api(context: BrowserContext, customer: Customer) -> None:
    page = context.new_page()
    sign_in(page, customer.gateway, customer.key)
    open_page(page, "prices")
    bands = page.locator("[data-testid=bands][data-offer='beta/qwen-max'] [data-testid=band-text]")
    assert bands.first.inner_text() == "00:00–09:00 off-peak 50%; 09:00–18:00 peak 100%; 18:00–24:00 off-peak 50%"
    assert page.locator("[data-testid=bands][data-offer='beta/qwen-max'] svg[role=img]").count() == 3
    page.get_by_test_id("quote-model").select_option("qwen-max")
    page.get_by_test_id("quote-prompt").fill("How much will this cost?")
    page.get_by_test_id("quote-max-tokens").fill("500")
    page.get_by_test_id("quote-submit").click()
    cell = page.locator("[data-testid=quote-offer][data-offer='beta/qwen-max'] [data-testid=quote-now] span")
    cell.wait_for()
    prompt = [{"role": "user", "content": "How much will this cost?"}]
    body = {"model": "qwen-max", "messages": prompt, "max_tokens": 500}
    quote = httpx.post(f"{customer.gateway.url}/v1/quote", json=body, headers=customer.headers()).json()["data"][0]
    assert cell.get_attribute("data-nano") == str(quote["now"]["max_cost_nano"])
    cheapest = page.locator("[data-testid=quote-offer][data-offer='beta/qwen-max'] [data-testid=quote-cheapest] span")
    assert cheapest.get_attribute("data-nano") == str(quote["cheapest_today"]["max_cost_nano"])
