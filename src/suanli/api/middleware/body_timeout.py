"""Refuse a request whose body does not arrive whole within ``CLIENT_BODY_TIMEOUT_S`` with 408.

The server bounds the wait for a request's head; once the head is in, the body is read by the
application, and a client could trickle it a byte a minute and hold a connection and a request slot
forever. The deadline runs from the request's start; each read of the body waits at most what is left.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanli.errors import RequestTimeout
from suanli.limits import CLIENT_BODY_TIMEOUT_S


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, body_timeout_s: float = CLIENT_BODY_TIMEOUT_S) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body, a receive waits for the client to leave: not ours to bound
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"The request body did not arrive within {self.body_timeout_s:g} s.") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
