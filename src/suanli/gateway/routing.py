"""Routing: which offers may serve a request, and in what order to try them. Pure: no I/O.

A client states its preferences in the request body with the fields OpenRouter's users already send:

    "provider": {"order": [...], "only": [...], "ignore": [...], "sort": "price"|"latency"|"throughput",
                 "allow_fallbacks": true, "max_price": {"prompt": 2, "completion": 3}},
    "models": ["glm-5", "deepseek-v3.2"]

Operator names stand where OpenRouter has provider names; ``max_price`` is in CNY per million tokens.
The default is the cheapest healthy offer, with offers at their declared capacity tried after the others.
When nothing can serve, the error names why: unknown model, key or tier not allowed, every operator
excluded, nothing within ``max_price``, or every candidate unhealthy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from suanli.catalog import Catalog, Offer
from suanli.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable
from suanli.limits import FALLBACK_MODELS_MAX
from suanli.money import MoneyFormatError, price_per_mtok_to_nano_per_token
from suanli.pricing.prices import Prices

SORTS = ("price", "latency", "throughput")
NO_FIGURE = float("inf")


@dataclass(frozen=True, slots=True)
class RoutePreferences:
    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    sort: str | None = None
    allow_fallbacks: bool = True
    max_prompt_nano: int | None = None  # nano-CNY per input token
    max_completion_nano: int | None = None  # nano-CNY per output token
    fallback_models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OfferState:
    """What routing needs to know of an offer's live state (from ``gateway.health``)."""

    available: bool = True  # its breaker lets a call through and no Retry-After is pending
    latency_p50_ms: float = NO_FIGURE
    tokens_per_s: float = 0.0
    utilization: float = 0.0  # calls in flight / declared capacity


@dataclass(slots=True)
class _Refusals:
    """Why offers were left out, to name in the error when none is left."""

    unknown_models: list[str] = field(default_factory=list)
    key_models: list[str] = field(default_factory=list)
    tier: list[str] = field(default_factory=list)
    protocol: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    over_price: list[Offer] = field(default_factory=list)
    unhealthy: list[Offer] = field(default_factory=list)


DEFAULT_PREFERENCES = RoutePreferences()


def parse_preferences(body: Mapping[str, Any], model: str) -> RoutePreferences:
    if body.get("provider") is None and body.get("models") is None:
        return DEFAULT_PREFERENCES  # most requests state no preference: skip the parsing
    provider = body.get("provider")
    if provider is None:
        provider = {}
    if not isinstance(provider, Mapping):
        raise BadRequest("'provider' must be an object.", code="invalid_field", param="provider")
    allow = provider.get("allow_fallbacks", True)
    if not isinstance(allow, bool):
        raise BadRequest(
            "'provider.allow_fallbacks' must be true or false.", code="invalid_field", param="provider.allow_fallbacks"
        )
    sort = provider.get("sort")
    if sort is not None and sort not in SORTS:
        raise BadRequest(
            f"'provider.sort' must be one of {', '.join(SORTS)}.", code="invalid_field", param="provider.sort"
        )
    only = provider.get("only")
    prompt_max, completion_max = _max_price(provider.get("max_price"))
    return RoutePreferences(
        order=tuple(_names(provider.get("order"), "provider.order")),
        only=None if only is None else frozenset(_names(only, "provider.only")),
        ignore=frozenset(_names(provider.get("ignore"), "provider.ignore")),
        sort=sort,
        allow_fallbacks=allow,
        max_prompt_nano=prompt_max,
        max_completion_nano=completion_max,
        fallback_models=tuple(dict.fromkeys(m for m in _names(body.get("models"), "models") if m != model))[
            :FALLBACK_MODELS_MAX
        ],
    )


def _names(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f"'{param}' must be an array of names.", code="invalid_field", param=param)
    return value


def _max_price(value: Any) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    if not isinstance(value, Mapping):
        raise BadRequest("'provider.max_price' must be an object.", code="invalid_field", param="provider.max_price")
    return _price(value.get("prompt"), "prompt"), _price(value.get("completion"), "completion")


