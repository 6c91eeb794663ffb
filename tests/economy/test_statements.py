"""Statements over random histories on the real store, with the clock driven across month ends: every
statement reconciles (opening + movements = closing, in money, in tokens and in each budget window, in the
JSON and in the CSV), consecutive months chain, the last one closes at the ledger's balances, every budget
window a call opened is shown, and a closed month's stored statement never changes."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from suanli.cli import main
from suanli.economy import market, statements, statements_csv, statements_pdf
from suanli.economy import names as econ_names
from suanli.economy import statement_ledger as ledger
from suanli.economy.contracts import Tier
from suanli.economy.funding import Funding, adjust_settlement, settlement_transfers
from suanli.economy.statement_lines import BUDGET_LATE_MS
from suanli.errors import BadRequest, Conflict, PaymentRequired, RateLimited
from suanli.gateway import accounts as ops
from suanli.ledger import ASSET_CNY
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account, read_balance, verify
from suanli.money import nano_to_cny
from suanli.pricing import TokenUsage
from suanli.store.accounts import find_account
from suanli.store.conn import Conn
from suanli.store.db import open_database, run_in_transaction
from suanli.store.usage import UsageEvent, insert_usage_event
from tests.conftest import TEST_CATALOG
from tests.economy.test_funding import PRICE_NANO, PRODUCTS, SHANGHAI, Shop, at
from tests.stores import database_env, fresh_database
from tests.usage_events import usage_event

HOUR_MS = 3_600_000
START = at("2026-10-29 12:00:00")
MONTHS = ("2026-10", "2026-11", "2026-12", "2027-01")
NANO_PER_CNY = 1_000_000_000


class Clock:
    """The store's clock (``store.db.now_ms``), moved by the test."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def time_ns(self) -> int:
        return self.ms * 1_000_000


@contextmanager
def store_at(clock: Clock) -> Iterator[Shop]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch("suanli.store.db.time", SimpleNamespace(time_ns=clock.time_ns)),
    ):
        conn = open_database(fresh_database(Path(tmp), "s.db"))
        try:
            shop = Shop(conn)
            run_in_transaction(conn, lambda c: open_account(c, ledger_names.UNCHARGED, ASSET_CNY, None))
            run_in_transaction(conn, ops.create_account_job("friend", "enterprise"))
            run_in_transaction(conn, market.trust_job("acme", "friend"))
            yield shop
        finally:
            conn.close()


def event_for(
    shop: Shop, request_id: str, usage: TokenUsage, cost: int, now: int, *, model: str = "chat"
) -> UsageEvent:
    return usage_event(
        request_id,
        shop.account,
        offer_id=f"op/{model}",
        input_tokens=usage.input,
        output_tokens=usage.output,
        price_input_nano=PRICE_NANO,
        price_output_nano=PRICE_NANO,
        cost_nano=cost,
        created_at_ms=now,
    )


def settle(shop: Shop, funding: Funding, usage: TokenUsage, now: int, model: str = "chat") -> None:
    """Settle as the gateway does: transfers, overruns and the contract's rebate, and the usage event, in
    one transaction."""
    request_id = (funding.wallet or funding.legs[0].reservation).id.split(".")[0]
    cost = usage.total * PRICE_NANO
    settled = settlement_transfers(request_id, funding, usage, cost, "op")

    def job(conn: Conn) -> None:
        apply_entry(conn, settled.transfers, request_id)
        event = adjust_settlement(
            conn,
            event_for(shop, request_id, usage, cost, now, model=model),
            settled=settled,
            contract=None,
            zone=SHANGHAI,
            lookup_contract=True,
        )
        insert_usage_event(conn, event)

    run_in_transaction(shop.conn, job)


