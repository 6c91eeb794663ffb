"""Error bodies in the protocol the client speaks: OpenAI's,

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

or Anthropic's under ``/v1/messages``, with the headers Anthropic's clients act on (``retry-after``,
``x-should-retry``). Unexpected exceptions become a 500 with the request id and nothing else: no trace, no
credential. ``x-request-id`` is the request-id middleware's to add, once, on every answer.
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from suanli.errors import BadRequest, MethodNotAllowed, NotFound, SuanliError
from suanli.gateway.messages import anthropic_error, anthropic_error_body

log = logging.getLogger("suanli.api")
RETRY_AFTER_S = 1  # what Anthropic clients are told to wait after 429 and 529
# Claude Code (2.1) retries a 401 ten times over about three minutes, expecting a refreshed credential, unless
# the answer says ``x-should-retry: false``, which Anthropic's SDKs obey before their own rules. Every error
# below 500 says so, except those a later attempt can get past: a timeout, a conflict, a rate limit.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 429})


def openai_error_body(exc: SuanliError) -> bytes:
    return orjson.dumps({"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}})


ANTHROPIC_PATH_PREFIX = "/v1/messages"


def error_response(exc: SuanliError, request_id: str | None = None, path: str = "") -> Response:
    """The error in the protocol of the endpoint that was called; ``request_id`` goes in an Anthropic body."""
    headers = dict(exc.headers or {})  # a refusal's own advice first, e.g. an exhausted allowance's retry-after
    if path.startswith(ANTHROPIC_PATH_PREFIX):
        status, _ = anthropic_error(exc)
        if status in (429, 529):
            headers.setdefault("retry-after", str(RETRY_AFTER_S))
        if 400 <= status < 500 and status not in RETRYABLE_CLIENT_STATUSES:
            headers["x-should-retry"] = "false"
        return Response(anthropic_error_body(exc, request_id), status, headers=headers, media_type="application/json")
    return Response(openai_error_body(exc), exc.status, headers=headers, media_type="application/json")


async def handle_suanli_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, SuanliError):  # pragma: no cover - registered for SuanliError only
        raise exc
    platform = getattr(request.app.state, "platform", None)
    if platform is not None:
        platform.metrics.refused(exc.status, exc.code)
    return error_response(exc, request.scope.get("state", {}).get("request_id"), request.url.path)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method the route lacks) in the documented shape, not its
    plain text: every answer of every path is the JSON of the protocol the path speaks."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException only
        raise exc
    where = f"{request.method} {request.url.path}"
    error: SuanliError
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("allow", (exc.headers or {}).get("Allow", ""))
        error = MethodNotAllowed(
            f"{where} is not a method of this path; it has {allowed}.", headers={"allow": allowed} if allowed else None
        )
    elif exc.status_code == 404:
        error = NotFound(f"No route {where}.")
    else:
        error = BadRequest(f"{where}: {exc.detail}")
    return await handle_suanli_error(request, error)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = request.scope.get("state", {}).get("request_id", "")
    log.exception("unexpected error in request %s", request_id)
    error = SuanliError(f"Internal error; quote request id {request_id} when reporting it.")
    response = error_response(error, request_id, request.url.path)
    # Starlette answers an unhandled exception from its outermost layer, outside the request-id middleware, so
    # this is the one answer that must carry the id itself.
    if request_id:
        response.headers["x-request-id"] = request_id
    return response
