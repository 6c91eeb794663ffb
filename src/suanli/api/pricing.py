"""The price list and quotes: ``GET /v1/pricing`` and ``POST /v1/quote``, with the customer's own key.

Thin by design: authenticate, hand over to ``gateway.price_list``, send its answer as JSON. A quote reserves
nothing and costs nothing.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api.openai_compat import authenticate
from suanli.gateway.platform import Platform
from suanli.gateway.price_list import pricing, quote_request


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
    view = quote_request(_platform(request), caller, await request.body())
    return Response(orjson.dumps(view), media_type="application/json")


routes = [
    Route("/v1/pricing", list_prices, methods=["GET"]),
    Route("/v1/quote", quote, methods=["POST"]),
]
