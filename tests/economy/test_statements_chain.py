"""A month's statement opens at the closing of the previous month's stored statement, so it reads the
period's rows and not the account's whole history: shown here by altering the stored closings (and their
SHA-256, as only someone with the database could) and finding them as the next month's openings. A range,
a month whose stored predecessor ends elsewhere (made under another zone) and a month with none still
open at the ledger's sums; a stored statement altered without its SHA-256 stops the next one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from suanli.economy import market, statements
from suanli.economy import statement_ledger as ledger
from suanli.errors import InvariantViolation
from suanli.pricing import TokenUsage
from suanli.store.accounts import find_account
from suanli.store.db import run_in_transaction
from tests.economy.test_funding import PRODUCTS, SHANGHAI, Shop, at
from tests.economy.test_statements import NANO_PER_CNY, Clock, settle, store_at

OCTOBER = statements.month_period("2026-10", SHANGHAI)
NOVEMBER = statements.month_period("2026-11", SHANGHAI)
ALTERED_NANO, ALTERED_TOKENS = 7, 3  # added to the stored October's closings


@pytest.fixture
def shop() -> Iterator[Shop]:
    """An account that topped up, bought a pack and drew on it in October, and called again in November."""
    clock = Clock(at("2026-10-20 12:00:00"))
    with store_at(clock) as shop:
        shop.topup(5 * NANO_PER_CNY)
        run_in_transaction(shop.conn, market.buy_pack_job(shop.account, "light", PRODUCTS))
        for when in ("2026-10-21 09:00:00", "2026-11-03 09:00:00"):
            clock.ms = at(when)
            funding = shop.reserve(clock.ms, input_max=40, output_max=30, order=("packs", "wallet"))
            settle(shop, funding, TokenUsage(input=30, output=20), clock.ms)
        clock.ms = NOVEMBER.end_ms + statements.CLOSE_GRACE_MS
        shop.clock = clock  # type: ignore[attr-defined]
        yield shop


def store_october(shop: Shop, zone: ZoneInfo = SHANGHAI) -> dict[str, Any]:
    period = statements.month_period("2026-10", zone)
    now = shop.clock.ms  # type: ignore[attr-defined]
    return run_in_transaction(shop.conn, statements.statement_job(shop.account, period, now))


def alter_stored(shop: Shop, number: str, *, rehash: bool) -> None:
    """Add to the stored statement's closings; with ``rehash``, store the altered body's SHA-256 too."""
    body = orjson.loads(shop.conn.execute("SELECT body FROM statements WHERE number = ?", (number,)).fetchone()[0])
    body["money"]["closing_nano"] += ALTERED_NANO
    for pack in body["packs"]:
        pack["closing"] += ALTERED_TOKENS
    text = statements.canonical(body)
    digest = hashlib.sha256(text).hexdigest() if rehash else None

    def job(conn: Any) -> None:
        conn.execute("UPDATE statements SET body = ? WHERE number = ?", (text.decode(), number))
        if digest is not None:
            conn.execute("UPDATE statements SET sha256 = ? WHERE number = ?", (digest, number))

    run_in_transaction(shop.conn, job)


def build(shop: Shop, period: statements.Period) -> dict[str, Any]:
    account = find_account(shop.conn, shop.account)
    return statements.build(shop.conn, account, period, shop.clock.ms)  # type: ignore[attr-defined]


def openings(statement: dict[str, Any]) -> tuple[int, list[int]]:
    return statement["money"]["opening_nano"], [p["opening"] for p in statement["packs"]]


def test_a_month_opens_at_the_stored_closing_of_the_month_before(shop: Shop) -> None:
    true = openings(build(shop, NOVEMBER))
    assert len(true[1]) == 1
    october = store_october(shop)
    assert (october["money"]["closing_nano"], [p["closing"] for p in october["packs"]]) == true
    alter_stored(shop, october["number"], rehash=True)
    november = build(shop, NOVEMBER)
    assert openings(november) == (true[0] + ALTERED_NANO, [t + ALTERED_TOKENS for t in true[1]])
    assert november["final"] is True  # closed, and checked: the altered opening plus the period's sum
    as_range = build(shop, statements.range_period(NOVEMBER.start_ms, NOVEMBER.end_ms, SHANGHAI))
    assert openings(as_range) == true  # a range sums the ledger


def test_a_stored_month_altered_without_its_digest_stops_the_next(shop: Shop) -> None:
    october = store_october(shop)
    alter_stored(shop, october["number"], rehash=False)
    with pytest.raises(InvariantViolation, match="altered"):
        build(shop, NOVEMBER)


def test_a_stored_month_that_ends_elsewhere_is_not_chained_from(shop: Shop) -> None:
    true = openings(build(shop, NOVEMBER))
    october = store_october(shop, ZoneInfo("UTC"))  # the zone was UTC then: October ended 8 hours later
    assert october["period"]["to_ms"] != NOVEMBER.start_ms
    alter_stored(shop, october["number"], rehash=True)
    assert openings(build(shop, NOVEMBER)) == true


def test_an_account_the_stored_month_did_not_list_opens_at_the_ledgers_balance(shop: Shop) -> None:
    """Every opening path for an account the previous statement left out gives the ledger's sum."""
    accounts = [
        row[0]
        for row in shop.conn.execute("SELECT id FROM ledger_accounts WHERE id LIKE 'wallet:%' OR id LIKE 'pack:%'")
    ]
    for at_ms in (OCTOBER.start_ms, at("2026-10-21 09:00:00"), NOVEMBER.start_ms, NOVEMBER.end_ms):
        for account in accounts:
            assert ledger.Openings({})(shop.conn, account, at_ms) == ledger.balance_before(shop.conn, account, at_ms)
