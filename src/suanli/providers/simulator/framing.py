"""Close-delimited response bodies: the framing of an operator whose streams end when the socket closes.

HTTP/1.1 allows a response with neither ``Transfer-Encoding`` nor ``Content-Length``: its body ends when
the server closes the connection (RFC 9112 §6.3, rule 8). Some operators' proxies stream that way, and a
client that only knows chunked bodies reads such a stream wrong, or takes a cut for a normal end. uvicorn
always chunks a body of unknown length, so the simulator's uvicorn speaks through ``CloseDelimitedProtocol``:
uvicorn's own httptools protocol, which frames by closing the connection any response whose app marks it
with CLOSE_DELIMITED_HEADER (the marker itself is never sent).

It works by steering uvicorn's response cycle rather than copying it: before the head is written, the
cycle is told the body is not chunked and the connection will not be kept alive; before each body part,
it is told to expect exactly that many bytes, so its own length checks pass and it closes the transport
after the last part. Everything else (parsing, flow control, shutdown) stays uvicorn's.
"""

from __future__ import annotations

from typing import cast

from uvicorn._types import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPResponseStartEvent,
    Scope,
)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

CLOSE_DELIMITED_HEADER = b"x-suanli-sim-close-delimited"  # private: set by the app, stripped here


def stream_headers(close_delimited: bool) -> dict[str, str]:
    """A stream's headers; a close-delimited one's ask the server to frame it by closing the connection."""
    headers = {"Cache-Control": "no-cache"}
    if close_delimited:
        headers.update({"Connection": "close", CLOSE_DELIMITED_HEADER.decode(): "1"})
    return headers


def _without_marker(headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The headers without the marker, and whether it was there."""
    kept = [(name, value) for name, value in headers if name.lower() != CLOSE_DELIMITED_HEADER]
    return kept, len(kept) != len(headers)


class _CloseFramingSend:
    """The ``send`` an app gets: uvicorn's, adjusting the cycle's framing when the response is marked."""

    def __init__(self, cycle: RequestResponseCycle, send: ASGISendCallable) -> None:
        self._cycle = cycle
        self._send = send
        self._close_delimited = False

    async def __call__(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start":
            headers, self._close_delimited = _without_marker(list(message.get("headers", [])))
            if self._close_delimited:
                message = cast(HTTPResponseStartEvent, {**message, "headers": headers})
                self._cycle.chunked_encoding = False  # neither chunks nor a length: the close ends the body
                self._cycle.keep_alive = False  # so uvicorn closes the transport after the last part
        elif message["type"] == "http.response.body" and self._close_delimited:
            self._cycle.expected_content_length = len(message.get("body", b""))
        await self._send(message)


def _framing_app(app: ASGI3Application, cycle: RequestResponseCycle) -> ASGI3Application:
    async def framed(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await app(scope, receive, _CloseFramingSend(cycle, send))

    return framed


class CloseDelimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, framing marked responses by closing the connection.

    ``_start_asgi_task`` is where uvicorn hands each request's cycle (pipelined ones included) to the app,
    so it is the one place to wrap the app's ``send`` for that cycle.
    """

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        super()._start_asgi_task(cycle, _framing_app(app, cycle))