# Budgets set by the real job, small enough that calls run some out (refused: RateLimited).
BUDGETS = (
    ("day", "tokens", 300),
    ("week", "cny", 200 * PRICE_NANO),
    ("month", "tokens", 1_000),
    ("week", "tokens", 150),
)
ORDERS = (("wallet",), ("packs", "wallet"), ("subscription", "packs", "wallet"), ("packs",), ("subscription",))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("topup"), st.integers(1, 5 * NANO_PER_CNY)),
        st.tuples(st.just("pack"), st.just(0)),
        st.tuples(st.just("subscribe"), st.sampled_from([0, 1])),
        st.tuples(st.just("call"), st.integers(0, len(ORDERS) - 1)),
        st.tuples(st.just("late_call"), st.integers(0, len(ORDERS) - 1)),
        st.tuples(st.just("overrun"), st.integers(0, len(ORDERS) - 1)),
        st.tuples(st.just("share"), st.integers(1, 400)),
        st.tuples(st.just("expire"), st.just(0)),
        st.tuples(st.just("wait"), st.integers(1, 20 * 24)),
        st.tuples(st.just("budget"), st.integers(0, len(BUDGETS) - 1)),
    ),
    max_size=14,
)


def step(shop: Shop, clock: Clock, action: str, arg: int) -> None:
    conn, account = shop.conn, shop.account
    clock.ms += HOUR_MS
    try:
        if action == "topup":
            shop.topup(arg)
        elif action == "pack":
            run_in_transaction(conn, market.buy_pack_job(account, "light", PRODUCTS))
        elif action == "subscribe":
            product = ("weekly", "lite")[arg]
            run_in_transaction(conn, market.subscribe_job(account, product, PRODUCTS, SHANGHAI, at_ms=clock.ms))
        elif action in ("call", "late_call", "overrun"):
            funding = shop.reserve(clock.ms, input_max=40, output_max=30, order=ORDERS[arg])
            if action == "late_call":
                clock.ms += 3 * 24 * HOUR_MS  # across a month's end, often enough
            usage = TokenUsage(input=60, output=50) if action == "overrun" else TokenUsage(input=30, output=20)
            settle(shop, funding, usage, clock.ms)
        elif action == "share":
            pack = conn.execute("SELECT id FROM packs WHERE account_id = ? ORDER BY id", (account,)).fetchone()
            if pack is not None:
                run_in_transaction(
                    conn, market.transfer_tokens_job(pack[0], "friend", arg, memo="", made_by="t", owner_id=None)
                )
        elif action == "budget":
            run_in_transaction(conn, market.set_budget_job(account, None, *BUDGETS[arg]))
        elif action == "expire":
            clock.ms += 31 * 24 * HOUR_MS
            run_in_transaction(conn, market.expire_packs_job(at_ms=clock.ms))
        else:
            clock.ms += arg * HOUR_MS
    except (PaymentRequired, RateLimited, BadRequest, Conflict):
        pass  # refused: nothing moved


def month_statements(shop: Shop, now: int) -> list[dict[str, Any]]:
    account = find_account(shop.conn, shop.account)
    return [statements.build(shop.conn, account, statements.month_period(m, SHANGHAI), now) for m in MONTHS]


