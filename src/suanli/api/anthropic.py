"""The Anthropic-compatible surface: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Coding tools (Claude Code, Cline, Roo/Kilo Code, OpenCode, Goose) speak this protocol. A key is sent as
``x-api-key`` (or as a bearer token); errors come back in Anthropic's shape, and say whether a retry can help
(``x-should-retry``): both are ``api/errors.py``'s, which renders every refusal by the path it came to.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api.openai_compat import SSE_HEADERS, authenticate, content_length
from suanli.api.sse import EventStreamResponse
from suanli.gateway.chat import refuse_unpayable
from suanli.gateway.messages import anthropic_messages, count_tokens
from suanli.gateway.platform import Platform
from suanli.gateway.requests import parse_json_object


async def messages(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    caller = authenticate(request)
    refuse_unpayable(platform, caller, content_length(request))
    raw = await request.body()
    answer = await anthropic_messages(platform, caller, parse_json_object(raw), request.state.request_id, len(raw))
    if answer.stream is not None:
        return EventStreamResponse(
            answer.stream, {**SSE_HEADERS, **answer.headers}, answer.close, platform.settings.client_write_timeout_s
        )
    return Response(answer.body, answer.status, headers=answer.headers, media_type="application/json")


async def messages_count_tokens(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    authenticate(request)
    raw = await request.body()
    counted = await count_tokens(platform, parse_json_object(raw), len(raw))
    return Response(orjson.dumps({"input_tokens": counted}), media_type="application/json")


routes = [
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", messages_count_tokens, methods=["POST"]),
]
