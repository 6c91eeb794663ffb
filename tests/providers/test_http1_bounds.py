"""The upstream client's bounded waits and its resend rule, against real servers that count what they got.

- A full pool: a call waits at most the acquire timeout for a connection, then ``UpstreamBusy`` (503 with
  ``retry-after``); a connection released in time is handed over; a call cancelled while waiting leaks
  nothing.
- Keep-alive expiry: an idle pooled connection is closed after ``keepalive_expiry_s``, not reused.
- Resending: a POST is never sent twice. An idle connection the server closed is found closed before
  anything is written on it (even when the event loop has not seen the close yet), and the request goes
  on a fresh connection; a POST the server received and then dropped is an ``UpstreamError`` (failover
  takes it elsewhere). Only the probe's GET is sent again on a fresh connection.

The servers run in threads with blocking sockets, so that what they received is counted whatever the
client's event loop is doing (and a test can keep that loop from seeing a close).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import pytest

from suanli.catalog import Operator, Timeouts
from suanli.errors import UpstreamBusy, UpstreamError
from suanli.limits import UPSTREAM_KEEPALIVE_EXPIRY_S, UPSTREAM_POOL_ACQUIRE_TIMEOUT_S
from suanli.providers.http1 import Http1Upstream

OK_BODY = b'{"ok": true}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(OK_BODY), OK_BODY)
ACQUIRE_TIMEOUT_S = 0.3
SERVER_JOIN_TIMEOUT_S = 5.0
SETTLE_S = 0.1  # for a close to reach the other end
SLOW_ANSWER_S = 0.5  # how long the busy server takes over each answer


@dataclass
class Counts:
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, head: bytes) -> int:
        with self.lock:
            self.requests.append(head.split(b"\r\n", 1)[0])
            return len(self.requests)


def read_request(conn: socket.socket) -> bytes | None:
    """One request's head and body, or None if the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


Handler = Callable[[socket.socket, Counts], None]