def sections(statement: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Each ledger account's (opening, closing) in the statement."""
    money = statement["money"]
    found = {money["ledger_account"]: (money["opening_nano"], money["closing_nano"])}
    for section in statement["packs"] + statement["allowances"] + statement["budgets"]:
        found[section["ledger_account"]] = (section["opening"], section["closing"])
    return found


def assert_reconciles(statement: dict[str, Any]) -> None:
    money = statement["money"]
    assert money["opening_nano"] + sum(money["totals"].values()) == money["closing_nano"]
    listed = sum(line["amount_nano"] for key in ("topups", "purchases", "other") for line in money[key])
    assert listed - money["usage"]["charged_nano"] + money["rebates"]["amount_nano"] == (
        money["closing_nano"] - money["opening_nano"]
    )
    for section in statement["packs"] + statement["allowances"]:
        assert section["opening"] + sum(section["totals"].values()) == section["closing"]
        assert_draws_add_up(section)
    for model in money["usage"]["models"]:
        assert model["list_nano"] == sum(c["tokens"] * c["unit_price_nano"] for c in model["classes"])
    for budget in statement["budgets"]:
        totals = budget["totals"]
        assert budget["opening"] + sum(totals.values()) == budget["closing"]
        assert totals["granted"] in (0, budget["granted"]) and totals["used"] <= 0 and totals["other"] == 0
        assert 0 <= budget["closing"] <= budget["granted"] and budget["draws"] <= -totals["used"]
        assert budget["window_start_ms"] < statement["period"]["to_ms"]
        if budget["window_end_ms"] <= statement["period"]["from_ms"]:  # ended before: shown for a late settlement
            assert budget["window_end_ms"] > statement["period"]["from_ms"] - BUDGET_LATE_MS
            assert budget["lines"] or any(totals.values()) or budget["pending"]["reservations"]
    assert_csv_budgets_add_up(statement)
    assert_csv_draws_add_up(statement)


def assert_draws_add_up(section: dict[str, Any]) -> None:
    """A pack's or window's draws by model and class add up to its draws, to the token (or request)."""
    usage = section["usage"]
    assert usage["drawn"] == -section["totals"]["drawn"] == sum(m["drawn"] for m in usage["models"])
    assert usage["unattributed"] == sum(m["unattributed"] for m in usage["models"])
    for model in usage["models"]:
        classed = sum(c["tokens"] for c in model["classes"])
        assert classed + model["unattributed"] == model["drawn"] if usage["unit"] == "tokens" else classed == 0


def assert_csv_draws_add_up(statement: dict[str, Any]) -> None:
    """In the CSV, each pack's and window's ``usage:`` rows add up to its ``drawn`` row, negated."""
    drawn: dict[str, int] = {}
    broken_down: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO(statements_csv.render(statement))):
        if row["line"] == "drawn" and not row["section"].startswith("budget:"):
            drawn[row["section"]] = -int(row["tokens"])
        elif row["section"].startswith("usage:"):
            name = row["section"].removeprefix("usage:")
            broken_down[name] = broken_down.get(name, 0) + int(row["tokens"])
    assert broken_down == drawn


def assert_csv_budgets_add_up(statement: dict[str, Any]) -> None:
    """In the CSV, each budget window's rows add up: opening + movement rows = closing."""
    added: dict[str, list[int]] = {}
    for row in csv.DictReader(io.StringIO(statements_csv.render(statement))):
        if row["section"].startswith("budget:") and row["line"] != "pending":
            units = int(row["amount_nano"] or row["tokens"])
            sums = added.setdefault(row["section"], [0, 0])
            sums[row["line"] == "closing"] += units
    assert set(added) == {b["ledger_account"] for b in statement["budgets"]}
    assert all(moved == closing for moved, closing in added.values())


def assert_the_pdf_lists_the_budgets(months: list[dict[str, Any]]) -> None:
    """The first month with budget windows, as a PDF: its budgets' table names each window's budget."""
    statement = next((m for m in months if m["budgets"]), None)
    if statement is not None:
        text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(statements_pdf.render(statement))).pages)
        assert "Budgets (CNY or tokens)" in text and "■" not in text
        assert all(b["budget"] in text for b in statement["budgets"])


def assert_every_budget_window_is_shown(shop: Shop, months: list[dict[str, Any]]) -> None:
    """Each budget window a call opened (granted) before the last month's end is in some month's statement."""
    end = months[-1]["period"]["to_ms"]
    rows = shop.conn.execute(
        "SELECT id FROM ledger_accounts WHERE id LIKE 'budget:%' AND created_at_ms < ?", (end,)
    ).fetchall()
    assert {row[0] for row in rows} == {b["ledger_account"] for m in months for b in m["budgets"]}


def assert_chained(shop: Shop, months: list[dict[str, Any]]) -> None:
    """Consecutive months chain (one's closing is the next's opening), and an account a stored month left out
    opens at the ledger's sum whichever way it is found (never moved before, not moved since, summed)."""
    unlisted = ledger.Openings({})
    for before, after in pairwise(months):
        closing, opening = sections(before), sections(after)
        for account in closing.keys() & opening.keys():
            assert closing[account][1] == opening[account][0]
        start = after["period"]["from_ms"]
        for account in closing.keys() | opening.keys():
            assert unlisted(shop.conn, account, start) == ledger.balance_before(shop.conn, account, start)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=steps, later=steps)
