"""The customer's own account over HTTP: wallet, calls, usage by period, keys, budgets, forecast; and the
platform-wide usage summaries for admins. Every page of the console reads these, and nothing else.

Thin: authenticate (an account's key, or its console session), read the parameters (api/usage_params.py),
call the service (gateway/usage_reports.py, gateway/self_service.py, economy/forecast.py), shape the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from suanli.api import usage_params as q
from suanli.api.admin import USAGE_DEFAULT_ROWS, json_body, json_response, require_admin, string_field, write
from suanli.api.openai_compat import authenticate
from suanli.api.plans import budget_amount
from suanli.economy import market
from suanli.economy import store as econ
from suanli.economy.forecast import forecast
from suanli.gateway import accounts as ops
from suanli.gateway import self_service, usage_reports
from suanli.gateway.platform import Platform
from suanli.store.db import now_ms
from suanli.store.usage_queries import UsageFilter

CUSTOMER_GROUPS = ("none", "model", "key", "operator", "token_class")
ADMIN_GROUPS = ("none", "operator", "tier", "model", "account", "token_class")
FORMATS = ("json", "csv")


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def my_account(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    view = ops.account_view(platform.reader, caller.account.id)
    return json_response({**view, "key": {"id": caller.key.id, "name": caller.key.name, "prefix": caller.key.prefix}})


async def my_usage(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    query, now = request.query_params, now_ms()
    tz, _ = q.zone(query, platform.zone)
    output = q.choice(query, "format", FORMATS)
    limit = q.limit(query, ops.USAGE_ROWS_MAX if output == "csv" else USAGE_DEFAULT_ROWS)
    start, end = q.list_range(query, tz, now)
    f = UsageFilter(
        caller.account.id,
        start,
        end,
        model=q.text(query, "model"),
        key_id=q.text(query, "key"),
        operator=q.text(query, "operator"),
        outcome=q.text(query, "outcome"),
    )
    before = q.before(query)
    if output == "json":
        return json_response(usage_reports.usage_list(platform.reader, f, limit, before, tz))

    async def chunks() -> AsyncIterator[str]:
        for chunk in usage_reports.usage_csv(platform.reader, f, limit, before, tz):  # read on the event loop,
            yield await run_in_threadpool(chunk)  # where the reader's connection lives; made into text on a thread

    headers = {"content-disposition": 'attachment; filename="usage.csv"', "cache-control": "no-store"}
    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8", headers=headers)


def _summary(platform: Platform, request: Request, account_id: str | None, groups: tuple[str, ...]) -> dict[str, Any]:
    query = request.query_params
    tz, tz_name = q.zone(query, platform.zone)
    period = q.choice(query, "period", ("hour", "day"))
    by = q.choice(query, "by", groups)
    start, end = q.summary_range(query, period, tz, now_ms())
    f = UsageFilter(account_id, start, end)
    return usage_reports.summary(platform.reader, f, period=period, by=by, zone=tz, zone_name=tz_name)


async def my_summary(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    return json_response(_summary(platform, request, caller.account.id, CUSTOMER_GROUPS))


async def admin_summary(request: Request) -> Response:
    platform = require_admin(request)
    return json_response(_summary(platform, request, None, ADMIN_GROUPS))


async def my_keys(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    return json_response({"object": "list", "data": self_service.keys_view(platform.reader, caller.account.id)})


async def my_create_key(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    name, models, expires_at_ms = self_service.key_request(caller, await json_body(request))
    key, raw = await write(platform, self_service.create_own_key_job(caller.account.id, name, models, expires_at_ms))
    return json_response({**ops.key_dict(key), "key": raw}, 201)


async def my_revoke_key(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    key = await write(platform, self_service.revoke_own_key_job(caller.account.id, request.path_params["key_id"]))
    platform.changed(f"key:{key.id}")  # every worker drops it from its cache at once
    return json_response(ops.key_dict(key))


async def my_set_budget(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    body = await json_body(request)
    unit = string_field(body, "unit")
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise q.invalid("key", "'key' is a key id (or absent, for the whole account).")
    job = market.set_budget_job(
        caller.account.id, key, string_field(body, "period"), unit, budget_amount(unit, body.get("amount"))
    )
    budget = await write(platform, job)
    platform.changed(f"account:{caller.account.id}")  # its keys now count against a budget, in every worker
    return json_response({"id": budget.id, "period": budget.period, "unit": budget.unit, "key": budget.key_id}, 201)


async def my_remove_budget(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    budget_id, account_id = request.path_params["budget"], caller.account.id

    def job(conn: Any) -> None:
        econ.remove_budget(conn, account_id, budget_id)

    await write(platform, job)
    platform.changed(f"account:{account_id}")
    return json_response({"id": budget_id, "removed": True})


async def my_forecast(request: Request) -> Response:
    platform, caller = _platform(request), authenticate(request)
    return json_response(forecast(platform.reader, caller.account, now_ms(), platform.zone))


async def admin_topups(request: Request) -> Response:
    platform = require_admin(request)
    limit = q.limit(request.query_params, USAGE_DEFAULT_ROWS)
    return json_response({"object": "list", "data": ops.topups_view(platform.reader, limit)})


async def admin_contracts(request: Request) -> Response:
    platform = require_admin(request)
    return json_response({"object": "list", "data": ops.contracts_view(platform.reader)})


routes: list[Route] = [
    Route("/v1/account", my_account, methods=["GET"]),
    Route("/v1/usage", my_usage, methods=["GET"]),
    Route("/v1/usage/summary", my_summary, methods=["GET"]),
    Route("/v1/keys", my_keys, methods=["GET"]),
    Route("/v1/keys", my_create_key, methods=["POST"]),
    Route("/v1/keys/{key_id}/revoke", my_revoke_key, methods=["POST"]),
    Route("/v1/budgets", my_set_budget, methods=["POST"]),
    Route("/v1/budgets/{budget}", my_remove_budget, methods=["DELETE"]),
    Route("/v1/forecast", my_forecast, methods=["GET"]),
    Route("/admin/v1/usage/summary", admin_summary, methods=["GET"]),
    Route("/admin/v1/topups", admin_topups, methods=["GET"]),
    Route("/admin/v1/contracts", admin_contracts, methods=["GET"]),
]