@contextmanager
def counting_server(handler: Handler) -> Iterator[tuple[int, Counts]]:
    """A server in a thread, one more thread per connection, each running ``handler``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    counts = Counts()
    stopping = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn, suppress(OSError):
            handler(conn, counts)

    def accept() -> None:
        listener.settimeout(0.05)
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with counts.lock:
                counts.connections += 1
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], counts
    finally:
        stopping.set()
        thread.join(SERVER_JOIN_TIMEOUT_S)
        listener.close()


def keep_alive(conn: socket.socket, counts: Counts) -> None:
    while read_request(conn) is not None:
        counts.request(b"")
        conn.sendall(ANSWER)


def answer_then_close(conn: socket.socket, counts: Counts) -> None:
    """Answer one request (without saying it will close, as a server timing out idle connections does),
    then close."""
    if read_request(conn) is not None:
        counts.request(b"")
        conn.sendall(ANSWER)


def answer_then_drop_the_next(conn: socket.socket, counts: Counts) -> None:
    """Answer the first request; read the second one whole, then close without answering it."""
    for answered in (True, False):
        if read_request(conn) is None:
            return
        counts.request(b"")
        if answered:
            conn.sendall(ANSWER)


def operator(port: int) -> Operator:
    return Operator("test", f"http://127.0.0.1:{port}/v1", "openai", "sk-secret", "", Timeouts(first_byte_s=5.0))


# --- a full pool -----------------------------------------------------------------------------------------


def slow_answers(conn: socket.socket, counts: Counts) -> None:
    while read_request(conn) is not None:
        counts.request(b"")
        time.sleep(SLOW_ANSWER_S)
        conn.sendall(ANSWER)


def test_a_call_finding_the_pool_full_gives_up_after_the_acquire_timeout() -> None:
    assert 0 < UPSTREAM_POOL_ACQUIRE_TIMEOUT_S <= 5  # a few seconds, then 503

    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port), connections_max=1, pool_acquire_timeout_s=ACQUIRE_TIMEOUT_S)
        holder = asyncio.create_task(client.send("/chat", b"{}"))  # holds the one connection a while
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(UpstreamBusy) as caught:
            await client.send("/chat", b"{}")
        waited_s = time.monotonic() - started
        assert ACQUIRE_TIMEOUT_S <= waited_s < ACQUIRE_TIMEOUT_S + 0.2
        assert caught.value.status == 503 and caught.value.code == "upstream_busy"
        assert caught.value.headers == {"retry-after": "1"}
        response = await holder
        assert await response.read() == OK_BODY
        await client.close()

    with counting_server(slow_answers) as (port, counts):
        asyncio.run(scenario(port))
    assert len(counts.requests) == 1  # the call that gave up sent nothing


def test_a_connection_released_within_the_acquire_timeout_is_handed_over() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port), connections_max=1, pool_acquire_timeout_s=2.0)
        responses = await asyncio.gather(*(client.send("/chat", b"{}") for _ in range(2)))
        assert [await r.read() for r in responses] == [OK_BODY, OK_BODY]
        assert client.connections_open == 1
        await client.close()

    with counting_server(slow_answers) as (port, counts):
        asyncio.run(scenario(port))
    assert (counts.connections, len(counts.requests)) == (1, 2)


def test_a_call_cancelled_while_waiting_for_the_pool_leaks_nothing() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port), connections_max=1, pool_acquire_timeout_s=5.0)
        holder = asyncio.create_task(client.send("/chat", b"{}"))
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(client.send("/chat", b"{}")) for _ in range(3)]
        await asyncio.sleep(0.05)
        for task in waiting:
            task.cancel()
        await (await holder).read()
        response = await asyncio.wait_for(client.send("/chat", b"{}"), 3.0)  # the connection came back
        assert await response.read() == OK_BODY
        assert client.connections_open == 1
        await client.close()

    with counting_server(slow_answers) as (port, counts):
        asyncio.run(scenario(port))
    assert len(counts.requests) == 2


# --- keep-alive expiry -----------------------------------------------------------------------------------


def test_an_idle_connection_is_closed_after_the_keepalive_expiry() -> None:
    assert 0 < UPSTREAM_KEEPALIVE_EXPIRY_S < 5  # below the 5 s after which many servers close theirs
    expiry_s = 0.2

    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port), keepalive_expiry_s=expiry_s)
        assert await (await client.send("/chat", b"{}")).read() == OK_BODY
        assert await (await client.send("/chat", b"{}")).read() == OK_BODY  # reused while fresh
        assert (client.connections_open, client.connections_idle) == (1, 1)
        await asyncio.sleep(expiry_s + SETTLE_S)
        assert (client.connections_open, client.connections_idle) == (0, 0)  # closed by the pool's timer
        assert await (await client.send("/chat", b"{}")).read() == OK_BODY
        await client.close()

    with counting_server(keep_alive) as (port, counts):
        asyncio.run(scenario(port))
    assert (counts.connections, len(counts.requests)) == (2, 3)


def test_an_expired_connection_is_not_reused_even_before_the_timer_runs() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port), keepalive_expiry_s=0.2)
        assert await (await client.send("/chat", b"{}")).read() == OK_BODY
        time.sleep(0.3)  # noqa: ASYNC251 - blocks the event loop on purpose: the expiry timer cannot run
        assert await (await client.send("/chat", b"{}")).read() == OK_BODY
        await client.close()

    with counting_server(keep_alive) as (port, counts):
        asyncio.run(scenario(port))
    assert (counts.connections, len(counts.requests)) == (2, 2)


# --- resending -------------------------------------------------------------------------------------------


def test_an_idle_connection_the_server_closed_is_not_written_on() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port))
        for _ in range(3):
            assert await (await client.send("/chat", b"{}")).read() == OK_BODY
            await asyncio.sleep(SETTLE_S)  # the event loop sees the server's close
        await client.close()

    with counting_server(answer_then_close) as (port, counts):
        asyncio.run(scenario(port))
    assert (counts.connections, len(counts.requests)) == (3, 3)


def test_a_close_the_event_loop_has_not_seen_yet_is_found_before_writing() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port))
        for _ in range(3):
            assert await (await client.send("/chat", b"{}")).read() == OK_BODY
            time.sleep(SETTLE_S)  # noqa: ASYNC251 - blocks the loop on purpose: the close waits unread on the socket
        await client.close()

    with counting_server(answer_then_close) as (port, counts):
        asyncio.run(scenario(port))
    assert (counts.connections, len(counts.requests)) == (3, 3)


def test_a_post_the_server_received_and_dropped_is_never_sent_again() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port))
        assert await (await client.send("/chat", b"{}")).read() == OK_BODY
        with pytest.raises(UpstreamError) as caught:
            await client.send("/chat", b"{}")  # read by the server, then its connection closed
        assert caught.value.code == "upstream_error"
        await client.close()

    with counting_server(answer_then_drop_the_next) as (port, counts):
        asyncio.run(scenario(port))
    assert (counts.connections, len(counts.requests)) == (1, 2)  # not 3: the second POST went out once


def test_the_probes_get_is_sent_again_on_a_fresh_connection() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port))
        assert await client.probe("/models", 2.0)
        assert await client.probe("/models", 2.0)  # dropped on the kept connection, answered on a fresh one
        await client.close()

    with counting_server(answer_then_drop_the_next) as (port, counts):
        asyncio.run(scenario(port))
    assert (counts.connections, len(counts.requests)) == (2, 3)


def test_a_probe_finding_the_pool_full_has_no_verdict() -> None:
    async def scenario(port: int) -> None:
        client = Http1Upstream(operator(port), connections_max=1, pool_acquire_timeout_s=ACQUIRE_TIMEOUT_S)
        holder = asyncio.create_task(client.send("/chat", b"{}"))
        await asyncio.sleep(0.05)
        assert await client.probe("/models", 2.0) is None
        await (await holder).read()
        assert await client.probe("/models", 2.0) is True
        await client.close()

    with counting_server(slow_answers) as (port, _):
        asyncio.run(scenario(port))