def test_statements_reconcile_chain_and_stay_fixed_once_closed(
    history: list[tuple[str, int]], later: list[tuple[str, int]]
) -> None:
    clock = Clock(START)
    with store_at(clock) as shop:
        run_in_transaction(
            shop.conn, market.set_contract_job("acme", 10 * NANO_PER_CNY, (Tier(0, 100), Tier(2_000, 90)))
        )
        shop.topup(NANO_PER_CNY)
        for action, arg in history:
            step(shop, clock, action, arg)
        october = statements.month_period("2026-10", SHANGHAI)
        clock.ms = max(clock.ms, october.end_ms + statements.CLOSE_GRACE_MS)
        stored = run_in_transaction(shop.conn, statements.statement_job("acme", october, clock.ms))
        assert stored["final"] is True
        for action, arg in later:
            step(shop, clock, action, arg)
        verify(shop.conn)
        months = month_statements(shop, clock.ms)
        for statement in months:
            assert_reconciles(statement)
        assert_every_budget_window_is_shown(shop, months)
        assert_the_pdf_lists_the_budgets(months)
        assert_chained(shop, months)
        last = (
            month_statements(shop, clock.ms)[-1]
            if clock.ms < statements.month_period(MONTHS[-1], SHANGHAI).end_ms
            else None
        )
        if last is not None:
            for account, (_, closing_amount) in sections(last).items():
                balance = read_balance(shop.conn, account)
                assert balance is not None and balance.posted == closing_amount
        again = run_in_transaction(shop.conn, statements.statement_job("acme", october, clock.ms + HOUR_MS))
        assert again == stored


def test_a_call_settled_after_the_month_end_is_in_the_next_statement_as_late(shop_at_month_end: Shop) -> None:
    shop = shop_at_month_end
    clock: Clock = shop.clock  # type: ignore[attr-defined]
    shop.topup(NANO_PER_CNY)
    funding = shop.reserve(clock.ms, input_max=40, output_max=30, order=("wallet",))
    november = month_statements(shop, clock.ms)[1]
    assert november["money"]["pending"] == {"reservations": 1, "reserved_nano": 70 * PRICE_NANO}
    clock.ms = at("2026-12-01 00:00:05")
    settle(shop, funding, TokenUsage(input=30, output=20), clock.ms)
    november, december = month_statements(shop, clock.ms)[1:3]
    assert november["money"]["usage"]["calls"] == 0 and november["money"]["closing_nano"] == NANO_PER_CNY
    late = december["money"]["late_settlements"]
    assert [(x["call_made_ms"], x["settled_ms"], x["amount_nano"]) for x in late] == [
        (at("2026-11-30 23:59:59"), clock.ms, -50 * PRICE_NANO)
    ]
    usage = december["money"]["usage"]["models"]
    assert [(m["model"], m["calls"], m["charged_nano"]) for m in usage] == [("chat", 1, 50 * PRICE_NANO)]
    assert [(c["class"], c["tokens"], c["unit_price_nano"]) for c in usage[0]["classes"]] == [
        ("input", 30, PRICE_NANO),
        ("output", 20, PRICE_NANO),
    ]
    assert december["money"]["pending"]["reservations"] == 0


def test_bad_periods_are_refused() -> None:
    for month in ("2026-13", "2026-1", "26-11", "", "2026-11-01"):
        with pytest.raises(BadRequest):
            statements.month_period(month, SHANGHAI)
    with pytest.raises(BadRequest):
        statements.range_period(10, 10, SHANGHAI)
    with pytest.raises(BadRequest):
        statements.range_period(0, 400 * 24 * HOUR_MS, SHANGHAI)


@pytest.fixture
def shop_at_month_end() -> Iterator[Shop]:
    clock = Clock(at("2026-11-30 23:59:59"))
    with store_at(clock) as shop:
        shop.clock = clock  # type: ignore[attr-defined]
        yield shop


