"""The console's two languages (chosen from the browser's, switched and remembered; every string in both
tables) and screenshots of every page in both, on a desktop and a phone.

``SUANLI_CONSOLE_DOCS=1`` also writes one English screenshot per page into docs/console/ for docs/console.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import ADMIN_KEY, Gateway
from tests.console.conftest import PHONE, Customer, new_context, open_page, sign_in

STATIC = Path(__file__).parents[2] / "src" / "suanli" / "console" / "static"
DOCS = Path(__file__).parents[2] / "docs" / "console"
CUSTOMER_PAGES = ("overview", "usage", "calls", "keys", "plans", "prices", "alerts")
ADMIN_PAGES = ("operators", "revenue", "accounts", "products")
DOC_SHOT = {"width": 1200, "height": 800}
DOC_SHOT_HEIGHT_MAX = 1000  # a long page is cut here: the top shows what it is, and the file stays small


def table_keys(text: str, start: str, end: str) -> set[str]:
    body = text[text.index(start) : text.index(end)]
    return set(re.findall(r'^\s+"([a-z0-9_.]+)":', body, re.MULTILINE))


def test_both_string_tables_hold_every_key_the_page_uses() -> None:
    strings = (STATIC / "i18n.js").read_text()
    english = table_keys(strings, "const en = {", "const zh = {")
    chinese = table_keys(strings, "const zh = {", "export const STRINGS")
    assert english == chinese
    used: set[str] = set()
    for script in STATIC.glob("*.js"):
        used |= set(re.findall(r'\bt\("([a-z0-9_.]+)"', script.read_text()))
    assert used <= english, used - english


def current_language(page: Page) -> str:
    return str(page.evaluate("document.documentElement.lang"))


def test_the_language_follows_the_browser_and_the_switch(browser: Browser, customer: Customer) -> None:
    chinese = new_context(browser, locale="zh-CN")
    try:
        page = chinese.new_page()
        page.goto(f"{customer.gateway.url}/console")
        page.get_by_test_id("signin-submit").wait_for()
        assert current_language(page) == "zh-CN"
        assert page.get_by_test_id("signin-submit").inner_text() == "登录"
        sign_in(page, customer.gateway, customer.key)
        assert page.get_by_test_id("nav-overview").inner_text() == "概览"
        page.get_by_test_id("language").select_option("en")
        page.get_by_test_id("nav-overview").filter(has_text="Overview").wait_for()
        assert current_language(page) == "en"
        page.reload()
        page.get_by_test_id("nav-overview").filter(has_text="Overview").wait_for()  # remembered
        assert current_language(page) == "en"
    finally:
        chinese.close()
    english = new_context(browser, locale="en-GB")
    try:
        page = english.new_page()
        page.goto(f"{customer.gateway.url}/console")
        assert page.get_by_test_id("signin-submit").inner_text() == "Sign in"
    finally:
        english.close()


def shoot(page: Page, path: Path, height_max: int | None = None) -> None:
    if height_max is None:
        page.screenshot(path=path, full_page=True)
        return
    height = min(height_max, int(page.evaluate("document.documentElement.scrollHeight")))
    width = int(page.evaluate("document.documentElement.clientWidth"))
    page.screenshot(path=path, full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height})


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_screenshots_of_every_page(
    browser: Browser, customer: Customer, console_gateway: Gateway, screenshots: Path, language: str
) -> None:
    for key, pages in ((customer.key, CUSTOMER_PAGES), (ADMIN_KEY, ADMIN_PAGES)):
        context = new_context(browser, locale=language)
        try:
            page = context.new_page()
            sign_in(page, console_gateway, key)
            for name in pages:
                open_page(page, name)
                shoot(page, screenshots / f"{language}-{name}.png")
        finally:
            context.close()
    phone = new_context(browser, locale=language, viewport=PHONE)
    try:
        page = phone.new_page()
        sign_in(page, console_gateway, customer.key)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
        shoot(page, screenshots / f"phone-{language}-overview.png")
    finally:
        phone.close()
    assert len(list(screenshots.glob(f"{language}-*.png"))) == len(CUSTOMER_PAGES) + len(ADMIN_PAGES)
    if language == "en" and os.environ.get("SUANLI_CONSOLE_DOCS") == "1":
        write_docs_screenshots(browser, customer, console_gateway)


def write_docs_screenshots(browser: Browser, customer: Customer, console_gateway: Gateway) -> None:
    """One screenshot per page, 1200 px wide, for docs/console.md (run with SUANLI_CONSOLE_DOCS=1)."""
    DOCS.mkdir(exist_ok=True)
    for key, pages in ((customer.key, CUSTOMER_PAGES), (ADMIN_KEY, ADMIN_PAGES)):
        context = new_context(browser, viewport=DOC_SHOT)
        try:
            page = context.new_page()
            sign_in(page, console_gateway, key)
            for name in pages:
                open_page(page, name)
                if name == "usage":
                    page.get_by_test_id("usage-table-toggle").click()
                shoot(page, DOCS / f"{name}.png", DOC_SHOT_HEIGHT_MAX)
        finally:
            context.close()
    context = new_context(browser, locale="zh-CN", viewport=PHONE)
    try:
        page = context.new_page()
        sign_in(page, console_gateway, customer.key)
        shoot(page, DOCS / "phone-zh-CN-overview.png", DOC_SHOT_HEIGHT_MAX)
    finally:
        context.close()
