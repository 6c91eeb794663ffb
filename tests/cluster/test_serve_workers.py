"""``suanli serve --workers N``: N processes on one port and one PostgreSQL database under uvicorn's
supervisor, which replaces a worker that dies; refused on SQLite; a bad database is one line before any
worker starts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import openai
import pytest

from suanli.http_server import GatewayServer, GatewayWorker, server_config
from suanli.store import pg
from tests.conftest import ADMIN_KEY, TEST_CATALOG, Gateway, Simulator, free_port, stop, wait_http
from tests.test_demo import without_settings

T = TypeVar("T")
SERVE = [sys.executable, "-m", "suanli.cli", "serve"]
RESTART_WAIT_S = 15.0  # a dead worker's replacement holds its lease within this
STOP_WAIT_S = 20.0  # SIGTERM: the workers' grace (SHUTDOWN_GRACE_S) and some


def eventually(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while (found := check()) is None:
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.1)
    return found


def leases(url: str) -> list[tuple[int, bool]]:
    """Every lease in the workers table: its process id, and whether it is still held (not ended)."""
    conn = pg.connect(url)
    try:
        return [(int(row[0]), bool(row[1])) for row in conn.execute("SELECT pid, ended_at IS NULL FROM workers")]
    finally:
        conn.close()


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def live_workers(url: str, count: int, dead: int = 0) -> list[int] | None:
    """The pids of ``count`` held leases whose processes run (``dead`` excluded), once there are."""
    pids = sorted(pid for pid, held in leases(url) if held and pid != dead and running(pid))
    return pids if len(pids) == count else None


def chat(gateway: Gateway, key: str) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20) as client:
        reply = client.chat.completions.create(
            model="deepseek-v3.2", messages=[{"role": "user", "content": "Hello"}], max_tokens=20
        )
    assert reply.choices[0].message.content and reply.usage is not None and reply.usage.total_tokens > 0


def requests_counted(gateway: Gateway) -> float:
    metrics = gateway.admin("GET", "/metrics")
    metrics.raise_for_status()
    lines = metrics.text.splitlines()
    assert any(line.startswith("suanli_breaker_state{") and 'worker="' in line for line in lines)
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("suanli_requests_total{"))


@contextlib.contextmanager
def serving(simulator: Simulator, database: str, tmp_path: Path, workers: int) -> Iterator[Gateway]:
    """``suanli serve --workers N``, given its database and catalog as flags (so they must reach the
    workers); whatever is left of its process group is killed at the end."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(TEST_CATALOG)
    port = free_port()
    upstream_keys = {"ALPHA_KEY": "sk-upstream-alpha-secret", "GAMMA_KEY": "sk-upstream-gamma-secret"}
    env = {**without_settings(), **upstream_keys, "SIM_URL": simulator.url, "SUANLI_ADMIN_KEY": ADMIN_KEY}
    flags = ["--workers", str(workers), "--database", database, "--catalog", str(catalog)]
    command = [*SERVE, "--port", str(port), *flags]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        yield Gateway(f"http://127.0.0.1:{port}", database, env, process)
    finally:
        stop(process)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_two_workers_serve_one_database_and_a_killed_one_is_replaced(
    simulator: Simulator, pg_url: str, tmp_path: Path
) -> None:
    with serving(simulator, pg_url, tmp_path, workers=2) as gateway:
        first = eventually(lambda: live_workers(pg_url, 2), RESTART_WAIT_S, "two workers hold leases")
        key = gateway.account("cluster")  # account, top-up and key: each call may reach either worker
        chat(gateway, key)
        for _ in range(4):  # whichever worker answers counts the call, wherever it was served
            assert requests_counted(gateway) == 1

        os.kill(first[0], signal.SIGKILL)
        now = eventually(lambda: live_workers(pg_url, 2, dead=first[0]), RESTART_WAIT_S, "a new worker")
        assert first[1] in now and len(leases(pg_url)) == 3
        chat(gateway, key)

        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(STOP_WAIT_S) == 0
        assert not any(running(pid) for pid in now)
        assert [pid for pid, held in leases(pg_url) if held] == [first[0]]  # the others ended theirs
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{gateway.url}/healthz", timeout=2)


def test_workers_stop_and_end_their_leases_when_the_supervisor_is_killed(
    simulator: Simulator, pg_url: str, tmp_path: Path
) -> None:
    with serving(simulator, pg_url, tmp_path, workers=2) as gateway:
        workers = eventually(lambda: live_workers(pg_url, 2), RESTART_WAIT_S, "two workers hold leases")
        gateway.process.send_signal(signal.SIGKILL)  # the supervisor, with no chance to stop its workers
        gateway.process.wait(STOP_WAIT_S)
        eventually(lambda: not any(running(pid) for pid in workers) or None, STOP_WAIT_S, "the workers stopped")
        held = [pid for pid, is_held in leases(pg_url) if is_held]
        assert not set(held) & set(workers)  # ended by the workers themselves, not left to be reclaimed


def test_workers_on_sqlite_are_refused_with_one_line(tmp_path: Path) -> None:
    database = tmp_path / "suanli.db"
    command = [*SERVE, "--workers", "2", "--database", str(database), "--port", "1"]
    done = subprocess.run(command, env=without_settings(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == (
        "error: --workers 2 needs PostgreSQL (set SUANLI_DATABASE_URL); one SQLite file is served by one process\n"
    )
    assert not database.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unreachable_database_is_one_line_before_any_worker_starts(workers: str) -> None:
    env = {**without_settings(), "SUANLI_DATABASE_URL": "postgresql://suanli@127.0.0.1:1/none"}
    command = [*SERVE, "--workers", workers, "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot reach PostgreSQL at postgresql://suanli@127.0.0.1:1/none: ")
    assert len(done.stderr.splitlines()) == 1


def test_each_worker_serves_with_the_gateways_server() -> None:
    worker = GatewayWorker(server_config(lambda: None, "127.0.0.1", free_port(), workers=2), [])
    try:
        assert isinstance(worker.server, GatewayServer)  # its bounds on shutdown (http_server.py)
    finally:
        worker.parent_conn.close()
        worker.child_conn.close()
