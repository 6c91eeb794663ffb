"""kill -9 the gateway with reservations in flight; on restart every reservation is resolved."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from suanli.ledger.sqlite import verify
from tests.conftest import Simulator, start_gateway, stop
from tests.stores import inspect

IN_FLIGHT = 20
WAIT_S = 15.0


def open_reservations(database: Path) -> int:
    conn = sqlite3.connect(database)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM open_pending").fetchone()[0])
    finally:
        conn.close()


def test_reservations_in_flight_are_resolved_after_kill_9(simulator: Simulator, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, simulator)
    simulator.set("faulty", hang=True)
    try:
        key = gateway.account("victim", topup_cny="1")
        body = {"model": "faulty-model", "messages": [{"role": "user", "content": "never answered"}]}

        def call() -> None:
            with contextlib.suppress(httpx.TransportError):  # the gateway dies under it, as intended
                httpx.post(
                    f"{gateway.url}/v1/chat/completions",
                    json=body,
                    timeout=WAIT_S,
                    headers={"Authorization": f"Bearer {key}"},
                )

        threads = [threading.Thread(target=call) for _ in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + WAIT_S
        while open_reservations(gateway.database) < IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.02)
        assert open_reservations(gateway.database) == IN_FLIGHT
        gateway.process.send_signal(signal.SIGKILL)
        gateway.process.wait()
        for thread in threads:
            thread.join()
    finally:
        simulator.reset("faulty")
        stop(gateway.process)
    assert open_reservations(gateway.database) == IN_FLIGHT  # still reserved while nothing runs

    restarted = start_gateway(tmp_path, simulator, database=gateway.database)
    try:
        assert open_reservations(gateway.database) == 0
        view = restarted.admin("GET", "/admin/v1/accounts/victim").json()["wallet"]
        assert view["balance_nano"] == 10**9 and view["reserved_nano"] == 0
        events = restarted.admin("GET", "/admin/v1/accounts/victim/usage").json()["data"]
        assert len(events) == IN_FLIGHT and {e["outcome"] for e in events} == {"recovered"}
        assert all(e["cost_nano"] == 0 for e in events)
    finally:
        stop(restarted.process)
    conn = inspect(gateway.database)
    try:
        verify(conn)
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _no_leftover_faults(simulator: Simulator) -> None:
    simulator.reset("faulty")


def test_a_second_gateway_on_the_same_database_refuses_to_start(simulator: Simulator, tmp_path: Path) -> None:
    """It would recover, so void, the first one's live reservations; it says who holds the file and exits."""
    first = start_gateway(tmp_path, simulator)
    simulator.set("alpha", ttft_ms=1500)  # a slow answer, well within its operator's timeouts
    try:
        key = first.account("owner", topup_cny="1")
        body = {"model": "deepseek-v3.2", "messages": [{"role": "user", "content": "slow"}], "max_tokens": 5}
        answer: list[httpx.Response] = []
        call = threading.Thread(
            target=lambda: answer.append(
                httpx.post(
                    f"{first.url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=WAIT_S,
                )
            )
        )
        call.start()
        deadline = time.monotonic() + WAIT_S
        while open_reservations(first.database) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        command = [sys.executable, "-m", "suanli.cli", "serve", "--port", "9"]
        second = subprocess.run(command, check=False, env=first.env, capture_output=True, text=True, timeout=WAIT_S)
        assert second.returncode == 2 and second.stderr.startswith("error: another gateway serves")
        assert f"pid {first.process.pid} " in second.stderr
        assert second.stderr.count("\n") == 1  # one line, no traceback
        assert open_reservations(first.database) == 1  # the live reservation was left alone
        call.join()
        assert answer[0].status_code == 200  # and settled by its own gateway
        assert open_reservations(first.database) == 0
    finally:
        simulator.reset("alpha")
        stop(first.process)
    taken_over = start_gateway(tmp_path, simulator, database=first.database)  # the holder is gone: free again
    stop(taken_over.process)
