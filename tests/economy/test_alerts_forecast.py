"""A ``balance.below`` alert's forecast is the wallet's as of the crossing (docs/statements.md, *Alerts and
webhooks*), on the real store (both): a body fixed days later, after more spending, says what a forecast at
the crossing said, not what one says then."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from suanli.economy import alerts
from suanli.economy.forecast import forecast
from suanli.ledger import ASSET_CNY, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account
from suanli.store.accounts import find_account
from suanli.store.conn import Conn
from suanli.store.db import now_ms, open_database, run_in_transaction
from suanli.store.usage import insert_usage_event
from tests.stores import fresh_database
from tests.usage_events import usage_event

ZONE = ZoneInfo("Asia/Shanghai")
SINK = "platform:sink"
CNY = 1_000_000_000  # nano
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
FORECAST_KEYS = ("days", "runs_out_at", "runs_out_at_ms")
_ids = itertools.count()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Conn]:
    db = open_database(fresh_database(tmp_path, "forecast.db"))

    def setup(c: Conn) -> None:
        for account in (ledger_names.TOPUP_SOURCE, SINK):
            open_account(c, account, ASSET_CNY, None)

    run_in_transaction(db, setup)
    try:
        yield db
    finally:
        db.close()


def _account(conn: Conn, floor: int, threshold: int) -> str:
    account_id = f"acct_fc{next(_ids)}"

    def setup(c: Conn) -> None:
        c.execute(
            "INSERT INTO accounts (id, name, tier, created_at_ms) VALUES (?, ?, 'enterprise', ?)",
            (account_id, account_id, now_ms()),
        )
        open_account(c, ledger_names.wallet(account_id), ASSET_CNY, floor)
        alerts.save_settings(c, account_id, alerts.AlertSettings(balance_below_nano=threshold))

    run_in_transaction(conn, setup)
    return account_id


def _move(conn: Conn, debit: str, credit: str, amount: int) -> None:
    transfer = Transfer(f"fc.{next(_ids)}", Kind.POSTED, debit, credit, ASSET_CNY, amount)
    run_in_transaction(conn, lambda c: apply_entry(c, [transfer]))


def _spent(conn: Conn, account_id: str, at_ms: int, cost_nano: int) -> None:
    """A call's usage event at ``at_ms`` (what the rate is read from; its money is moved apart)."""
    event = usage_event(f"req_fc{next(_ids)}", account_id, cost_nano=cost_nano, created_at_ms=at_ms)
    run_in_transaction(conn, lambda c: insert_usage_event(c, event))


def _run_out(conn: Conn, account_id: str, at_ms: int) -> dict[str, object]:
    balance = forecast(conn, find_account(conn, account_id), at_ms, ZONE)["balance"]
    return {k: balance[k] for k in FORECAST_KEYS}


@pytest.mark.parametrize(("floor", "days"), [(0, "10.0"), (-2 * CNY, "15.0")])  # a credit limit counts
def test_the_balance_alerts_forecast_is_taken_at_the_crossing_not_when_its_body_is_fixed(
    conn: Conn, floor: int, days: str
) -> None:
    account_id = _account(conn, floor, threshold=5 * CNY)
    wallet = ledger_names.wallet(account_id)
    _move(conn, ledger_names.TOPUP_SOURCE, wallet, 10 * CNY)
    base = now_ms()  # the crossing is at or after this; the history well before it
    for ago_ms, cost in ((8 * DAY_MS, 50 * CNY), (6 * DAY_MS, CNY), (3 * DAY_MS, CNY), (HOUR_MS, 8 * CNY // 10)):
        _spent(conn, account_id, base - ago_ms, cost)  # 2.8 in the 7 days: 0.4 a day (the 8th day back is out)
    _move(conn, wallet, SINK, 6 * CNY)  # 10 → 4, below 5: the crossing
    ((event_id, crossed_at),) = conn.execute(
        "SELECT id, created_at_ms FROM alert_events WHERE account_id = ?", (account_id,)
    ).fetchall()
    at_crossing = _run_out(conn, account_id, crossed_at)
    assert at_crossing["days"] == days  # (4 + the credit limit) ÷ 0.4 a day
    assert at_crossing["runs_out_at_ms"] == crossed_at + int(days[:-2]) * DAY_MS

    later = crossed_at + 3 * DAY_MS  # the body is fixed days after, once more has been spent faster
    for after_ms in (HOUR_MS, DAY_MS, 2 * DAY_MS):
        _spent(conn, account_id, crossed_at + after_ms, 2 * CNY)
    _move(conn, wallet, SINK, 3 * CNY)
    assert run_in_transaction(conn, alerts.prepare_job(ZONE)) == 1
    body = orjson.loads(conn.execute("SELECT body FROM alert_events WHERE id = ?", (event_id,)).fetchone()[0])

    assert body["data"]["balance_nano"] == 4 * CNY
    assert body["data"]["forecast"] == at_crossing
    assert _run_out(conn, account_id, later) != at_crossing  # what a forecast at fixing time would have said
