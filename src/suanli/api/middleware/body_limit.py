"""Refuse request bodies over ``REQUEST_BODY_BYTES_MAX`` with 413, before they are read into memory.

A declared Content-Length over the limit is refused at once; a chunked body is counted as it arrives.
A path or query holding a NUL character is refused with 400 first: no name, id or parameter of this API
contains one, and neither database stores one in text.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanli.api.errors import error_response
from suanli.errors import BadRequest, PayloadTooLarge
from suanli.limits import REQUEST_BODY_BYTES_MAX


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, body_bytes_max: int = REQUEST_BODY_BYTES_MAX) -> None:
        self.app = app
        self.body_bytes_max = body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            refused = BadRequest("The URL holds a NUL character.", code="invalid_url")
            await error_response(refused, path=scope["path"])(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                if int(value) > self.body_bytes_max:
                    await error_response(_too_large(self.body_bytes_max), path=scope["path"])(scope, receive, send)
                    return
                # The server delivers no more than the declared length, so there is nothing to count.
                await self.app(scope, receive, send)
                return
        received = 0
        limit = self.body_bytes_max

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, counting_receive, send)
