"""The console's security in the browser: the key is never in the page, a cookie script can read, web
storage or the gateway's log; writes without the CSRF token are refused; a customer session reaches neither
another account's data nor the admin API; a session that ends (key revoked, sign-out) returns to sign-in;
the first load is under 200 KB."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import BrowserContext, Page, Response

from tests.conftest import Gateway
from tests.console.conftest import Customer, open_page, sign_in, wait_ready

FIRST_LOAD_BYTES_MAX = 200 * 1024
CUSTOMER_PAGES = ("overview", "usage", "calls", "keys", "plans", "prices")


def fetch(page: Page, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    """A request made by the page's own origin, with its cookie (and without the CSRF token unless given)."""
    script = """async ([method, path, headers]) => {
        const r = await fetch(path, {method, headers: {"content-type": "application/json", ...headers},
                                     body: method === "GET" ? undefined : "{}"});
        return {status: r.status, body: await r.text()};
    }"""
    return page.evaluate(script, [method, path, headers or {}])


def test_the_key_is_never_in_the_page_a_cookie_storage_or_the_log(
    context: BrowserContext, customer: Customer, console_gateway: Gateway
) -> None:
    page = context.new_page()
    sign_in(page, console_gateway, customer.key)
    for name in CUSTOMER_PAGES:
        open_page(page, name)
        assert customer.key not in page.content()
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    storage = page.evaluate("JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert customer.key not in storage and customer.key[3:] not in storage
    assert page.get_by_test_id("signin-key").count() == 0
    cookies = context.cookies()
    assert [c["name"] for c in cookies] == ["suanli_session"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict" and customer.key not in cookies[0]["value"]
    assert customer.key not in console_gateway.log_text()


def test_writes_without_the_csrf_token_are_refused(context: BrowserContext, customer: Customer) -> None:
    page = context.new_page()
    sign_in(page, customer.gateway, customer.key)
    keys_before = customer.get("/v1/keys")["data"]
    forged = fetch(page, "POST", "/v1/keys")
    assert forged["status"] == 403 and "csrf_token_invalid" in forged["body"]
    wrong = fetch(page, "POST", "/v1/keys", {"x-csrf-token": "not-the-token"})
    assert wrong["status"] == 403
    by_request = page.request.post(f"{customer.gateway.url}/v1/packs", data={"product": "pack-small"})
    assert by_request.status == 403
    assert customer.get("/v1/keys")["data"] == keys_before  # nothing was done
    assert fetch(page, "GET", "/v1/account")["status"] == 200  # reads need no token


def test_a_customer_session_reaches_no_admin_api_and_no_other_account(
    context: BrowserContext, customer: Customer, console_gateway: Gateway
) -> None:
    other_key = console_gateway.account("someone-else", topup_cny="1")
    other = Customer("someone-else", other_key, console_gateway)
    other_key_id = other.get("/v1/keys")["data"][0]["id"]
    page = context.new_page()
    sign_in(page, console_gateway, customer.key)
    for path in ("/admin/v1/operators", "/admin/v1/accounts", "/admin/v1/usage/summary", "/metrics"):
        answer = fetch(page, "GET", path)
        assert answer["status"] == 403 and "admin_only" in answer["body"], path
    session = page.request.get(f"{console_gateway.url}/console/session").json()
    revoke = fetch(page, "POST", f"/v1/keys/{other_key_id}/revoke", {"x-csrf-token": session["csrf_token"]})
    assert revoke["status"] == 404
    assert other.get("/v1/keys")["data"][0]["revoked_at_ms"] is None
    assert other_key_id not in fetch(page, "GET", "/v1/usage")["body"]


def test_a_session_whose_key_is_revoked_returns_to_sign_in_and_sign_out_ends_it(
    context: BrowserContext, console_gateway: Gateway
) -> None:
    key = console_gateway.account("short-lived", topup_cny="1")
    key_id = Customer("short-lived", key, console_gateway).get("/v1/keys")["data"][0]["id"]
    page = context.new_page()
    sign_in(page, console_gateway, key)
    page.reload()  # the session resumes from the cookie
    page.get_by_test_id("signout").wait_for()
    console_gateway.admin("POST", f"/admin/v1/keys/{key_id}/revoke").raise_for_status()
    page.get_by_test_id("nav-usage").click()
    message = page.get_by_test_id("signin-message")
    message.wait_for()
    assert "key_revoked" in message.inner_text()

    second = console_gateway.admin("POST", "/admin/v1/accounts/short-lived/keys", json={}).json()["key"]
    sign_in(page, console_gateway, second)
    page.get_by_test_id("signout").click()
    page.get_by_test_id("signin-key").wait_for()
    assert page.request.get(f"{console_gateway.url}/console/session").status == 401
    assert fetch(page, "GET", "/v1/account")["status"] == 401


def test_the_first_load_is_under_200_kb_and_served_with_a_strict_policy(
    context: BrowserContext, customer: Customer
) -> None:
    page = context.new_page()
    sizes: dict[str, int] = {}

    def record(response: Response) -> None:
        sizes[response.url] = len(response.body())

    page.on("response", record)
    first = page.goto(f"{customer.gateway.url}/console")
    assert first is not None
    policy = first.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    page.get_by_test_id("signin-key").wait_for()
    page.get_by_test_id("signin-key").fill(customer.key)
    page.get_by_test_id("signin-submit").click()
    wait_ready(page)
    page.remove_listener("response", record)
    total = sum(sizes.values())
    assert total < FIRST_LOAD_BYTES_MAX, sizes
    assert any(url.endswith("console.js") for url in sizes)
