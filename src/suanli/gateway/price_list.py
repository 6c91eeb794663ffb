"""What ``GET /v1/pricing`` and ``POST /v1/quote`` answer: the price list a caller may buy from, and what a
request would cost, now and at its cheapest time today, without reserving anything.

Both read the same price book, calendar and live load the admission of a real request reads
(``gateway.quoting``), so a quote answered here is the reservation a request sent at that instant would make.
"""

from __future__ import annotations

from typing import Any

from suanli.catalog import Offer
from suanli.errors import BadRequest, NotFound
from suanli.gateway.auth import Caller
from suanli.gateway.chat import with_account_routing
from suanli.gateway.platform import Platform
from suanli.gateway.quoting import input_bound, output_bound, price_list_of, utilisation_permille
from suanli.gateway.requests import ChatRequest, chat_request_from, parse_json_object
from suanli.gateway.routing import OfferState, parse_preferences, plan_route
from suanli.pricing.listing import Bounds, PriceList, offer_quote, parse_instant
from suanli.store.db import now_ms

QUOTE_FIELDS_NOT_FORWARDED = ("at",)  # the quote's own field; the rest is a chat request body


def pricing(platform: Platform, caller: Caller, at: str | None, model: str | None) -> dict[str, Any]:
    """Every model the caller's key and tier may use, each offer's price at ``at`` (default now)."""
    catalog = platform.catalog
    prices = price_list_of(catalog)
    t_ms = _instant(platform, at, "at")
    data = []
    for name, spec in catalog.models.items():
        offers = [o for o in catalog.offers_for(name) if caller.account.tier in o.tiers]
        if (model is not None and name != model) or not offers:
            continue
        if caller.key.models is not None and name not in caller.key.models:
            continue
        entries = [
            {**_offer_view(o), **prices.entry(o, t_ms, utilisation_permille(platform.health, o))} for o in offers
        ]
        data.append({"model": name, "kind": spec.kind, "offers": entries})
    if model is not None and not data:
        raise NotFound(
            f"The model '{model}' does not exist, or this key may not use it.", code="model_not_found", param="model"
        )
    return {"object": "list", **prices.instant(t_ms, "at"), "timezone": catalog.calendar.timezone, "data": data}


async def quote_request(platform: Platform, caller: Caller, raw_body: bytes) -> dict[str, Any]:
    """The most a chat request would cost on each offer it may be routed to (health aside: a quote is not
    refused because an operator is down now), at ``at`` (default now) and at the cheapest time that day."""
    body = parse_json_object(raw_body)
    at = body.get("at")
    if at is not None and not isinstance(at, str):
        raise BadRequest("'at' must be an ISO 8601 time string.", code="invalid_field", param="at")
    t_ms = _instant(platform, at, "at")
    request = chat_request_from({k: v for k, v in body.items() if k not in QUOTE_FIELDS_NOT_FORWARDED})
    model = platform.catalog.models.get(request.model)
    if model is not None and model.kind != "chat":
        raise BadRequest(
            f"'{request.model}' is an {model.kind} model; quotes are for chat requests.",
            code="wrong_model_kind",
            param="model",
        )
    prefs = parse_preferences(with_account_routing(request.body, caller), request.model)
    plan = plan_route(
        platform.catalog,
        model=request.model,
        tier=caller.account.tier,
        key_models=caller.key.models,
        prefs=prefs,
        state_of=lambda offer: OfferState(),
        price_of=lambda offer: platform.price_clock.prices(offer, t_ms),
        kind="chat",
    )
    prompt_tokens = await platform.counter.count(request.body, request.messages, len(raw_body))
    prices = price_list_of(platform.catalog)
    data = [_offer_quote(platform, prices, offer, request, prompt_tokens=prompt_tokens, t_ms=t_ms) for offer in plan]
    return {
        "object": "quote",
        "model": request.model,
        **prices.instant(t_ms, "at"),
        "timezone": platform.catalog.calendar.timezone,
        "prompt_tokens": prompt_tokens,
        "input_tokens_max": max((d["input_tokens_max"] for d in data), default=prompt_tokens),
        "data": data,
    }


def _offer_quote(
    platform: Platform, prices: PriceList, offer: Offer, request: ChatRequest, *, prompt_tokens: int, t_ms: int
) -> dict[str, Any]:
    """One offer's quote: the most the request would cost there at ``t_ms``, and whether it fits."""
    input_max = input_bound(prompt_tokens, offer.input_margin_percent)
    bounds = Bounds(input_max, output_bound(offer, request), utilisation_permille(platform.health, offer))
    return {
        **_offer_view(offer),
        "fits_context_window": input_max <= offer.context_window_tokens,
        "input_tokens_max": input_max,
        "input_margin_percent": offer.input_margin_percent,
        "context_window": offer.context_window_tokens,
        "output_tokens_max": bounds.output_max,
        **offer_quote(prices, offer, t_ms, bounds),
    }


def _offer_view(offer: Offer) -> dict[str, Any]:
    return {"offer": offer.id, "operator": offer.operator, "model": offer.model}


def _instant(platform: Platform, at: str | None, param: str) -> int:
    now = now_ms()
    return now if at is None else parse_instant(at, platform.catalog.calendar, param, now)
