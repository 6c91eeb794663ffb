"""A full upstream pool, end to end: with every connection to an operator held by calls it never answers,
one more call gets 503 ``upstream_busy`` with ``retry-after`` within the pool's acquire timeout (not after
the first-byte timeout, nor never), and the operator's breaker does not count it against the operator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from suanli.limits import UPSTREAM_CONNECTIONS_PER_OPERATOR_MAX, UPSTREAM_POOL_ACQUIRE_TIMEOUT_S
from tests.conftest import Gateway, Simulator, start_gateway

FIRST_BYTE_TIMEOUT_S = 20  # the held calls outlast the test
HOLD_START_TIMEOUT_S = 10.0

CATALOG = """
[operators.{name}]
base_url = "${{SIM_URL}}/{name}/v1"
first_byte_timeout_s = {first_byte_timeout_s}
[models.crowded]

[[offers]]
operator = "{name}"
model = "crowded"
context_window = 100000
max_output_tokens = 100
price = {{ input = "1", output = "1" }}
"""
BODY = {"model": "crowded", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


def offer_health(gateway: Gateway, operator: str) -> dict[str, object]:
    operators = gateway.admin("GET", "/admin/v1/operators").json()["data"]
    return dict(next(op for op in operators if op["operator"] == operator)["offers"][0])


async def fill_the_pool_and_call_once_more(gateway: Gateway, key: str, operator: str) -> tuple[httpx.Response, float]:
    limits = httpx.Limits(max_connections=UPSTREAM_CONNECTIONS_PER_OPERATOR_MAX + 8)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, limits=limits, timeout=60) as client:
        held = [
            asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
            for _ in range(UPSTREAM_CONNECTIONS_PER_OPERATOR_MAX)
        ]
        deadline = time.monotonic() + HOLD_START_TIMEOUT_S
        while offer_health(gateway, operator)["in_flight"] != UPSTREAM_CONNECTIONS_PER_OPERATOR_MAX:
            assert time.monotonic() < deadline, "the held calls did not all start"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # the last of them connect
        started = time.monotonic()
        response = await client.post("/v1/chat/completions", json=BODY)
        waited_s = time.monotonic() - started
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
    return response, waited_s


def test_a_full_pool_answers_503_with_retry_after_within_the_acquire_timeout(
    simulator: Simulator, tmp_path: Path, unique: str
) -> None:
    operator = f"crowded-{unique}"
    simulator.set(operator, hang=True)
    catalog = CATALOG.format(name=operator, first_byte_timeout_s=FIRST_BYTE_TIMEOUT_S)
    gateway = start_gateway(tmp_path, simulator, catalog_text=catalog)
    try:
        key = gateway.account(f"crowd-{unique}")
        response, waited_s = asyncio.run(fill_the_pool_and_call_once_more(gateway, key, operator))
        health = offer_health(gateway, operator)
    finally:
        simulator.reset(operator)
        # Killed, not stopped: the held calls' clients left, but a call without a stream is not told so
        # until its operator answers, and SIGTERM would wait out the shutdown grace for them.
        gateway.process.kill()
        gateway.process.wait()
    print(f"a call finding the pool full waited {waited_s:.2f} s for its {response.status_code}")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "upstream_busy"
    assert UPSTREAM_POOL_ACQUIRE_TIMEOUT_S <= waited_s < UPSTREAM_POOL_ACQUIRE_TIMEOUT_S + 1.0
    assert health["failures_total"] == 0 and health["state"] == "closed"  # the platform's limit, not the operator's
