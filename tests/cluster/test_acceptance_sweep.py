"""The cluster sweep runs once: four workers sweeping every second forfeit 100 expired packs and renew 50
due subscriptions exactly once each (issue 11).

Packs and subscriptions are bought through the API; a pack's validity is whole days and a subscription's
month is a month, so the test then moves their dates into the past in the database, all in one transaction,
while the four workers' sweeps run.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from suanli.economy import windows
from suanli.store.db import now_ms
from tests.cluster.helpers import Cluster, query, running_cluster, verify_ledger
from tests.conftest import Simulator
from tests.pg import shared_server
from tests.stores import inspect

WORKERS = 4
PACK_ACCOUNTS, PACKS_EACH = 10, 10
SUBSCRIBERS = 50
BUYERS = 4  # accounts set up at once
PACK_TOKENS = 3000  # pack-small's
DAY_MS = 86_400_000
ZONE = ZoneInfo(windows.DEFAULT_TIMEZONE)  # the test catalog's
DONE_WITHIN_S = 15.0
ROUNDS_AFTER_S = 3.0  # every worker sweeps a few more times once all is done: nothing happens twice


def _account(cluster: Cluster, name: str, topup_cny: str, index: int) -> None:
    created = cluster[index % WORKERS].admin("POST", "/admin/v1/accounts", json={"name": name, "tier": "enterprise"})
    assert created.status_code == 201, created.text
    topup = cluster[(index + 1) % WORKERS].admin("POST", f"/admin/v1/accounts/{name}/topup", json={"amount": topup_cny})
    assert topup.status_code == 200, topup.text


def _packs(cluster: Cluster, unique: str, index: int) -> None:
    name = f"{unique}-packs{index}"
    _account(cluster, name, str(PACKS_EACH), index)
    for p in range(PACKS_EACH):
        bought = cluster[p % WORKERS].admin("POST", f"/admin/v1/accounts/{name}/packs", json={"product": "pack-small"})
        assert bought.status_code == 201, bought.text


def _subscriber(cluster: Cluster, unique: str, index: int) -> None:
    name = f"{unique}-sub{index}"
    _account(cluster, name, "2", index)  # the first month's fee, and the next
    subscribed = cluster[(index + 2) % WORKERS].admin(
        "POST", f"/admin/v1/accounts/{name}/subscription", json={"product": "plan-50"}
    )
    assert subscribed.status_code == 201, subscribed.text


def _buy(cluster: Cluster, unique: str) -> None:
    """100 packs over 10 accounts and 50 subscriptions, bought through every worker, several at a time."""
    with ThreadPoolExecutor(BUYERS) as pool:
        list(pool.map(partial(_packs, cluster, unique), range(PACK_ACCOUNTS)))
        list(pool.map(partial(_subscriber, cluster, unique), range(SUBSCRIBERS)))


def _make_due(database: str) -> int:
    """Every pack expired a second ago; every subscription started 40 days ago, so its month has ended and
    the next one started (its renewal's fee has an id of its own). The time it was done."""
    now = now_ms()
    anchor = now - 40 * DAY_MS
    start, end = windows.billing_month(anchor, anchor, ZONE)
    conn = inspect(database)
    try:
        conn.execute("BEGIN")
        conn.execute("UPDATE packs SET expires_at_ms = ?", (now - 1000,))
        conn.execute(
            "UPDATE subscriptions SET anchor_ms = ?, period_start_ms = ?, period_end_ms = ?", (anchor, start, end)
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return now


def _sweep_failures(cluster: Cluster) -> list[str]:
    """The sweep loop's failures each worker counted (gateway/metrics.py)."""
    lines = []
    for gateway in cluster.gateways:
        text = gateway.admin("GET", "/metrics").text
        lines += [line for line in text.splitlines() if line.startswith("suanli_background_failures_total")]
    return [line for line in lines if not line.endswith(" 0.0")]


def test_four_workers_forfeit_each_expired_pack_and_renew_each_due_subscription_once(
    simulator: Simulator, tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUANLI_SWEEP_INTERVAL_S", "1")  # start_gateway passes this process's environment on
    database = shared_server().new_database()
    with running_cluster(tmp_path, simulator, database, WORKERS) as cluster:
        _buy(cluster, unique)
        due_at = _make_due(database)
        deadline = time.monotonic() + DONE_WITHIN_S
        while time.monotonic() < deadline:
            left = query(
                database,
                "SELECT (SELECT count(*) FROM packs WHERE forfeited_at_ms IS NULL), "
                "(SELECT count(*) FROM subscriptions WHERE period_end_ms <= ?)",
                (due_at,),
            )
            if left == [(0, 0)]:
                break
            time.sleep(0.2)
        assert left == [(0, 0)], f"packs not forfeited, subscriptions not renewed: {left}"
        time.sleep(ROUNDS_AFTER_S)
        failures = _sweep_failures(cluster)

    forfeits = query(
        database,
        "SELECT p.id, count(t.id), coalesce(sum(t.amount), 0) FROM packs p LEFT JOIN "
        "transfers t ON t.debit_account = 'pack:' || p.id AND t.id LIKE p.id || '.forfeit.%' "
        "GROUP BY p.id",
    )
    assert len(forfeits) == PACK_ACCOUNTS * PACKS_EACH
    assert all(count == 1 and tokens == PACK_TOKENS for _, count, tokens in forfeits), [
        row for row in forfeits if row[1:] != (1, PACK_TOKENS)
    ]
    fees = query(
        database,
        "SELECT s.id, count(t.id), s.period_end_ms > ? FROM subscriptions s LEFT JOIN transfers t "
        "ON t.id LIKE s.id || '.fee.%' WHERE s.ended_at_ms IS NULL GROUP BY s.id, s.period_end_ms",
        (due_at,),
    )
    assert len(fees) == SUBSCRIBERS
    assert all(count == 2 and current for _, count, current in fees), [row for row in fees if row[1:] != (2, True)]
    wallets = query(
        database,
        "SELECT count(*) FROM ledger_accounts l JOIN accounts a ON l.id = 'wallet:' || a.id "
        "WHERE a.name LIKE ? AND l.credits_posted - l.debits_posted = 0",
        (f"{unique}-sub%",),
    )
    assert wallets == [(SUBSCRIBERS,)]  # each paid two months, no more
    assert failures == []  # no worker's sweep failed on another's work
    verify_ledger(database)
