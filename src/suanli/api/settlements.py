"""The admin routes of operator settlement: a run, and the runs recorded (economy/operator_settlement.py)."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from suanli.api import usage_params as q
from suanli.api.admin import json_body, json_response, require_admin, string_field, write
from suanli.api.statements import attachment
from suanli.economy import operator_statement_pdf, statements_pdf
from suanli.economy.operator_sales import parse_month
from suanli.economy.operator_settlement import settle_job, settlements
from suanli.economy.operator_statement import operator_statement, statement_csv
from suanli.errors import BadRequest
from suanli.store.db import now_ms


async def settle(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    month = parse_month(string_field(body, "month"), ZoneInfo(platform.catalog.timezone))
    run = await write(platform, settle_job(platform.catalog, month, now_ms()))
    return json_response(run.public(), 201 if run.run_id else 200)


async def listed(request: Request) -> Response:
    platform = require_admin(request)
    month = request.query_params.get("month")
    if month is not None:
        month = parse_month(month, ZoneInfo(platform.catalog.timezone)).name
    rows = settlements(platform.reader, month=month, operator=request.query_params.get("operator"))
    return json_response({"object": "list", "data": [row.public() for row in rows]})


OPERATOR_STATEMENT_FORMATS = ("json", "csv", "pdf")


async def statement(request: Request) -> Response:
    platform = require_admin(request)
    zone = ZoneInfo(platform.catalog.timezone)
    month = parse_month(request.query_params.get("month", ""), zone)
    output = request.query_params.get("format", "json")
    if output not in OPERATOR_STATEMENT_FORMATS:
        raise BadRequest("format must be json, csv or pdf", code="invalid_format", param="format")
    lang = q.choice(request.query_params, "lang", statements_pdf.LANGS)
    operator = request.path_params["operator"]
    document = operator_statement(platform.reader, platform.catalog, operator, month, now_ms())
    if output == "csv":
        return Response(statement_csv(document), media_type="text/csv; charset=utf-8")
    if output == "pdf":
        filename = f"operator-statement-{_filename_safe(operator)}-{month.name}.pdf"
        return attachment(operator_statement_pdf.render(document, zone, lang), "application/pdf", filename)
    return json_response(document)


def _filename_safe(text: str) -> str:
    """``text`` with anything but letters, digits, dot, dash and underscore replaced, for a header's filename."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


routes: list[BaseRoute] = [
    Route("/admin/v1/operator-settlements", settle, methods=["POST"]),
    Route("/admin/v1/operator-settlements", listed, methods=["GET"]),
    Route("/admin/v1/operators/{operator}/statement", statement, methods=["GET"]),
]
