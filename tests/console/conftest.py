"""Fixtures of the console's browser tests: one gateway of their own (its log kept, to search it for keys),
one headless chromium for the session (Debian's, through ``executable_path``: Playwright's download is never
used), a fresh browser context per test, and accounts with real calls made through both SDKs.

Screenshots go to ``$SUANLI_SCREENSHOTS`` or a temporary directory, named at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import TEST_CATALOG, Gateway, Simulator, start_gateway, stop

CHROMIUM = os.environ.get("SUANLI_CHROMIUM", "/usr/bin/chromium")
TIMEZONE = "Asia/Shanghai"  # the browser's zone in these tests, so that the page's times read as the API's
PAGE_TIMEOUT_MS = 10_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# The test catalog, plus a model whose two offers have peak and off-peak windows, for the Prices page.
CONSOLE_CATALOG = (
    TEST_CATALOG
    + """
[models."qwen-max"]

[[offers]]
operator = "beta"
model = "qwen-max"
context_window = 128000
max_output_tokens = 8192
price = { input = "2.4", cached_input = "0.6", output = "9.6" }
[offers.pricing]
default_window_name = "peak"
windows = [
  { name = "off-peak", days = ["weekday"], from = "00:00", to = "09:00", percent = 50 },
  { name = "off-peak", days = ["weekday"], from = "18:00", to = "24:00", percent = 50 },
  { name = "off-peak", days = ["weekend", "holiday"], from = "00:00", to = "24:00", percent = 50 },
]
"""
)


@dataclass
class Customer:
    name: str
    key: str
    gateway: Gateway

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.gateway.url}{path}", params=params, headers=self.headers())
        response.raise_for_status()
        return response.json()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="package")
def console_gateway(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("console-gateway")
    running = start_gateway(tmp, simulator, catalog_text=CONSOLE_CATALOG, log=tmp / "gateway.log")
    try:
        yield running
    finally:
        stop(running.process)


def chat(gateway: Gateway, key: str, model: str, text: str, *, stream: bool = False, max_tokens: int = 16) -> None:
    """One real call through the OpenAI SDK, streamed or not."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": text}]
    if stream:
        chunks = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, stream=True)
        for _ in chunks:
            pass
    else:
        client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)


def message(gateway: Gateway, key: str, model: str, text: str, *, stream: bool = False) -> None:
    """One real call through the Anthropic SDK, streamed or not."""
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": text}]
    if stream:
        with client.messages.stream(model=model, messages=messages, max_tokens=16) as events:
            for _ in events:
                pass
    else:
        client.messages.create(model=model, messages=messages, max_tokens=16)


@pytest.fixture(scope="package")
def customer(console_gateway: Gateway) -> Customer:
    """An enterprise account with a pack, the Coding Plan, a budget and calls of both protocols, streamed and
    not, on several models, operators and keys."""
    gateway = console_gateway
    key = gateway.account("acme-console", topup_cny="100")
    second = gateway.admin("POST", "/admin/v1/accounts/acme-console/keys", json={"name": "ci-bot"}).json()["key"]
    gateway.admin("POST", "/admin/v1/accounts/acme-console/packs", json={"product": "pack-small"}).raise_for_status()
    sub = gateway.admin("POST", "/admin/v1/accounts/acme-console/subscription", json={"product": "coding-lite"})
    sub.raise_for_status()
    budget = {"period": "day", "unit": "cny", "amount": "20"}
    gateway.admin("POST", "/admin/v1/accounts/acme-console/budgets", json=budget).raise_for_status()
    chat(gateway, key, "deepseek-v3.2", "Hello from the console test")
    chat(gateway, key, "deepseek-v3.2", "A streamed hello", stream=True)
    chat(gateway, second, "multi", "Routed to the cheapest")
    chat(gateway, second, "qwen-max", "Priced by the hour", stream=True, max_tokens=40)
    chat(gateway, key, "glm-5", "On the Coding Plan")
    message(gateway, key, "coder", "An Anthropic client")
    message(gateway, key, "coder", "A streamed Anthropic client", stream=True)
    message(gateway, second, "anthropic-only", "Only Anthropic serves this", stream=True)
    return Customer("acme-console", key, gateway)


@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: run scripts/browser ensure (it installs Debian's chromium and fonts)")
    launched = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
        yield launched
    finally:
        launched.close()


def new_context(browser: Browser, locale: str = "en-US", viewport: dict[str, int] | None = None) -> BrowserContext:
    context = browser.new_context(
        locale=locale,
        timezone_id=TIMEZONE,
        viewport=viewport or DESKTOP,
        accept_downloads=True,  # type: ignore[arg-type]
    )
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = new_context(browser)
    try:
        yield opened
    finally:
        opened.close()


def sign_in(page: Page, gateway: Gateway, key: str) -> None:
    page.goto(f"{gateway.url}/console")
    page.get_by_test_id("signin-key").fill(key)
    page.get_by_test_id("signin-submit").click()
    page.get_by_test_id("signout").wait_for()
    wait_ready(page)


def wait_ready(page: Page) -> None:
    """The page's data has arrived (its root is marked ready)."""
    page.locator(".page[data-ready=true]").wait_for()


def open_page(page: Page, name: str) -> None:
    page.get_by_test_id(f"nav-{name}").click()
    page.locator(f".page[data-page={name}][data-ready=true]").wait_for()


SCREENSHOTS_KEY = pytest.StashKey[Path]()


@pytest.fixture(scope="package")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: ``$SUANLI_SCREENSHOTS``, else a temporary directory; named at the end."""
    configured = os.environ.get("SUANLI_SCREENSHOTS")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("console-screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    request.config.stash[SCREENSHOTS_KEY] = directory
    return directory


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    directory = config.stash.get(SCREENSHOTS_KEY, None)
    if directory is not None:
        terminalreporter.write_line(f"console screenshots: {directory}")
