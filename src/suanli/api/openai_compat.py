"""The OpenAI-compatible surface: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Thin by design: authenticate, hand the raw body to the gateway, shape its answer.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api.sse import EventStreamResponse
from suanli.gateway import sessions
from suanli.gateway.auth import Caller, bearer_token
from suanli.gateway.chat import chat_completion, embeddings, images, refuse_unpayable
from suanli.gateway.platform import Platform

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
MODEL_CREATED_S = 1_767_225_600  # 2026-01-01: the catalog's models carry no creation date of their own


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def content_length(request: Request) -> int | None:
    """The body's declared length, if the client declared one (a chunked body has none)."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def authenticate(request: Request) -> Caller:
    """The caller of a key header (cached: no store read), or, with no key header, of a console session's
    cookie (its session and key read again: gateway/sessions.py)."""
    raw_key = bearer_token(request.headers.get("authorization")) or request.headers.get("x-api-key")
    if not raw_key and (session_id := request.cookies.get(sessions.SESSION_COOKIE)):
        csrf_token = request.headers.get(sessions.CSRF_HEADER)
        return sessions.account_caller(_platform(request).reader, session_id, request.method, csrf_token)
    return _platform(request).keys.authenticate(raw_key)


async def chat_completions(request: Request) -> Response:
    platform = _platform(request)
    caller = authenticate(request)
    refuse_unpayable(platform, caller, content_length(request))
    answer = await chat_completion(platform, caller, await request.body(), request.state.request_id)
    if answer.stream is not None:
        return EventStreamResponse(
            answer.stream, {**SSE_HEADERS, **answer.headers}, answer.close, platform.settings.client_write_timeout_s
        )
    return Response(answer.body, answer.status, headers=answer.headers, media_type="application/json")


async def create_embeddings(request: Request) -> Response:
    platform = _platform(request)
    caller = authenticate(request)
    answer = await embeddings(platform, caller, await request.body(), request.state.request_id)
    return Response(answer.body, answer.status, headers=answer.headers, media_type="application/json")


async def create_images(request: Request) -> Response:
    platform = _platform(request)
    caller = authenticate(request)
    answer = await images(platform, caller, await request.body(), request.state.request_id)
    return Response(answer.body, answer.status, headers=answer.headers, media_type="application/json")


async def list_models(request: Request) -> Response:
    platform = _platform(request)
    caller = authenticate(request)
    data: list[dict[str, Any]] = []
    for name, model in platform.catalog.models.items():
        offers = [o for o in platform.catalog.offers_for(name) if caller.account.tier in o.tiers]
        if not offers or (caller.key.models is not None and name not in caller.key.models):
            continue
        data.append(
            {
                "id": name,
                "object": "model",
                "created": MODEL_CREATED_S,
                "owned_by": "suanli",
                "description": model.description,
                "kind": model.kind,
                "operators": sorted({o.operator for o in offers}),
            }
        )
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/embeddings", create_embeddings, methods=["POST"]),
    Route("/v1/images/generations", create_images, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
