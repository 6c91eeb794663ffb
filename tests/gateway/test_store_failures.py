"""Nothing is lost while the gateway lives: calls made while another process holds the database's write
lock are served and settled once each when it lets go; a reservation its call can no longer settle is
resolved by the sweep; a failing background loop carries on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from suanli.gateway.platform import Platform, Settings, demo_catalog_path
from suanli.gateway.recovery import resolve_stale_job
from suanli.ledger import ASSET_CNY, Kind, Transfer, entries
from suanli.ledger.names import ESCROW, wallet
from suanli.ledger.sqlite import apply_entry, open_account, open_pending, verify
from suanli.store.db import open_database, run_in_transaction
from suanli.store.usage import usage_event
from tests.conftest import Simulator, start_gateway, stop

CALLS = 12
LOCK_HELD_S = 1.0


def test_calls_during_a_locked_store_are_settled_once_each(simulator: Simulator, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, simulator)
    try:
        key = gateway.account("patient", topup_cny="1")
        body = {"model": "deepseek-v3.2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}
        answers: list[httpx.Response] = []

        def call() -> None:
            answers.append(
                httpx.post(
                    f"{gateway.url}/v1/chat/completions",
                    json=body,
                    timeout=30,
                    headers={"Authorization": f"Bearer {key}"},
                )
            )

        locker = sqlite3.connect(gateway.database, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # as a long CLI write would
        threads = [threading.Thread(target=call) for _ in range(CALLS)]
        for thread in threads:
            thread.start()
        time.sleep(LOCK_HELD_S)
        health = httpx.get(f"{gateway.url}/healthz", timeout=1)  # the loop is free while the store waits
        locker.execute("COMMIT")
        locker.close()
        for thread in threads:
            thread.join()
        assert health.status_code == 200
        assert [a.status_code for a in answers] == [200] * CALLS
        events = gateway.admin("GET", "/admin/v1/accounts/patient/usage").json()["data"]
        assert len(events) == CALLS and len({e["request_id"] for e in events}) == CALLS
        wallet_view = gateway.admin("GET", "/admin/v1/accounts/patient").json()["wallet"]
        assert wallet_view["reserved_nano"] == 0
        assert wallet_view["balance_nano"] == 10**9 - sum(e["cost_nano"] for e in events)
    finally:
        stop(gateway.process)
    conn = sqlite3.connect(gateway.database)
    try:
        verify(conn)
    finally:
        conn.close()


def test_the_sweep_resolves_reservations_older_than_any_call(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "s.db")
    try:

        def setup(c: sqlite3.Connection) -> None:
            for account in (wallet("a"), "platform:topup", ESCROW):
                open_account(c, account, ASSET_CNY, 0 if account != "platform:topup" else None)
            apply_entry(c, [Transfer("fund", Kind.POSTED, "platform:topup", wallet("a"), ASSET_CNY, 1000)])
            apply_entry(c, [entries.reservation("req_old", "a", 300)], "req_old")
            apply_entry(c, [entries.reservation("req_new", "a", 200)], "req_new")
            c.execute("UPDATE open_pending SET created_at_ms = 0 WHERE request_id = 'req_old'")

        run_in_transaction(conn, setup)
        report = run_in_transaction(conn, resolve_stale_job(older_than_ms=1))
        assert (report.posted, report.voided) == (0, 1)
        assert [request for _, request in open_pending(conn)] == ["req_new"]  # a live call's is left alone
        event = usage_event(conn, "req_old")
        assert event is not None and event.outcome == "recovered" and event.cost_nano == 0
        verify(conn)
    finally:
        conn.close()


def test_a_failing_background_loop_is_logged_counted_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    platform = Platform(Settings(tmp_path / "p.db", demo_catalog_path()))
    runs: list[int] = []
    third_run = asyncio.Event()

    async def step() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("the store went away")
        if len(runs) == 3:
            third_run.set()

    async def main() -> None:
        task = asyncio.ensure_future(platform._forever("sweep", step, 0.01))
        await asyncio.wait_for(third_run.wait(), 5)
        task.cancel()

    try:
        asyncio.run(main())
    finally:
        platform.reader.close()
    assert "the sweep loop failed" in caplog.text
    assert b'suanli_background_failures_total{loop="sweep"} 1.0' in platform.metrics.render()
