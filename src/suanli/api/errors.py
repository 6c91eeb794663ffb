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

log = logging.getLogger("suanli.api")


def openai_error_body(exc: SuanliError) -> bytes:
    return orjson.dumps({"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}})


def error_response(exc: SuanliError, request_id: str | None = None) -> Response:
    headers = {"x-request-id": request_id} if request_id else None
    return Response(openai_error_body(exc), exc.status, headers=headers, media_type="application/json")


async def handle_suanli_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, SuanliError):  # pragma: no cover - registered for SuanliError only
        raise exc
    platform = getattr(request.app.state, "platform", None)
    if platform is not None:
        platform.metrics.refused(exc.status, exc.code)
    return error_response(exc)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = request.scope.get("state", {}).get("request_id", "")
    log.exception("unexpected error in request %s", request_id)
    error = SuanliError(f"Internal error; quote request id {request_id} when reporting it.")
    return error_response(error)
