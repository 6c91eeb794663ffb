"""The gateway's upstream HTTP/1.1 client against real sockets: keep-alive, pool limits, timeouts, chunked
bodies and unreachable operators (stale connections, resending and the pool's waits: test_http1_bounds.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from suanli.catalog import Operator, Timeouts
from suanli.errors import UpstreamError, UpstreamTimeout
from suanli.providers.http1 import Http1Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK_BODY = b'{"ok": true}'


def operator(port: int, timeouts: Timeouts | None = None) -> Operator:
    return Operator("test", f"http://127.0.0.1:{port}/v1", "openai", "sk-secret", "", timeouts or Timeouts())


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


def answer(body: bytes = OK_BODY, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (
        status,
        len(body),
        body,
    )


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    """Serve ``handler`` on a free port; each connection is closed when its handler ends or is cancelled."""

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def keep_alive_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        request = await read_request(reader)
        assert b"Authorization: Bearer sk-secret" in request and b"POST /v1/chat" in request
        writer.write(answer())
        await writer.drain()


def test_sequential_calls_reuse_one_connection() -> None:
    async def scenario() -> None:
        server, port = await serve(keep_alive_handler)
        upstream = Http1Upstream(operator(port))
        for _ in range(5):
            response = await upstream.send("/chat", b"{}")
            assert response.status == 200 and await response.read() == OK_BODY
        assert upstream.connections_open == 1
        await upstream.close()
        server.close()

    asyncio.run(scenario())


def test_the_pool_never_opens_more_than_its_limit() -> None:
    async def scenario() -> None:
        server, port = await serve(keep_alive_handler)
        upstream = Http1Upstream(operator(port), connections_max=2)
        most = 0

        async def call() -> bytes:
            nonlocal most
            response = await upstream.send("/chat", b"{}")
            most = max(most, upstream.connections_open)
            return await response.read()

        assert await asyncio.gather(*(call() for _ in range(20))) == [OK_BODY] * 20
        assert most == 2
        await upstream.close()
        server.close()

    asyncio.run(scenario())


def test_chunked_answers_and_error_statuses_pass_through() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 2\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        await writer.drain()

    async def scenario() -> None:
        server, port = await serve(chunked)
        upstream = Http1Upstream(operator(port))
        response = await upstream.send("/chat", b"{}")
        assert response.status == 503 and response.headers["retry-after"] == "2"
        assert [chunk async for chunk in response.chunks()] in ([b"hello", b" world"], [b"hello world"])
        await upstream.close()
        server.close()

    asyncio.run(scenario())


def test_no_answer_in_time_is_an_upstream_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def scenario() -> None:
        server, port = await serve(silent)
        upstream = Http1Upstream(operator(port, Timeouts(first_byte_s=0.2)))
        with pytest.raises(UpstreamTimeout):
            await upstream.send("/chat", b"{}")
        assert upstream.connections_open == 0  # the abandoned connection is not reused
        await upstream.close()
        server.close()

    asyncio.run(scenario())


def test_a_stream_going_quiet_is_an_upstream_timeout() -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndata: 1\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def scenario() -> None:
        server, port = await serve(stalls)
        upstream = Http1Upstream(operator(port, Timeouts(idle_s=0.2)))
        response = await upstream.send("/chat", b"{}")
        chunks = response.chunks()
        assert await anext(chunks) == b"data: 1"
        with pytest.raises(UpstreamTimeout):
            await anext(chunks)
        await upstream.close()
        server.close()

    asyncio.run(scenario())


def test_an_unreachable_operator_is_an_upstream_error() -> None:
    async def scenario() -> None:
        server, port = await serve(keep_alive_handler)
        server.close()
        await server.wait_closed()
        upstream = Http1Upstream(operator(port))
        with pytest.raises(UpstreamError) as caught:
            await upstream.send("/chat", b"{}")
        assert caught.value.code == "upstream_unreachable"
        await upstream.close()

    asyncio.run(scenario())


def test_a_large_body_arrives_whole() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: more than the buffer, so reading pauses and resumes

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(body))
        await writer.drain()

    async def scenario() -> None:
        server, port = await serve(big)
        upstream = Http1Upstream(operator(port))
        response = await upstream.send("/chat", b"{}")
        received = b""
        async for chunk in response.chunks():
            received += chunk
            await asyncio.sleep(0)
        assert received == body
        await upstream.close()
        server.close()

    asyncio.run(scenario())


def test_an_anthropic_endpoint_gets_anthropic_credentials_at_its_own_base_url() -> None:
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(answer())
        await writer.drain()

    async def scenario() -> None:
        server, port = await serve(handler)
        both = Operator(
            "test",
            f"http://127.0.0.1:{port}/v1",
            "openai",
            "sk-secret",
            "",
            Timeouts(),
            anthropic_base_url=f"http://127.0.0.1:{port}/anthropic",
        )
        for protocol in ("anthropic", "openai"):
            upstream = Http1Upstream(both, protocol=protocol)
            response = await upstream.send("/v1/messages" if protocol == "anthropic" else "/chat/completions", b"{}")
            assert response.status == 200 and await response.read() == OK_BODY
            await upstream.close()
        server.close()

    asyncio.run(scenario())
    native, openai = requests
    assert native.startswith(b"POST /anthropic/v1/messages HTTP/1.1")
    assert b"x-api-key: sk-secret\r\n" in native and b"anthropic-version: 2023-06-01\r\n" in native
    assert b"Authorization" not in native
    assert openai.startswith(b"POST /v1/chat/completions") and b"Authorization: Bearer sk-secret" in openai
    assert b"x-api-key" not in openai
