"""What failing over costs: a request whose first operator refuses the connection, against one that goes
straight to a healthy operator, through the same gateway in the same run.

    .venv/bin/python bench/bench_failover.py [--rounds 60] [--gateway-cpu 1]

Each offer has its own circuit breaker, which opens after a few failures and then spares requests the
failed attempt. To time many failovers, the catalog offers many models, each from a refusing operator
(cheapest, so tried first) and from the healthy one; each model serves ``FAILOVERS_PER_MODEL`` requests
before its breaker opens. Baseline requests go to a model only the healthy operator offers, interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from bench_ttft import (
    ADMIN_KEY,
    free_port,
    funded_key,
    keep_off_cpu,
    pinned,
    running,
    suanli_command,
)

FAILOVERS_PER_MODEL = 4  # fewer than BREAKER_CONSECUTIVE_FAILURES, so every one of them fails over
ROUNDS_DEFAULT = 60
OFFER = """
[[offers]]
operator = "{operator}"
model = "{model}"
context_window = 100000
max_output_tokens = 100
price = {{ input = "{price}", output = "{price}" }}
"""


def catalog(simulator_url: str, refused_port: int, rounds: int) -> str:
    text = f'[operators.up]\nbase_url = "{simulator_url}/up/v1"\n'
    text += f'[operators.refused]\nbase_url = "http://127.0.0.1:{refused_port}/v1"\n[models.base]\n'
    text += OFFER.format(operator="up", model="base", price="2")
    for n in range(rounds):
        text += f"[models.m{n}]\n" + OFFER.format(operator="refused", model=f"m{n}", price="1")
        text += OFFER.format(operator="up", model=f"m{n}", price="2")
    return text


def timed(client: httpx.Client, model: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.post(
        "/v1/chat/completions", json={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000, int(response.headers["x-suanli-attempts"])


def measure(gateway_url: str, key: str, rounds: int) -> tuple[list[float], list[float]]:
    direct: list[float] = []
    failover: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=30) as client:
        for _ in range(20):
            timed(client, "base")  # warm up connections and caches
        for n in range(rounds):
            for _ in range(FAILOVERS_PER_MODEL):
                ms, attempts = timed(client, f"m{n}")
                if attempts == 2:
                    failover.append(ms)
                direct.append(timed(client, "base")[0])
    return direct, failover


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT, help="models to fail over on")
    parser.add_argument("--gateway-cpu", type=int, default=None, help="pin the gateway to this CPU (taskset)")
    args = parser.parse_args()
    keep_off_cpu(args.gateway_cpu)
    simulator_port, gateway_port, refused_port = free_port(), free_port(), free_port()
    simulator_url, gateway_url = f"http://127.0.0.1:{simulator_port}", f"http://127.0.0.1:{gateway_port}"
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as scratch:
        directory = Path(scratch)
        (directory / "catalog.toml").write_text(catalog(simulator_url, refused_port, args.rounds))
        env = {
            **os.environ,
            "SUANLI_DATABASE": str(directory / "s.db"),
            "SUANLI_ADMIN_KEY": ADMIN_KEY,
            "SUANLI_CATALOG": str(directory / "catalog.toml"),
        }
        simulate = suanli_command("simulate", "--port", str(simulator_port), "--operators", "up")
        serve = pinned(suanli_command("serve", "--port", str(gateway_port)), args.gateway_cpu)
        with running(simulate, dict(os.environ), directory / "sim.log", f"{simulator_url}/v1/models"):
            key = funded_key(env)
            with running(serve, env, directory / "gw.log", f"{gateway_url}/healthz"):
                direct, failover = measure(gateway_url, key, args.rounds)
    p50_direct, p50_failover = statistics.median(direct), statistics.median(failover)
    print(
        f"failover requests={len(failover)} direct_p50_ms={p50_direct:.3f} failover_p50_ms={p50_failover:.3f} "
        f"added_p50_ms={p50_failover - p50_direct:.3f}"
    )


if __name__ == "__main__":
    main()
