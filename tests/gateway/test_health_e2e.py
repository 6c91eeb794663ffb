"""Breakers learn from real traffic, end to end: an operator that hangs on every call but still answers its
probe (``GET /models``) keeps its breaker open; after it opens, at most one call in ten waits for it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from suanli.limits import BREAKER_CONSECUTIVE_FAILURES, BREAKER_OPEN_S, HEALTH_PROBE_INTERVAL_S
from tests.conftest import Simulator, start_gateway, stop

FIRST_BYTE_TIMEOUT_S = 0.3
CALL_GAP_S = 0.1  # a steady trickle of calls, as a client retrying its work would send
OPEN_WATCH_S = BREAKER_OPEN_S + 0.8  # the first open period, a trial, and three probes of a hanging operator

CATALOG = """
[operators.{hanging}]
base_url = "${{SIM_URL}}/{hanging}/v1"
first_byte_timeout_s = {first_byte_timeout_s}
[operators.{steady}]
base_url = "${{SIM_URL}}/{steady}/v1"
[models.patient]

[[offers]]
operator = "{hanging}"
model = "patient"
context_window = 100000
max_output_tokens = 100
price = {{ input = "1", output = "1" }}

[[offers]]
operator = "{steady}"
model = "patient"
context_window = 100000
max_output_tokens = 100
price = {{ input = "2", output = "2" }}
"""


def timed_call(client: httpx.Client) -> tuple[float, str]:
    """Seconds one call took, and the operator that served it."""
    started = time.monotonic()
    response = client.post(
        "/v1/chat/completions",
        json={"model": "patient", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
    )
    response.raise_for_status()
    return time.monotonic() - started, response.headers["x-suanli-operator"]


def hanging_state(client: httpx.Client, admin_key: str, operator: str) -> dict[str, object]:
    operators = client.get("/admin/v1/operators", headers={"Authorization": f"Bearer {admin_key}"}).json()["data"]
    return dict(next(op for op in operators if op["operator"] == operator)["offers"][0])


def test_a_hanging_operator_that_answers_its_probe_holds_at_most_one_call_in_ten(
    simulator: Simulator, tmp_path: Path, unique: str
) -> None:
    assert OPEN_WATCH_S > 2 * HEALTH_PROBE_INTERVAL_S  # long enough for the probe to have closed it before
    hanging, steady = f"hang-{unique}", f"steady-{unique}"
    simulator.set(hanging, hang=True)
    simulator.set(steady)
    catalog = CATALOG.format(hanging=hanging, steady=steady, first_byte_timeout_s=FIRST_BYTE_TIMEOUT_S)
    gateway = start_gateway(tmp_path, simulator, catalog_text=catalog)
    try:
        key = gateway.account(f"patient-{unique}")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
            opening = [timed_call(client) for _ in range(BREAKER_CONSECUTIVE_FAILURES)]
            assert all(waited >= FIRST_BYTE_TIMEOUT_S and by == steady for waited, by in opening)
            admin = gateway.env["SUANLI_ADMIN_KEY"]
            assert hanging_state(client, admin, hanging)["state"] == "open"

            watched: list[tuple[float, str]] = []
            until = time.monotonic() + OPEN_WATCH_S
            while time.monotonic() < until:
                watched.append(timed_call(client))
                time.sleep(CALL_GAP_S)
            state = hanging_state(client, admin, hanging)
    finally:
        simulator.reset(hanging)
        stop(gateway.process)

    waited = [s for s, _ in watched if s >= FIRST_BYTE_TIMEOUT_S]
    print(f"after the breaker opened: {len(waited)} of {len(watched)} calls waited for the hanging operator")
    assert all(by == steady for _, by in watched)  # every call served, by the operator that works
    assert len(watched) >= 20 and len(waited) * 10 <= len(watched), (len(waited), len(watched))
    assert len(waited) >= 1  # a trial call at the end of an open period (two if the machine was slow)
    assert state["state"] == "open" and str(state["reason"]).startswith("trial failed")
