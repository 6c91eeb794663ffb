"""Error bodies in the protocol the client speaks. OpenAI-style for now:

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

Unexpected exceptions become a 500 with the request id and nothing else: no trace, no credential.
"""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from suanli.errors import SuanliError
from suanli.gateway.messages import anthropic_error, anthropic_error_body

log = logging.getLogger("suanli.api")
RETRY_AFTER_S = 1  # what Anthropic clients are told to wait after 429 and 529


def openai_error_body(exc: SuanliError) -> bytes:
    return orjson.dumps({"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}})


ANTHROPIC_PATH_PREFIX = "/v1/messages"


def error_response(exc: SuanliError, request_id: str | None = None, path: str = "") -> Response:
    """The error in the protocol of the endpoint that was called."""
    headers = {"x-request-id": request_id} if request_id else {}
    headers.update(exc.headers or {})
    if path.startswith(ANTHROPIC_PATH_PREFIX):
        status, _ = anthropic_error(exc)
        if status in (429, 529):
            headers.setdefault("retry-after", str(RETRY_AFTER_S))
        return Response(anthropic_error_body(exc, request_id), status, headers=headers, media_type="application/json")
    return Response(openai_error_body(exc), exc.status, headers=headers, media_type="application/json")


async def handle_suanli_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, SuanliError):  # pragma: no cover - registered for SuanliError only
        raise exc
    platform = getattr(request.app.state, "platform", None)
    if platform is not None:
        platform.metrics.refused(exc.status, exc.code)
    return error_response(exc, request.scope.get("state", {}).get("request_id"), request.url.path)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = request.scope.get("state", {}).get("request_id", "")
    log.exception("unexpected error in request %s", request_id)
    error = SuanliError(f"Internal error; quote request id {request_id} when reporting it.")
    return error_response(error, request_id, request.url.path)
