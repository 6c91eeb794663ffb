"""The price list and quotes: ``GET /v1/pricing`` and ``POST /v1/quote``, with the customer's own key.

Thin by design: authenticate, hand over to ``gateway.price_list``, send its answer as JSON. A quote reserves
nothing and costs nothing.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api.admin import json_body, json_response, require_admin, string_field, write
from suanli.api.openai_compat import authenticate
from suanli.gateway.platform import Platform
from suanli.gateway.price_list import pricing, quote_request
from suanli.gateway.price_versions import history_view, set_price_job
from suanli.limits import PRICE_CHANGE_NOTICE_S, PRICE_VERSION_HORIZON_DAYS


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def list_prices(request: Request) -> Response:
    caller = authenticate(request)
    query = request.query_params
    view = pricing(_platform(request), caller, query.get("at"), query.get("model"))
    return Response(orjson.dumps(view), media_type="application/json")


async def quote(request: Request) -> Response:
    caller = authenticate(request)
    view = await quote_request(_platform(request), caller, await request.body())
    return Response(orjson.dumps(view), media_type="application/json")


async def set_price(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    spec = {k: v for k, v in body.items() if k != "set_by"}
    job = set_price_job(platform.catalog, request.path_params["offer"], spec, string_field(body, "set_by", "admin"))
    result = await write(platform, job)
    platform.changed("prices")
    return json_response(result, 201)


async def price_history(request: Request) -> Response:
    platform = require_admin(request)
    offer = request.path_params["offer"]
    rule = {"notice_s": PRICE_CHANGE_NOTICE_S, "horizon_days": PRICE_VERSION_HORIZON_DAYS}
    return json_response({"offer": offer, "data": history_view(platform.catalog, offer), "rule": rule})


routes = [
    Route("/admin/v1/offers/{offer:path}/prices", set_price, methods=["POST"]),
    Route("/admin/v1/offers/{offer:path}/prices", price_history, methods=["GET"]),
    Route("/v1/pricing", list_prices, methods=["GET"]),
    Route("/v1/quote", quote, methods=["POST"]),
]
