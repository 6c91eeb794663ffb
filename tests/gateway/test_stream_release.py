"""Streams release everything exactly once, however the client leaves: before the first byte, at the
first event, mid-stream, after the usage chunk, or by never reading at all. Each case ends with the
offer's in-flight count back to 0, one usage event, and nothing left reserved."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Gateway, Simulator, start_gateway, stop

SETTLE_WAIT_S = 10.0
OFFER = "rough/styled"


def settled(gateway: Gateway, account: str, offer: str = OFFER) -> dict[str, Any]:
    """The account's one usage event, once the offer has nothing in flight and nothing is reserved."""
    deadline = time.monotonic() + SETTLE_WAIT_S
    while time.monotonic() < deadline:
        events = gateway.admin("GET", f"/admin/v1/accounts/{account}/usage").json()["data"]
        wallet = gateway.admin("GET", f"/admin/v1/accounts/{account}").json()["wallet"]
        if events and wallet["reserved_nano"] == 0 and in_flight(gateway, offer) == 0:
            [event] = events
            return dict(event)
        time.sleep(0.05)
    raise AssertionError(f"not released: in flight {in_flight(gateway, offer)}")


def in_flight(gateway: Gateway, offer: str) -> int:
    operators = gateway.admin("GET", "/admin/v1/operators").json()["data"]
    return int(next(o for op in operators for o in op["offers"] if o["offer"] == offer)["in_flight"])


def raw_request(gateway: Gateway, key: str, body: dict[str, Any]) -> socket.socket:
    """A streamed chat request written on a bare socket, so the test decides exactly when to stop reading."""
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    payload = orjson.dumps(body)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        piece = sock.recv(65536)
        assert piece, f"closed before {marker!r}"
        received += piece
    return received


BODY = {
    "model": "styled",
    "messages": [{"role": "user", "content": "a long story"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


@pytest.fixture
def slow_rough(simulator: Simulator) -> Iterator[None]:
    # The headers at once, the first token 0.3 s later, then 50 tokens a second: time to leave anywhere.
    simulator.set("rough", headers_first_ms=300, tokens_per_s=50, completion_tokens=100)
    yield
    simulator.reset("rough")


@pytest.mark.parametrize("leave_at", ["before-first-byte", "first-event", "mid-stream", "after-usage"])
def test_a_client_leaving_anywhere_releases_everything_once(
    gateway: Gateway, unique: str, slow_rough: None, leave_at: str
) -> None:
    key = gateway.account(unique, topup_cny="1")
    sock = raw_request(gateway, key, BODY)
    if leave_at == "first-event":
        read_until(sock, b"data: ")
    elif leave_at == "mid-stream":
        read_until(sock, b'"content":"')
        time.sleep(0.5)
    elif leave_at == "after-usage":
        read_until(sock, b'"choices":[],')
    sock.close()
    event = settled(gateway, unique)
    expected = {"after-usage": {"ok"}, "before-first-byte": {"client_gone"}}.get(leave_at, {"client_gone"})
    assert event["outcome"] in expected
    if leave_at == "before-first-byte":
        assert event["output_tokens"] == 0


def test_a_client_that_never_reads_is_let_go_after_the_write_timeout(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUANLI_CLIENT_WRITE_TIMEOUT_S", "1")
    gateway = start_gateway(tmp_path, simulator)
    simulator.set("alpha", completion_tokens=8192)  # 8 answers of 8,192 tokens: some 13 MB of events
    try:
        key = gateway.account("silent", topup_cny="10")
        body = {**BODY, "model": "deepseek-v3.2", "n": 8, "max_tokens": 8192}
        sock = raw_request(gateway, key, body)
        try:
            started = time.monotonic()
            event = settled(gateway, "silent", "alpha/deepseek-v3.2")  # without reading a byte
            assert event["outcome"] == "client_gone" and time.monotonic() - started < SETTLE_WAIT_S
            assert httpx.get(f"{gateway.url}/healthz", timeout=1).status_code == 200
        finally:
            sock.close()
    finally:
        simulator.reset("alpha")
        stop(gateway.process)
