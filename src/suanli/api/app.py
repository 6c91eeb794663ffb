"""The ASGI application: routes, middleware, error handlers, and the lifespan that owns the Platform."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api import (
    account,
    admin,
    anthropic,
    console,
    exports,
    openai_compat,
    openapi,
    plans,
    pricing,
    settlements,
    statements,
    webhooks,
)
from suanli.api.errors import handle_http_error, handle_suanli_error, handle_unexpected
from suanli.api.middleware.body_limit import BodyLimitMiddleware
from suanli.api.middleware.body_timeout import BodyTimeoutMiddleware
from suanli.api.middleware.request_id import RequestIdMiddleware
from suanli.catalog import Catalog
from suanli.errors import SuanliError
from suanli.gateway import admin_keys
from suanli.gateway.platform import Platform, Settings
from suanli.store.owner import DatabaseOwner

log = logging.getLogger("suanli")


async def healthz(request: Request) -> Response:
    """Liveness and readiness: 503 while this worker may not admit calls (its store is unreachable, or its
    lease on a shared PostgreSQL database is not current), so a load balancer sends calls elsewhere."""
    platform = getattr(request.app.state, "platform", None)
    problem = platform.store_problem() if platform is not None else None
    if problem is not None:
        body = {"status": "unavailable", "store": problem}
        return Response(orjson.dumps(body), status_code=503, media_type="application/json")
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


def build_app(
    settings: Settings,
    platform: Platform | None = None,
    catalog: Catalog | None = None,
    owner: DatabaseOwner | None = None,
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        running = platform or Platform(settings, catalog, owner)
        report = await running.start()
        if report.posted or report.voided:
            log.warning("recovered reservations: %d posted, %d voided", report.posted, report.voided)
        for message in admin_keys.start_messages(running.admin_key_start):  # where a new key is, never the key
            log.warning("%s", message)
        app.state.platform = running
        try:
            yield
        finally:
            await running.stop()

    return Starlette(
        routes=[
            *openai_compat.routes,
            *anthropic.routes,
            *plans.routes,
            *pricing.routes,
            *admin.routes,
            *account.routes,
            *console.routes,
            *settlements.routes,
            *statements.routes,
            *exports.routes,
            *webhooks.routes,
            *openapi.routes,
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(BodyLimitMiddleware),
            Middleware(BodyTimeoutMiddleware),
        ],
        exception_handlers={
            SuanliError: handle_suanli_error,
            HTTPException: handle_http_error,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