def _price(value: Any, name: str) -> int | None:
    if value is None:
        return None
    param = f"provider.max_price.{name}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"'{param}' must be a number (CNY per million tokens).", code="invalid_field", param=param)
    try:
        # A float from JSON is read through its shortest decimal form, so 0.2 means exactly 0.2.
        return price_per_mtok_to_nano_per_token(repr(value) if isinstance(value, float) else value)
    except MoneyFormatError as exc:
        raise BadRequest(f"'{param}': {exc}", code="invalid_field", param=param) from None


def plan_route(
    catalog: Catalog,
    *,
    model: str,
    tier: str,
    key_models: tuple[str, ...] | None,
    prefs: RoutePreferences,
    state_of: Callable[[Offer], OfferState],
    serves: Callable[[Offer], bool] | None = None,
    price_of: Callable[[Offer], Prices] | None = None,
    kind: str | None = None,
) -> list[Offer]:
    """The offers to try, best first; raises the error that says why when there are none. ``serves``
    keeps the offers whose operator can answer the client's protocol (all of them when None);
    ``price_of`` is an offer's price now (its time-of-day price; the base price when None); ``kind`` is
    the request's (chat, embedding, image): a fallback model of another kind is refused."""
    if kind is not None:
        _check_fallback_kinds(catalog, kind, prefs.fallback_models)
    refusals = _Refusals()
    plan: list[Offer] = []
    price = price_of or _base_price
    for name in (model, *prefs.fallback_models):
        plan.extend(
            _candidates(
                catalog,
                model=name,
                tier=tier,
                key_models=key_models,
                prefs=prefs,
                state_of=state_of,
                refusals=refusals,
                serves=serves,
                price_of=price,
            )
        )
    if plan:
        return plan
    raise _no_route(model, prefs, refusals, price)


def _check_fallback_kinds(catalog: Catalog, kind: str, fallback_models: Sequence[str]) -> None:
    """A fallback serves in the requested model's place: one of another kind (an embedding model for a chat
    request) would be called, and priced, as what it is."""
    for name in fallback_models:
        model = catalog.models.get(name)
        if model is not None and model.kind != kind:
            raise BadRequest(
                f"'models' lists '{name}', an {model.kind} model; a {kind} request falls back to {kind} models only.",
                code="wrong_model_kind",
                param="models",
            )


def _base_price(offer: Offer) -> Prices:
    return offer.prices


def _candidates(
    catalog: Catalog,
    *,
    model: str,
    tier: str,
    key_models: tuple[str, ...] | None,
    prefs: RoutePreferences,
    state_of: Callable[[Offer], OfferState],
    refusals: _Refusals,
    serves: Callable[[Offer], bool] | None,
    price_of: Callable[[Offer], Prices],
) -> list[Offer]:
    offers = catalog.offers_for(model)
    if not offers:
        refusals.unknown_models.append(model)
        return []
    if key_models is not None and model not in key_models:
        refusals.key_models.append(model)
        return []
    offers = tuple(o for o in offers if tier in o.tiers)
    if not offers:
        refusals.tier.append(model)
        return []
    if serves is not None:
        offers = tuple(o for o in offers if serves(o))
        if not offers:
            refusals.protocol.append(model)
            return []
    chosen = _by_operator(offers, prefs, refusals)
    affordable = _split(chosen, lambda o: _within_price(price_of(o), prefs), refusals.over_price)
    states = {o.id: state_of(o) for o in affordable}
    healthy = _split(affordable, lambda o: states[o.id].available, refusals.unhealthy)
    return _apply_order(sorted(healthy, key=_rank(prefs.sort, states, price_of)), prefs)


def _split(offers: Sequence[Offer], keep: Callable[[Offer], bool], refused: list[Offer]) -> list[Offer]:
    kept: list[Offer] = []
    for offer in offers:
        (kept if keep(offer) else refused).append(offer)
    return kept


