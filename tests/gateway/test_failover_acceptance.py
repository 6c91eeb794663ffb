"""Many operators, one API: with one operator down, one failing half its calls and one slow, every
request still succeeds; the down operator's breaker opens, and real calls close it again once it is back
(its probe, answered again, lets them try it at once). Every
served request is charged exactly once; failed attempts cost nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai

from suanli.ledger.sqlite import verify
from tests.conftest import Gateway, Simulator, free_port, start_gateway, stop, wait_http
from tests.stores import inspect

REQUESTS = 1000
CONCURRENCY = 20
RECOVERY_WAIT_S = 30.0

CATALOG = """
[operators.down]
base_url = "http://127.0.0.1:{down_port}/down/v1"
[operators.flaky]
base_url = "${{SIM_URL}}/flaky/v1"
[operators.slow]
base_url = "${{SIM_URL}}/slow/v1"
[models.resilient]

[[offers]]
operator = "down"
model = "resilient"
context_window = 100000
max_output_tokens = 100
price = {{ input = "1", output = "1" }}

[[offers]]
operator = "flaky"
model = "resilient"
context_window = 100000
max_output_tokens = 100
price = {{ input = "2", output = "2" }}

[[offers]]
operator = "slow"
model = "resilient"
context_window = 100000
max_output_tokens = 100
price = {{ input = "3", output = "3" }}
"""


def start_down_operator(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "suanli.cli", "simulate", "--port", str(port), "--operators", "down"]
    process = subprocess.Popen(command)
    wait_http(f"http://127.0.0.1:{port}/down/v1/models", process)
    return process


def offer_states(gateway: Gateway) -> dict[str, dict[str, Any]]:
    operators = gateway.admin("GET", "/admin/v1/operators").json()["data"]
    return {op["operator"]: op["offers"][0] for op in operators}


async def storm(gateway: Gateway, key: str) -> list[str]:
    queue = iter(range(REQUESTS))
    served: list[str] = []
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30) as client:

        async def worker() -> None:
            for n in queue:
                raw = await client.chat.completions.with_raw_response.create(
                    model="resilient",
                    messages=[{"role": "user", "content": f"request {n}"}],
                    max_tokens=8,
                    stream=n % 4 == 0,
                )
                if n % 4 == 0:
                    async for _ in raw.parse():  # type: ignore[union-attr]
                        pass
                served.append(raw.headers["x-suanli-operator"])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return served


def test_failover_and_recovery(simulator: Simulator, tmp_path: Path) -> None:
    down_port = free_port()
    gateway = start_gateway(tmp_path, simulator, catalog_text=CATALOG.format(down_port=down_port))
    simulator.set("flaky", error_rate_percent=50, error_status=503)
    simulator.set("slow", ttft_ms=5)
    down: subprocess.Popen[bytes] | None = None
    try:
        key = gateway.account("busy", topup_cny="100")
        served = asyncio.run(storm(gateway, key))
        assert len(served) == REQUESTS  # every request succeeded (an error would have raised)
        assert "down" not in served and {"flaky", "slow"} >= set(served)
        states = offer_states(gateway)
        assert states["down"]["state"] in ("open", "half_open")
        assert "upstream_unreachable" in states["down"]["reason"]

        down = start_down_operator(down_port)  # the operator comes back
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        recovery_calls = calls_until_closed(gateway, client)
        assert offer_states(gateway)["down"]["state"] == "closed"
        raw = client.chat.completions.with_raw_response.create(
            model="resilient", messages=[{"role": "user", "content": "x"}]
        )
        assert raw.headers["x-suanli-operator"] == "down"  # the cheapest is back in use
        assert_charged_once(gateway, "busy", REQUESTS + recovery_calls + 1)
    finally:
        simulator.reset("flaky")
        simulator.reset("slow")
        if down is not None:
            stop(down)
        stop(gateway.process)


def calls_until_closed(gateway: Gateway, client: openai.OpenAI) -> int:
    """Calls made, a few a second, until the down operator's breaker is closed: only real calls close it."""
    deadline = time.monotonic() + RECOVERY_WAIT_S
    calls = 0
    while offer_states(gateway)["down"]["state"] != "closed" and time.monotonic() < deadline:
        client.chat.completions.create(model="resilient", messages=[{"role": "user", "content": "x"}], max_tokens=8)
        calls += 1
        time.sleep(0.1)
    return calls


def assert_charged_once(gateway: Gateway, account: str, served: int) -> None:
    events = gateway.admin("GET", f"/admin/v1/accounts/{account}/usage", params={"limit": 5000}).json()["data"]
    assert len(events) == served and all(e["outcome"] == "ok" for e in events)
    conn = inspect(gateway.database)
    try:
        verify(conn)
        posts, posted = conn.execute("SELECT COUNT(*), SUM(amount) FROM transfers WHERE kind = 'post'").fetchone()
        voids = conn.execute("SELECT COUNT(*) FROM transfers WHERE kind = 'void'").fetchone()[0]
        failed = conn.execute("SELECT COUNT(*) FROM upstream_attempts WHERE outcome != 'ok'").fetchone()[0]
        paid_rows = conn.execute(
            "SELECT credit_account, SUM(amount) FROM transfers WHERE kind = 'posted' "
            "AND debit_account = 'platform:escrow' GROUP BY credit_account"
        ).fetchall()
        paid = dict(paid_rows)
    finally:
        conn.close()
    assert posts == served and voids == 0  # exactly one settlement per served request, none for failures
    assert posted == sum(e["cost_nano"] for e in events) == sum(paid.values())
    assert failed > 0 and "sales:down" in paid
