"""Give every request an id (``x-request-id`` on the response) before anything else runs.

The id names the request's ledger transfers and usage event, so it is made here, never taken from the
client: a client-chosen id could collide with another request's transfers. This middleware is the one place
that sets the header, error answers included; only the 500 for an unhandled exception, which Starlette sends
from outside every middleware, sets it itself (``api/errors.py``).
"""

from __future__ import annotations

import itertools
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROCESS_PREFIX_BYTES = 8  # 64 random bits per process: ids from different processes never meet


class RequestIds:
    """Unique request ids without a system call each: a random prefix per process and a counter."""

    def __init__(self) -> None:
        self._prefix = "req_" + secrets.token_hex(PROCESS_PREFIX_BYTES)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
