"""No request takes the event loop from the others: 8 large prompts in flight at all times, half from a
funded key (counted off the event loop, then refused: too long for any context window), half from an
empty wallet (refused before its body is even read), while another tenant's small calls keep their
latency and /healthz keeps answering."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import orjson
import pytest

from tests.conftest import Gateway

IN_FLIGHT = 8
PROMPT_CHARS = 4 * 1024 * 1024 - 4096  # just under the 4 MiB body limit
SMALL_CALLS = 20
HEALTHZ_MAX_S = 0.05
HEALTHZ_SANE_S = 1.0
HEALTHZ_CALLS = 20
TIMING_SLACK_S = 0.002  # at a p50 of 2-3 ms, the machine's own scheduling noise is a millisecond or two
HAMMER = """
import signal, sys, threading, httpx, orjson
url, funded, broke, in_flight, PAUSE_S = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), 0.1
payload = sys.stdin.read().encode()
stop, statuses = threading.Event(), set()
signal.signal(signal.SIGTERM, lambda *_: stop.set())

def hammer(key):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.wait(PAUSE_S):  # each of the 8 sends its next prompt soon after its last was answered
            statuses.add(client.post("/v1/chat/completions", content=payload, headers=headers).status_code)

threads = [threading.Thread(target=hammer, args=(funded if n % 2 else broke,)) for n in range(in_flight)]
for thread in threads:
    thread.start()
print("started", flush=True)
for thread in threads:
    thread.join()
print(orjson.dumps(sorted(statuses)).decode())
"""


def small_call_latencies(gateway: Gateway, key: str) -> list[float]:
    body = {"model": "deepseek-v3.2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    latencies = []
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(SMALL_CALLS):
            started = time.perf_counter()
            client.post("/v1/chat/completions", json=body).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


@dataclass(frozen=True)
class Measured:
    idle_p50_s: float
    loaded_p50_s: float
    healthz_s: list[float]
    statuses: set[int]


def measure_under_flood(gateway: Gateway, unique: str) -> Measured:
    other = gateway.account(f"{unique}-other", topup_cny="10")
    funded = gateway.account(f"{unique}-big", topup_cny="10")
    broke = gateway.account(f"{unique}-broke", topup_cny=None)
    idle = statistics.median(small_call_latencies(gateway, other))
    # glm-5's context window (200,000) is more than the prompt's length alone rules out (4M / 128 = 32k), so
    # a funded key's prompt is counted in full (some 1.4M tokens) and then refused: never sent upstream.
    text = ("token ledger quote price pack " * (PROMPT_CHARS // 29))[:PROMPT_CHARS]  # one byte a character
    payload = orjson.dumps({"model": "glm-5", "messages": [{"role": "user", "content": text}], "max_tokens": 5})
    # The large calls come from another process, so this one's measurements share no interpreter with them.
    hammer = subprocess.Popen(
        [sys.executable, "-c", HAMMER, gateway.url, funded, broke, str(IN_FLIGHT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert hammer.stdin is not None and hammer.stdout is not None
    hammer.stdin.write(payload.decode())
    hammer.stdin.close()
    try:
        assert hammer.stdout.readline().strip() == "started"
        time.sleep(0.5)
        loaded = statistics.median(small_call_latencies(gateway, other))
        healthz = []
        for _ in range(HEALTHZ_CALLS):
            started = time.perf_counter()
            httpx.get(f"{gateway.url}/healthz").raise_for_status()
            healthz.append(time.perf_counter() - started)
    finally:
        hammer.send_signal(signal.SIGTERM)
        statuses = set(orjson.loads(hammer.stdout.read() or "[]"))
        hammer.stdout.close()
        hammer.wait(60)
    print(f"idle p50 {idle * 1e3:.1f} ms, loaded p50 {loaded * 1e3:.1f} ms, healthz max {max(healthz) * 1e3:.1f} ms")
    return Measured(idle, loaded, healthz, statuses)


def test_large_prompts_are_refused_while_other_tenants_are_served(gateway: Gateway, unique: str) -> None:
    measured = measure_under_flood(gateway, unique)
    # Counted, then refused for its length (400); refused unread for want of money (402).
    assert measured.statuses == {400, 402}
    # Counted on the loop, each 4 MB prompt took it for a second or more (8 in flight: /healthz waited
    # 14 s); a bound that loose holds on any machine, the figures below are for a quiet one.
    assert max(measured.healthz_s) < HEALTHZ_SANE_S and measured.loaded_p50_s < HEALTHZ_SANE_S


@pytest.mark.slow
def test_large_prompts_do_not_slow_other_tenants(gateway: Gateway, unique: str) -> None:
    """A timing figure, for a quiet machine (docs/reliability.md): not in the default suite."""
    measured = measure_under_flood(gateway, unique)
    assert measured.loaded_p50_s <= 2 * measured.idle_p50_s + TIMING_SLACK_S
    # The 90th percentile: on two cores shared with the flood's own sender, the gateway's thread is
    # sometimes off the CPU altogether for a few tens of milliseconds, whatever it does.
    assert sorted(measured.healthz_s)[int(HEALTHZ_CALLS * 0.9) - 1] < HEALTHZ_MAX_S
