"""A statement breaks each pack's and allowance window's draws down by model and token class, from the usage
events of the calls that drew, and the breakdown adds up to what the ledger drew: a draw with no usage
event, or one the call's classes don't add up to (a pack that weighs them), is counted as unattributed,
never dropped. In the JSON, the CSV and the PDF in both languages."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from pypdf import PdfReader

from suanli.economy import market, statements, statements_csv, statements_pdf
from suanli.economy.statement_lines import NO_EVENT
from suanli.pricing import TokenUsage
from suanli.store.accounts import find_account
from suanli.store.db import run_in_transaction
from tests.economy.test_funding import PRODUCTS, SHANGHAI, Shop, at
from tests.economy.test_statements import NANO_PER_CNY, Clock, settle, store_at

USAGE = TokenUsage(input=30, output=20)


@pytest.fixture
def drawn() -> Iterator[tuple[Shop, dict[str, Any]]]:
    """November's statement of an account that drew an unweighted pack (one call with its usage event,
    one without), a weighted pack and a window counting requests."""
    clock = Clock(at("2026-11-10 12:00:00"))
    with store_at(clock) as shop:
        shop.topup(20 * NANO_PER_CNY)
        for product in ("elsewhere", "light"):
            run_in_transaction(shop.conn, market.buy_pack_job(shop.account, product, PRODUCTS))
        run_in_transaction(shop.conn, market.subscribe_job(shop.account, "weekly", PRODUCTS, SHANGHAI, at_ms=clock.ms))
        for model, order, with_event in (
            ("other", ("packs",), True),
            ("other", ("packs",), False),
            ("chat", ("packs",), True),
            ("chat", ("subscription",), True),
            ("chat", ("subscription",), False),
        ):
            clock.ms += 60_000
            funding = shop.reserve(clock.ms, input_max=40, output_max=30, model=model, order=order)
            if with_event:
                settle(shop, funding, USAGE, clock.ms, model)
            else:
                shop.settle(funding, USAGE)  # the transfers alone: the call left no usage event
        account = find_account(shop.conn, shop.account)
        yield shop, statements.build(shop.conn, account, statements.month_period("2026-11", SHANGHAI), clock.ms)


def by_model(section: dict[str, Any]) -> list[tuple[str, int, int, list[tuple[str, int]], int]]:
    return [
        (m["model"], m["calls"], m["drawn"], [(c["class"], c["tokens"]) for c in m["classes"]], m["unattributed"])
        for m in section["usage"]["models"]
    ]


def test_draws_are_broken_down_by_model_and_class_and_add_up(drawn: tuple[Shop, dict[str, Any]]) -> None:
    _, statement = drawn
    plain, weighted = sorted(statement["packs"], key=lambda p: p["product"])
    assert (plain["product"], weighted["product"]) == ("elsewhere", "light")
    assert by_model(plain) == [
        (NO_EVENT, 1, 50, [], 50),
        ("other", 1, 50, [("input", 30), ("output", 20)], 0),
    ]
    assert plain["usage"]["drawn"] == -plain["totals"]["drawn"] == 100 and plain["usage"]["unattributed"] == 50
    # The light pack weighs output twice: 30 + 2 × 20 pack tokens, which the call's classes don't add up to.
    assert by_model(weighted) == [("chat", 1, 70, [], 70)]
    assert weighted["usage"]["drawn"] == -weighted["totals"]["drawn"] == 70
    (window,) = statement["allowances"]
    assert window["usage"]["unit"] == "requests"
    assert by_model(window) == [(NO_EVENT, 1, 1, [], 1), ("chat", 1, 1, [], 0)]
    assert window["usage"]["drawn"] == -window["totals"]["drawn"] == 2


def test_the_csv_and_the_pdf_show_the_breakdown(drawn: tuple[Shop, dict[str, Any]]) -> None:
    _, statement = drawn
    plain = next(p for p in statement["packs"] if p["product"] == "elsewhere")
    rows = [
        (r["line"], r["model"], r["token_class"], int(r["tokens"]))
        for r in csv.DictReader(io.StringIO(statements_csv.render(statement)))
        if r["section"] == f"usage:{plain['ledger_account']}"
    ]
    assert rows == [
        ("unattributed", NO_EVENT, "", 50),
        ("tokens", "other", "input", 30),
        ("tokens", "other", "output", 20),
    ]
    window = statement["allowances"][0]["ledger_account"]
    requests = [
        (r["line"], r["model"], int(r["tokens"]))
        for r in csv.DictReader(io.StringIO(statements_csv.render(statement)))
        if r["section"] == f"usage:{window}"
    ]
    assert requests == [("unattributed", NO_EVENT, 1), ("requests", "chat", 1)]
    for lang, heading, unattributed in (
        ("en", "Packs and allowances drawn, by model and token class", "not attributed to a class"),
        ("zh-CN", "资源包与额度的使用（按模型与 Token 类别）", "未归入类别"),
    ):
        pdf = PdfReader(io.BytesIO(statements_pdf.render(statement, lang)))
        text = "\n".join(page.extract_text() for page in pdf.pages)
        assert heading in text and unattributed in text and "■" not in text
        assert "input" in text and "other" in text