def test_the_statement_number_and_the_stored_digest(shop_at_month_end: Shop) -> None:
    shop = shop_at_month_end
    november = statements.month_period("2026-11", SHANGHAI)
    now = november.end_ms + statements.CLOSE_GRACE_MS
    body = run_in_transaction(shop.conn, statements.statement_job("acme", november, now))
    assert body["number"] == f"ST-2026-11-{shop.account.removeprefix('acct_')}"
    digest = body.pop("sha256")
    assert statements.with_digest(body)["sha256"] == digest
    row = shop.conn.execute("SELECT sha256, month FROM statements WHERE number = ?", (body["number"],)).fetchone()
    assert tuple(row) == (digest, "2026-11")
    assert econ_names.PLANS  # the plans account the purchases go to exists in every statement's world


def cli(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> Any:
    """Run a ``suanli`` command in-process and return what it printed (JSON when asked for, else text)."""
    status = main([*args, "--database", str(db)])
    out = capsys.readouterr().out
    assert status == 0, out
    return orjson.loads(out) if "--json" in args else out


def pdf_text(path: Path) -> tuple[int, str]:
    reader = PdfReader(path)
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


NAME = "Acme <b>示例 & co"  # Chinese for the English PDF's fonts, markup for its paragraphs


def test_the_cli_statement_as_json_csv_and_pdf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(TEST_CATALOG)
    monkeypatch.setenv("SUANLI_CATALOG", str(catalog))
    monkeypatch.setenv("SIM_URL", "http://127.0.0.1:9")
    for name, value in database_env(fresh_database(tmp_path, "s.db"), tmp_path).items():
        monkeypatch.setenv(name, value)
    db = tmp_path / "s.db"  # on PostgreSQL SUANLI_DATABASE_URL wins over --database
    account = cli(capsys, db, "account", "create", NAME, "--tier", "enterprise", "--json")["account"]
    cli(capsys, db, "wallet", "topup", NAME, "12.5", "--idempotency-key", "pay-1", "--json")
    bought = cli(capsys, db, "pack", "buy", NAME, "pack-late", "--json")
    month = datetime.now(SHANGHAI).strftime("%Y-%m")  # the test catalog's zone
    body = cli(capsys, db, "statement", NAME, "--month", month, "--json")
    money = body["money"]
    assert body["number"] == f"ST-{month}-{account['id'].removeprefix('acct_')}" and body["final"] is False
    assert body["account"]["name"] == NAME
    assert money["opening_nano"] == 0 and money["closing_nano"] == 10_500_000_000
    assert money["opening_nano"] + sum(money["totals"].values()) == money["closing_nano"]
    assert [t["amount_nano"] for t in money["topups"]] == [12_500_000_000]
    assert [(p["type"], p["amount_nano"]) for p in money["purchases"]] == [("pack", -2_000_000_000)]
    assert bought["pack"]["id"] in money["purchases"][0]["id"]
    assert [(p["opening"], p["closing"]) for p in body["packs"]] == [(0, 100_000)]

    rows = list(csv.DictReader(io.StringIO(cli(capsys, db, "statement", NAME, "--month", month, "--csv"))))
    assert rows[0]["id"] == body["number"] and rows[0]["detail"] == NAME
    by_line = {r["line"]: int(r["amount_nano"]) for r in rows if r["section"] == "money"}
    assert by_line == {
        "opening": 0,
        "topup": 12_500_000_000,
        "purchase:pack": -2_000_000_000,
        "rebates": 0,
        "closing": 10_500_000_000,
        "pending": 0,
    }

    english, chinese = tmp_path / "en.pdf", tmp_path / "zh.pdf"
    cli(capsys, db, "statement", NAME, "--month", month, "--pdf", "--output", str(english))
    cli(capsys, db, "statement", NAME, "--month", month, "--pdf", "--output", str(chinese), "--lang", "zh-CN")
    pages, text = pdf_text(english)
    closing = re.escape(nano_to_cny(money["closing_nano"]))
    assert pages == 1 and body["number"] in text and NAME in text and "■" not in text  # no missing glyphs
    assert re.search(rf"Closing balance\s+{closing}\b", text) and "Suanli 算力 — Statement" in text
    assert re.search(r"Top-up \S+\s+12\.5\b", text) and re.search(r"Purchase: .*\s+-2\b", text)
    pages, text = pdf_text(chinese)
    assert pages == 1 and body["number"] in text and NAME in text and "■" not in text
    assert "对账单编号" in text and re.search(rf"期末余额\s+{closing}\b", text)
