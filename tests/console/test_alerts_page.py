"""The Alerts & statements page against the API: a webhook registered in the page shows its secret once and
is listed; a balance threshold saved in the page makes a call's alert, listed as ``GET /v1/alerts`` lists it;
the statement's opening and closing are the API's to the nano, and its PDF link answers a PDF."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import openai
from playwright.sync_api import BrowserContext, Page

from tests.console.conftest import TIMEZONE, Customer, open_page, sign_in

HOOK_URL = "http://127.0.0.1:9/hook"  # nothing listens: deliveries fail and are retried, which is fine here
PREPARED_WAIT_S = 10.0
CROSSING: Any = [{"role": "user", "content": "Cross the threshold"}]


def wait_prepared(customer: Customer) -> list[dict[str, Any]]:
    """The account's alerts once every one has its data (the delivery loop prepares them within a second)."""
    deadline = time.monotonic() + PREPARED_WAIT_S
    while time.monotonic() < deadline:
        events: list[dict[str, Any]] = customer.get("/v1/alerts")["data"]
        if events and all(e["prepared"] for e in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"no prepared alert: {customer.get('/v1/alerts')}")


def shown_statement(page: Page, month: str) -> dict[str, str]:
    page.locator(f"[data-testid=statement-out][data-shown='{month}']").wait_for()
    return {
        name: str(page.get_by_test_id(f"statement-{name}").get_attribute("data-nano"))
        for name in ("opening", "closing")
    }


def previous_month(now: datetime) -> str:
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def register_webhook(page: Page, account: Customer) -> dict[str, Any]:
    page.get_by_test_id("webhook-url").fill(HOOK_URL)
    page.get_by_test_id("register-webhook").click()
    secret = page.get_by_test_id("new-key-secret").input_value()
    assert secret.startswith("whsec_")
    page.get_by_test_id("close-secret").click()
    hooks: list[dict[str, Any]] = account.get("/v1/webhooks")["data"]
    assert [h["url"] for h in hooks] == [HOOK_URL]
    row = page.locator(f"[data-testid=webhook-row][data-webhook-id='{hooks[0]['id']}']")
    assert row.get_by_test_id("webhook-row-url").inner_text() == HOOK_URL
    assert secret not in page.content()  # shown once: gone with the dialog
    return hooks[0]


def save_threshold(page: Page, account: Customer) -> None:
    """The wallet holds ¥10: a threshold of 10 is crossed by the next call's charge."""
    page.get_by_test_id("alert-balance-below").fill("10")
    page.get_by_test_id("alert-pack-days").fill("5")
    page.get_by_test_id("save-alert-settings").click()
    page.locator("#toast").filter(has_text="Alert settings saved.").wait_for()
    settings = account.get("/v1/alerts/settings")
    assert (settings["balance_below"], settings["pack_expiry_days"]) == ("10", 5)


def check_alerts(page: Page, account: Customer, hook: dict[str, Any]) -> None:
    events = wait_prepared(account)
    assert [e["type"] for e in events] == ["balance.below"]
    page.reload()
    page.locator(".page[data-page=alerts][data-ready=true]").wait_for()
    rows = page.get_by_test_id("alert-row")
    assert [r.get_attribute("data-event-id") for r in rows.all()] == [e["id"] for e in events]
    assert rows.first.get_attribute("data-type") == "balance.below"
    assert f"¥{events[0]['data']['balance']}" in rows.first.get_by_test_id("alert-summary").inner_text()
    delivery = rows.first.get_by_test_id("delivery")
    assert delivery.get_attribute("data-webhook") == hook["id"]
    assert HOOK_URL in delivery.inner_text()


def check_statements(page: Page, account: Customer) -> None:
    now = datetime.now(ZoneInfo(TIMEZONE))
    last = previous_month(now)
    assert page.get_by_test_id("statement-month").input_value() == last  # the last closed month by default
    assert shown_statement(page, last) == api_ends(account.get("/v1/statements", month=last))
    this_month = now.strftime("%Y-%m")
    page.get_by_test_id("statement-month").fill(this_month)
    page.get_by_test_id("statement-show").click()
    statement = account.get("/v1/statements", month=this_month)
    assert shown_statement(page, this_month) == api_ends(statement)
    assert statement["money"]["closing_nano"] < 10 * 10**9  # the top-up less the call
    assert page.get_by_test_id("statement-final").get_attribute("data-final") == "false"
    assert page.get_by_test_id("statement-closing").inner_text().startswith("¥9.")
    href = str(page.get_by_test_id("statement-pdf").get_attribute("href"))
    assert href == f"/v1/statements?month={this_month}&format=pdf&lang=en"
    pdf = page.request.get(f"{account.gateway.url}{href}")  # the session's cookie, as a click would send it
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
    assert page.get_by_test_id("statement-csv").get_attribute("href") == href.replace("pdf", "csv")


def api_ends(statement: dict[str, Any]) -> dict[str, str]:
    return {name: str(statement["money"][f"{name}_nano"]) for name in ("opening", "closing")}


def test_webhooks_alerts_and_statements(context: BrowserContext, customer: Customer) -> None:
    gateway = customer.gateway
    account = Customer("alerts-console", gateway.account("alerts-console", topup_cny="10"), gateway)
    page = context.new_page()
    sign_in(page, gateway, account.key)
    open_page(page, "alerts")
    assert page.get_by_test_id("no-alerts").is_visible()
    hook = register_webhook(page, account)
    save_threshold(page, account)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account.key, max_retries=0) as client:
        client.chat.completions.create(model="deepseek-v3.2", messages=CROSSING, max_tokens=16)  # closed after
    check_alerts(page, account, hook)
    check_statements(page, account)
