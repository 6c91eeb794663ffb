"""The routes of statements and operator settlements."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from suanli.api import usage_params as q
from suanli.api.admin import json_response, require_admin, write
from suanli.api.openai_compat import authenticate
from suanli.economy import statements, statements_csv, statements_pdf
from suanli.gateway.platform import Platform
from suanli.store.db import now_ms

# Account statements (economy/statements.py; docs/statements.md, "Statements").

STATEMENT_FORMATS = ("json", "csv", "pdf")
_ACCEPTED = {"text/csv": "csv", "application/pdf": "pdf"}


def _format(request: Request) -> str:
    if "format" in request.query_params:
        return q.choice(request.query_params, "format", STATEMENT_FORMATS)
    accept = request.headers.get("accept", "")
    return next((fmt for media, fmt in _ACCEPTED.items() if media in accept), "json")


def _period(request: Request, platform: Platform) -> statements.Period:
    query, now = request.query_params, now_ms()
    if "month" in query:
        return statements.month_period(query["month"], platform.zone)
    return statements.range_period(
        q.instant(query, "from", platform.zone, now), q.instant(query, "to", platform.zone, now), platform.zone
    )


async def _statement(request: Request, platform: Platform, account_ref: str) -> Response:
    fmt, period = _format(request), _period(request, platform)
    lang = request.query_params.get("lang", "en")
    if lang not in statements_pdf.LANGS:
        raise q.invalid("lang", f"'lang' is one of {', '.join(statements_pdf.LANGS)}.")
    served = statements.serve(platform.reader, account_ref, period, now_ms())
    body: dict[str, Any] = (
        await write(platform, statements.store_job(served)) if isinstance(served, statements.Unstored) else served
    )
    name = body["number"]
    if fmt == "csv":
        return attachment(statements_csv.render(body).encode(), "text/csv; charset=utf-8", f"{name}.csv")
    if fmt == "pdf":
        return attachment(statements_pdf.render(body, lang), "application/pdf", f"{name}.pdf")
    return json_response(body)


def attachment(content: bytes, media_type: str, filename: str) -> Response:
    headers = {"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"}
    return Response(content, media_type=media_type, headers=headers)


async def my_statement(request: Request) -> Response:
    caller = authenticate(request)
    return await _statement(request, request.app.state.platform, caller.account.id)


async def admin_statement(request: Request) -> Response:
    platform = require_admin(request)
    return await _statement(request, platform, request.path_params["account"])


statement_routes: list[BaseRoute] = [
    Route("/v1/statements", my_statement, methods=["GET"]),
    Route("/admin/v1/accounts/{account}/statements", admin_statement, methods=["GET"]),
]

routes: list[BaseRoute] = [*statement_routes]
