"""Give every request an id (``x-request-id`` on the response) before anything else runs.

The id names the request's ledger transfers and usage event, so it is made here, never taken from the
client: a client-chosen id could collide with another request's transfers.
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_RANDOM_BYTES = 12


def new_request_id() -> str:
    return "req_" + secrets.token_hex(REQUEST_ID_RANDOM_BYTES)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
