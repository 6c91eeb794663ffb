"""The Anthropic-compatible surface: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Coding tools (Claude Code, Cline, Roo/Kilo Code, OpenCode, Goose) speak this protocol. A key is sent as
``x-api-key`` (or as a bearer token); errors come back in Anthropic's shape (``api/errors.py``), and say
whether a retry can help (``x-should-retry``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api.errors import handle_suanli_error
from suanli.api.openai_compat import SSE_HEADERS, authenticate
from suanli.api.sse import EventStreamResponse
from suanli.errors import SuanliError
from suanli.gateway.messages import anthropic_messages, count_tokens
from suanli.gateway.platform import Platform
from suanli.gateway.requests import parse_json_object

# Claude Code (2.1) retries a 401 ten times over about three minutes, expecting a refreshed credential, unless
# the answer says ``x-should-retry: false``, which Anthropic's SDKs obey before their own rules. Every error
# below 500 says so, except those a later attempt can get past: a timeout, a conflict, a rate limit.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 429})


async def messages(request: Request) -> Response:
    return await _with_retry_advice(request, _messages)


async def messages_count_tokens(request: Request) -> Response:
    return await _with_retry_advice(request, _count_tokens)


async def _messages(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    caller = authenticate(request)
    body = parse_json_object(await request.body())
    answer = await anthropic_messages(platform, caller, body, request.state.request_id)
    if answer.stream is not None:
        return EventStreamResponse(answer.stream, {**SSE_HEADERS, **answer.headers})
    return Response(answer.body, answer.status, headers=answer.headers, media_type="application/json")


async def _count_tokens(request: Request) -> Response:
    authenticate(request)
    body = parse_json_object(await request.body())
    return Response(orjson.dumps({"input_tokens": count_tokens(body)}), media_type="application/json")


async def _with_retry_advice(request: Request, endpoint: Callable[[Request], Awaitable[Response]]) -> Response:
    """The endpoint's answer, its refusals rendered by the app's own handler, with ``x-should-retry`` on errors."""
    try:
        response = await endpoint(request)
    except SuanliError as exc:
        response = await handle_suanli_error(request, exc)
    if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_CLIENT_STATUSES:
        response.headers["x-should-retry"] = "false"
    return response


routes = [
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", messages_count_tokens, methods=["POST"]),
]