def _by_operator(offers: Sequence[Offer], prefs: RoutePreferences, refusals: _Refusals) -> list[Offer]:
    kept: list[Offer] = []
    for offer in offers:
        excluded = (prefs.only is not None and offer.operator not in prefs.only) or offer.operator in prefs.ignore
        if excluded or (not prefs.allow_fallbacks and prefs.order and offer.operator not in prefs.order):
            refusals.excluded.append(offer.operator)
        else:
            kept.append(offer)
    return kept


def _within_price(p: Prices, prefs: RoutePreferences) -> bool:
    if prefs.max_prompt_nano is not None and max(p.input_nano, p.cached_input_nano) > prefs.max_prompt_nano:
        return False
    return prefs.max_completion_nano is None or max(p.output_nano, p.reasoning_nano) <= prefs.max_completion_nano


def _price_key(prices: Prices) -> int:
    return prices.input_nano + prices.output_nano


def _rank(
    sort: str | None, states: Mapping[str, OfferState], price_of: Callable[[Offer], Prices]
) -> Callable[[Offer], tuple[float, ...]]:
    def key(offer: Offer) -> tuple[float, ...]:
        state = states[offer.id]
        price = _price_key(price_of(offer))
        full = 1.0 if state.utilization >= 1.0 else 0.0  # offers at capacity go after the others
        if sort == "latency":
            return (state.latency_p50_ms, price, state.utilization)
        if sort == "throughput":
            return (-state.tokens_per_s, price, state.utilization)
        return (full, price, state.utilization)

    return key


def _apply_order(ranked: list[Offer], prefs: RoutePreferences) -> list[Offer]:
    if not prefs.order:
        return ranked if prefs.allow_fallbacks else ranked[:1]
    position: dict[str, int] = {}
    for i, name in enumerate(prefs.order):
        position.setdefault(name, i)  # a name listed twice keeps its first place
    first = sorted((o for o in ranked if o.operator in position), key=lambda o: position[o.operator])
    rest = [o for o in ranked if o.operator not in position]
    return first + rest if prefs.allow_fallbacks else first


def _no_route(
    model: str, prefs: RoutePreferences, refusals: _Refusals, price_of: Callable[[Offer], Prices]
) -> Exception:
    asked = [model, *prefs.fallback_models]
    if len(refusals.unknown_models) == len(asked):
        return NotFound(f"The model '{model}' does not exist.", code="model_not_found", param="model")
    if refusals.key_models and not (refusals.tier or refusals.excluded or refusals.over_price or refusals.unhealthy):
        return Forbidden(f"This API key may not use the model '{refusals.key_models[0]}'.", param="model")
    if refusals.tier and not (refusals.excluded or refusals.over_price or refusals.unhealthy):
        return Forbidden(
            f"The model '{refusals.tier[0]}' is not offered to this account's tier.",
            code="model_not_offered_to_tier",
            param="model",
        )
    if refusals.protocol and not (refusals.excluded or refusals.over_price or refusals.unhealthy):
        return BadRequest(
            f"The model '{refusals.protocol[0]}' is served only over the Anthropic Messages API; call /v1/messages.",
            code="wrong_protocol",
            param="model",
        )
    if refusals.unhealthy:
        names = ", ".join(sorted({o.operator for o in refusals.unhealthy}))
        return ServiceUnavailable(
            f"No operator of '{model}' is healthy right now ({names}); retry shortly.", code="no_healthy_offer"
        )
    if refusals.over_price:
        cheapest = min(refusals.over_price, key=lambda o: _price_key(price_of(o)))
        asks = price_of(cheapest)
        return BadRequest(
            f"No operator of '{model}' is within provider.max_price; the cheapest, {cheapest.operator}, asks "
            f"{_per_mtok(asks.input_nano)} input and {_per_mtok(asks.output_nano)} output CNY per million tokens "
            "now.",
            code="no_offer_within_max_price",
            param="provider.max_price",
        )
    names = ", ".join(sorted(set(refusals.excluded)))
    return BadRequest(
        f"Every operator of '{model}' ({names}) is excluded by provider.order/only/ignore.",
        code="no_operator_allowed",
        param="provider",
    )


def _per_mtok(price_nano: int) -> str:
    whole, frac = divmod(price_nano, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".")
