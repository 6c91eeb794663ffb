"""Routing, unit by unit: which offers a request may go to and in what order, and the error that says why
when there are none. ``plan_route`` is pure, so every test builds a small catalog and states each offer's
live health through ``state_of``; no server is involved (test_routing_e2e.py covers the gateway)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.catalog import Catalog, Offer, parse_catalog
from suanli.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable, SuanliError
from suanli.gateway.routing import (
    OfferState,
    RoutePreferences,
    parse_preferences,
    plan_route,
)
from suanli.limits import FALLBACK_MODELS_MAX
from suanli.money import NANO_PER_TOKEN_PER_CNY_PER_MTOK

MODEL = "m"
TIER = "enterprise"
FULL = OfferState(utilization=1.0)
DOWN = OfferState(available=False)

StateOf = Callable[[Offer], OfferState]


# --- building catalogs and plans -------------------------------------------------------------------------


def offer(
    operator: str, model: str = MODEL, input_price: str = "1", output_price: str = "1", **extra: Any
) -> dict[str, Any]:
    """One `[[offers]]` table as `parse_catalog` reads it; prices in CNY per million tokens."""
    spec: dict[str, Any] = {
        "operator": operator,
        "model": model,
        "context_window": 8192,
        "max_output_tokens": 1024,
        "price": {"input": input_price, "output": output_price},
    }
    spec.update(extra)
    return spec


def build(*offers: dict[str, Any], extra_models: tuple[str, ...] = ()) -> Catalog:
    operators = {spec["operator"]: {"base_url": f"https://{spec['operator']}.example/v1"} for spec in offers}
    models: dict[str, dict[str, Any]] = {spec["model"]: {} for spec in offers}
    models.update({name: {} for name in extra_models})
    return parse_catalog({"operators": operators, "models": models, "offers": list(offers)}, environ={})


def states(**by_operator: OfferState) -> StateOf:
    """Each offer's live state by its operator's name; healthy and idle when not named."""

    def state_of(offer: Offer) -> OfferState:
        return by_operator.get(offer.operator, OfferState())

    return state_of


def route(
    catalog: Catalog,
    body: Mapping[str, Any] | None = None,
    *,
    model: str = MODEL,
    tier: str = TIER,
    key_models: tuple[str, ...] | None = None,
    state_of: StateOf | None = None,
) -> list[Offer]:
    prefs = parse_preferences(body or {}, model)
    return plan_route(
        catalog, model=model, tier=tier, key_models=key_models, prefs=prefs, state_of=state_of or states()
    )


def operators(plan: list[Offer]) -> list[str]:
    return [o.operator for o in plan]


def ids(plan: list[Offer]) -> list[str]:
    return [o.id for o in plan]


def provider(**fields: Any) -> dict[str, Any]:
    return {"provider": fields}


# Three operators whose order by price (input + output) differs from their order by input price alone:
# c = 2 + 1 = 3, b = 1 + 4 = 5, a = 3 + 3 = 6 CNY per million tokens.
THREE = build(
    offer("a", input_price="3", output_price="3"),
    offer("b", input_price="1", output_price="4"),
    offer("c", input_price="2", output_price="1"),
)


# --- the default order -----------------------------------------------------------------------------------


def test_default_is_cheapest_first_by_input_plus_output_price() -> None:
    assert operators(route(THREE)) == ["c", "b", "a"]


def test_sort_price_is_the_default() -> None:
    assert operators(route(THREE, provider(sort="price"))) == operators(route(THREE))


def test_offers_at_capacity_go_after_the_others() -> None:
    plan = route(THREE, state_of=states(c=FULL, b=OfferState(utilization=0.99)))
    assert operators(plan) == ["b", "a", "c"]


def test_offers_over_capacity_go_after_the_others_cheapest_first() -> None:
    plan = route(THREE, state_of=states(c=OfferState(utilization=3.0), a=FULL))
    assert operators(plan) == ["b", "c", "a"]


def test_equal_prices_prefer_the_less_loaded_offer() -> None:
    catalog = build(offer("a"), offer("b"))
    plan = route(catalog, state_of=states(a=OfferState(utilization=0.7), b=OfferState(utilization=0.2)))
    assert operators(plan) == ["b", "a"]


def test_unhealthy_offers_are_left_out() -> None:
    assert operators(route(THREE, state_of=states(c=DOWN, a=DOWN))) == ["b"]


def test_only_offers_sold_to_the_tier_are_planned() -> None:
    catalog = build(offer("a", tiers=["household"], input_price="0"), offer("b"))
    assert operators(route(catalog, tier="enterprise")) == ["b"]
    assert operators(route(catalog, tier="household")) == ["a", "b"]


def test_a_key_limited_to_the_model_may_use_it() -> None:
    assert operators(route(THREE, key_models=(MODEL, "other"))) == ["c", "b", "a"]


# --- provider.order / allow_fallbacks --------------------------------------------------------------------


def test_order_puts_those_operators_first_in_that_order_and_the_rest_after() -> None:
    catalog = build(*(offer(name, input_price=str(i)) for i, name in enumerate(["a", "b", "c", "d"])))
    assert operators(route(catalog, provider(order=["d", "b"]))) == ["d", "b", "a", "c"]


def test_order_may_name_operators_that_do_not_sell_the_model() -> None:
    assert operators(route(THREE, provider(order=["nobody", "a"]))) == ["a", "c", "b"]


def test_order_without_fallbacks_keeps_only_the_ordered_operators() -> None:
    plan = route(THREE, provider(order=["a", "b"], allow_fallbacks=False))
    assert operators(plan) == ["a", "b"]


def test_no_fallbacks_without_order_keeps_only_the_best_offer() -> None:
    assert operators(route(THREE, provider(allow_fallbacks=False))) == ["c"]
    assert operators(route(THREE, provider(allow_fallbacks=False), state_of=states(c=FULL))) == ["b"]


def test_explicit_allow_fallbacks_true_is_the_default() -> None:
    assert operators(route(THREE, provider(allow_fallbacks=True, order=["a"]))) == ["a", "c", "b"]


def test_an_operator_repeated_in_order_keeps_its_first_position() -> None:
    assert operators(route(THREE, provider(order=["a", "b", "a"]))) == ["a", "b", "c"]


# --- only / ignore ---------------------------------------------------------------------------------------


def test_only_keeps_just_those_operators() -> None:
    assert operators(route(THREE, provider(only=["a", "b", "nobody"]))) == ["b", "a"]


def test_ignore_leaves_those_operators_out() -> None:
    assert operators(route(THREE, provider(ignore=["c"]))) == ["b", "a"]


def test_ignore_wins_over_only() -> None:
    assert operators(route(THREE, provider(only=["a", "b"], ignore=["b"]))) == ["a"]


def test_order_does_not_bring_back_an_ignored_operator() -> None:
    assert operators(route(THREE, provider(order=["a"], ignore=["a"]))) == ["c", "b"]


# --- sort ------------------------------------------------------------------------------------------------


def test_sort_latency_puts_the_lowest_p50_first() -> None:
    state_of = states(a=OfferState(latency_p50_ms=50), b=OfferState(latency_p50_ms=400))  # c: none measured
    assert operators(route(THREE, provider(sort="latency"), state_of=state_of)) == ["a", "b", "c"]


def test_sort_latency_breaks_ties_by_price() -> None:
    state_of = states(a=OfferState(latency_p50_ms=80), b=OfferState(latency_p50_ms=80), c=OfferState(latency_p50_ms=80))
    assert operators(route(THREE, provider(sort="latency"), state_of=state_of)) == ["c", "b", "a"]


def test_sort_throughput_puts_the_most_tokens_per_second_first() -> None:
    state_of = states(a=OfferState(tokens_per_s=90), b=OfferState(tokens_per_s=30))  # c: none measured
    assert operators(route(THREE, provider(sort="throughput"), state_of=state_of)) == ["a", "b", "c"]


def test_sort_throughput_breaks_ties_by_price() -> None:
    state_of = states(a=OfferState(tokens_per_s=10), b=OfferState(tokens_per_s=10), c=OfferState(tokens_per_s=10))
    assert operators(route(THREE, provider(sort="throughput"), state_of=state_of)) == ["c", "b", "a"]


# --- max_price -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "nano"),
    [
        (2, 2000),
        (0, 0),
        (2.0, 2000),
        (0.2, 200),
        (1.5, 1500),
        (0.001, 1),
        ("2", 2000),
        ("0.2", 200),
        (" 2.500 ", 2500),
        ("0.001", 1),
        (10**6, 10**9),
    ],
)
def test_max_price_is_read_in_cny_per_million_tokens(value: object, nano: int) -> None:
    prefs = parse_preferences(provider(max_price={"prompt": value, "completion": value}), MODEL)
    assert (prefs.max_prompt_nano, prefs.max_completion_nano) == (nano, nano)


def test_no_max_price_means_no_limit() -> None:
    prefs = parse_preferences(provider(max_price={}), MODEL)
    assert (prefs.max_prompt_nano, prefs.max_completion_nano) == (None, None)
    assert parse_preferences({}, MODEL) == RoutePreferences()


@given(st.integers(min_value=0, max_value=10**9))
def test_every_json_spelling_of_a_max_price_reads_the_same(milli_cny: int) -> None:
    """A float from JSON is read through its shortest decimal form, so it is as exact as the string."""
    text = f"{milli_cny // 1000}.{milli_cny % 1000:03d}"
    spellings: list[object] = [text, milli_cny / 1000]
    if milli_cny % 1000 == 0:
        spellings.append(milli_cny // 1000)
    for value in spellings:
        prefs = parse_preferences(provider(max_price={"prompt": value}), MODEL)
        assert prefs.max_prompt_nano == milli_cny * NANO_PER_TOKEN_PER_CNY_PER_MTOK // 1000


@pytest.mark.parametrize("limit", [2, 2.0, "2", "2.000"])
def test_max_prompt_price_allows_an_equal_price_and_refuses_one_nano_more(limit: object) -> None:
    catalog = build(offer("equal", input_price="2"), offer("over", input_price="2.001"))
    assert operators(route(catalog, provider(max_price={"prompt": limit}))) == ["equal"]


@pytest.mark.parametrize("limit", [0.2, "0.2"])
def test_max_completion_price_allows_an_equal_price_and_refuses_one_nano_more(limit: object) -> None:
    catalog = build(offer("equal", output_price="0.2"), offer("over", output_price="0.201"))
    assert operators(route(catalog, provider(max_price={"completion": limit}))) == ["equal"]


def test_max_prompt_price_also_bounds_cached_input() -> None:
    catalog = build(offer("a", price={"input": "1", "cached_input": "3", "output": "1"}), offer("b", input_price="2"))
    assert operators(route(catalog, provider(max_price={"prompt": 2}))) == ["b"]


def test_max_completion_price_also_bounds_reasoning() -> None:
    catalog = build(offer("a", price={"input": "1", "output": "1", "reasoning": "5"}), offer("b", output_price="4"))
    assert operators(route(catalog, provider(max_price={"completion": 4}))) == ["b"]


def test_max_price_applies_both_bounds() -> None:
    catalog = build(
        offer("a", input_price="1", output_price="9"),
        offer("b", input_price="9", output_price="1"),
        offer("c", input_price="2", output_price="2"),
    )
    assert operators(route(catalog, provider(max_price={"prompt": 2, "completion": 2}))) == ["c"]


# --- models: fallback models -----------------------------------------------------------------------------


def test_fallback_models_come_after_every_offer_of_the_model() -> None:
    catalog = build(
        offer("a", input_price="5"),
        offer("b", input_price="4"),
        offer("a", model="g", input_price="0"),
        offer("c", model="h", input_price="0"),
    )
    assert ids(route(catalog, {"models": ["h", "g"]})) == ["b/m", "a/m", "c/h", "a/g"]


def test_the_model_itself_in_models_is_skipped() -> None:
    catalog = build(offer("a"), offer("b", model="g"))
    assert parse_preferences({"models": [MODEL, "g", MODEL]}, MODEL).fallback_models == ("g",)
    assert ids(route(catalog, {"models": [MODEL, "g"]})) == ["a/m", "b/g"]


def test_fallback_models_are_capped() -> None:
    names = [f"f{i}" for i in range(FALLBACK_MODELS_MAX + 3)]
    catalog = build(offer("a"), *(offer("a", model=name) for name in names))
    assert parse_preferences({"models": names}, MODEL).fallback_models == tuple(names[:FALLBACK_MODELS_MAX])
    plan = route(catalog, {"models": [MODEL, *names]})
    assert [o.model for o in plan] == [MODEL, *names[:FALLBACK_MODELS_MAX]]


def test_a_fallback_model_serves_when_the_model_is_unknown() -> None:
    catalog = build(offer("a", model="g"))
    assert ids(route(catalog, {"models": ["g"]}, model="nope")) == ["a/g"]


def test_a_fallback_model_serves_when_every_offer_of_the_model_is_down() -> None:
    catalog = build(offer("a"), offer("b", model="g"))
    assert ids(route(catalog, {"models": ["g"]}, state_of=states(a=DOWN))) == ["b/g"]


def test_an_unknown_fallback_model_is_passed_over() -> None:
    catalog = build(offer("a"))
    assert ids(route(catalog, {"models": ["nope"]})) == ["a/m"]


def test_a_fallback_model_the_key_may_not_use_is_passed_over() -> None:
    catalog = build(offer("a"), offer("b", model="g"))
    assert ids(route(catalog, {"models": ["g"]}, key_models=(MODEL,))) == ["a/m"]


def test_provider_preferences_apply_to_fallback_models_too() -> None:
    catalog = build(offer("a"), offer("a", model="g"), offer("b", model="g"))
    assert ids(route(catalog, {"models": ["g"], "provider": {"ignore": ["a"]}})) == ["b/g"]


def test_a_fallback_model_listed_twice_is_planned_once() -> None:
    catalog = build(offer("a"), offer("b", model="g"))
    assert ids(route(catalog, {"models": ["g", "g"]})) == ["a/m", "b/g"]


# --- when nothing can serve ------------------------------------------------------------------------------


def refusal(catalog: Catalog, body: Mapping[str, Any] | None = None, **kwargs: Any) -> SuanliError:
    with pytest.raises(SuanliError) as caught:
        route(catalog, body, **kwargs)
    return caught.value


def test_an_unknown_model_is_not_found() -> None:
    error = refusal(THREE, model="nope")
    assert isinstance(error, NotFound)
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
    assert "nope" in error.message


def test_a_model_without_offers_is_not_found() -> None:
    error = refusal(build(offer("a"), extra_models=("bare",)), model="bare")
    assert isinstance(error, NotFound) and error.code == "model_not_found"


def test_an_unknown_model_with_unknown_fallbacks_is_not_found() -> None:
    error = refusal(THREE, {"models": ["nope-2"]}, model="nope")
    assert isinstance(error, NotFound) and error.code == "model_not_found"


def test_a_model_the_key_may_not_use_is_forbidden() -> None:
    error = refusal(THREE, key_models=("other",))
    assert isinstance(error, Forbidden)
    assert (error.status, error.code, error.param) == (403, "model_not_allowed", "model")
    assert refusal(THREE, key_models=()).code == "model_not_allowed"


def test_a_model_not_sold_to_the_tier_is_forbidden() -> None:
    error = refusal(build(offer("a", tiers=["household"])), tier="enterprise")
    assert isinstance(error, Forbidden)
    assert (error.status, error.code, error.param) == (403, "model_not_offered_to_tier", "model")


@pytest.mark.parametrize(
    "prefs",
    [
        {"only": ["nobody"]},
        {"only": []},
        {"ignore": ["a", "b", "c"]},
        {"only": ["a"], "ignore": ["a"]},
        {"order": ["nobody"], "allow_fallbacks": False},
    ],
)
def test_excluding_every_operator_is_a_bad_request(prefs: dict[str, Any]) -> None:
    error = refusal(THREE, {"provider": prefs})
    assert isinstance(error, BadRequest)
    assert (error.status, error.code, error.param) == (400, "no_operator_allowed", "provider")


def test_nothing_within_max_price_names_the_cheapest_operator() -> None:
    catalog = build(
        offer("a", input_price="3", output_price="3"),
        offer("b", input_price="2.5", output_price="3"),
        offer("c", input_price="1", output_price="9"),
    )
    error = refusal(catalog, provider(max_price={"prompt": 0.5}))
    assert isinstance(error, BadRequest)
    assert (error.status, error.code, error.param) == (400, "no_offer_within_max_price", "provider.max_price")
    assert "the cheapest, b, asks 2.5 input and 3 output" in error.message


def test_every_offer_unhealthy_is_service_unavailable() -> None:
    error = refusal(THREE, state_of=states(a=DOWN, b=DOWN, c=DOWN))
    assert isinstance(error, ServiceUnavailable)
    assert (error.status, error.code) == (503, "no_healthy_offer")
    assert "a, b, c" in error.message


def test_a_capacity_full_offer_is_still_planned_rather_than_refused() -> None:
    assert operators(route(build(offer("a")), state_of=states(a=FULL))) == ["a"]


# --- parse_preferences: bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"provider": []}, "provider"),
        ({"provider": "a"}, "provider"),
        ({"provider": 1}, "provider"),
        (provider(allow_fallbacks="false"), "provider.allow_fallbacks"),
        (provider(allow_fallbacks=0), "provider.allow_fallbacks"),
        (provider(allow_fallbacks=None), "provider.allow_fallbacks"),
        (provider(sort="cheapest"), "provider.sort"),
        (provider(sort="Price"), "provider.sort"),
        (provider(sort=["price"]), "provider.sort"),
        (provider(order="a"), "provider.order"),
        (provider(order=[1]), "provider.order"),
        (provider(order=["a", None]), "provider.order"),
        (provider(order=[""]), "provider.order"),
        (provider(order={"a": 1}), "provider.order"),
        (provider(only="a"), "provider.only"),
        (provider(ignore=[["a"]]), "provider.ignore"),
        (provider(max_price=[]), "provider.max_price"),
        (provider(max_price=2), "provider.max_price"),
        (provider(max_price="2"), "provider.max_price"),
        (provider(max_price={"prompt": -1}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": -0.5}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": "-1"}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": True}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": False}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": 0.0001}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": "0.0001"}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": 0.1 + 0.2}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": float("nan")}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": float("inf")}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": "two"}), "provider.max_price.prompt"),
        (provider(max_price={"prompt": [2]}), "provider.max_price.prompt"),
        (provider(max_price={"completion": -1}), "provider.max_price.completion"),
        (provider(max_price={"completion": True}), "provider.max_price.completion"),
        (provider(max_price={"completion": "0.0005"}), "provider.max_price.completion"),
        ({"models": "glm-5"}, "models"),
        ({"models": [1]}, "models"),
        ({"models": {"glm-5": True}}, "models"),
    ],
)
def test_bad_preferences_are_an_invalid_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_preferences(body, MODEL)
    assert (caught.value.status, caught.value.code, caught.value.param) == (400, "invalid_field", param)


def test_null_provider_and_fields_mean_the_defaults() -> None:
    body = {"provider": None, "models": None}
    assert parse_preferences(body, MODEL) == RoutePreferences()
    nulls = provider(order=None, only=None, ignore=None, sort=None, max_price=None)
    assert parse_preferences(nulls, MODEL) == RoutePreferences()


def test_preferences_are_read_whole() -> None:
    body = {
        "provider": {
            "order": ["b", "a"],
            "only": ["a", "b"],
            "ignore": ["c"],
            "sort": "latency",
            "allow_fallbacks": False,
            "max_price": {"prompt": 2, "completion": "3.5"},
        },
        "models": ["g"],
    }
    assert parse_preferences(body, MODEL) == RoutePreferences(
        order=("b", "a"),
        only=frozenset({"a", "b"}),
        ignore=frozenset({"c"}),
        sort="latency",
        allow_fallbacks=False,
        max_prompt_nano=2000,
        max_completion_nano=3500,
        fallback_models=("g",),
    )


# --- properties of the default plan ----------------------------------------------------------------------

OPERATOR_NAMES = ("a", "b", "c", "d", "e", "f")
milli_prices = st.integers(min_value=0, max_value=5000)
offer_states = st.builds(OfferState, available=st.booleans(), utilization=st.sampled_from([0.0, 0.5, 0.99, 1.0, 2.0]))


def _cny(milli: int) -> str:
    return f"{milli // 1000}.{milli % 1000:03d}"


@st.composite
def markets(draw: st.DrawFn) -> tuple[Catalog, dict[str, OfferState]]:
    names = draw(st.lists(st.sampled_from(OPERATOR_NAMES), min_size=1, unique=True))
    specs = [offer(n, input_price=_cny(draw(milli_prices)), output_price=_cny(draw(milli_prices))) for n in names]
    return build(*specs), {n: draw(offer_states) for n in names}


@st.composite
def preference_bodies(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["only"] = draw(st.lists(st.sampled_from(OPERATOR_NAMES), unique=True))
    fields["ignore"] = draw(st.lists(st.sampled_from(OPERATOR_NAMES), unique=True, max_size=2))
    max_price = {
        name: _cny(milli) for name in ("prompt", "completion") if (milli := draw(st.none() | milli_prices)) is not None
    }
    return provider(max_price=max_price, **fields)


def _eligible(offer: Offer, prefs: RoutePreferences, state: OfferState) -> bool:
    return (
        state.available
        and (prefs.only is None or offer.operator in prefs.only)
        and offer.operator not in prefs.ignore
        and (prefs.max_prompt_nano is None or offer.prices.input_nano <= prefs.max_prompt_nano)
        and (prefs.max_completion_nano is None or offer.prices.output_nano <= prefs.max_completion_nano)
    )


@settings(max_examples=150)
@given(markets(), preference_bodies())
def test_the_plan_is_every_eligible_offer_cheapest_first_full_ones_last(
    market: tuple[Catalog, dict[str, OfferState]], body: dict[str, Any]
) -> None:
    catalog, by_operator = market
    prefs = parse_preferences(body, MODEL)
    eligible = {o.id for o in catalog.offers if _eligible(o, prefs, by_operator[o.operator])}
    if not eligible:
        with pytest.raises((BadRequest, ServiceUnavailable)):
            route(catalog, body, state_of=states(**by_operator))
        return
    plan = route(catalog, body, state_of=states(**by_operator))
    assert len(plan) == len(eligible) and {o.id for o in plan} == eligible
    keys = [(by_operator[o.operator].utilization >= 1.0, o.prices.input_nano + o.prices.output_nano) for o in plan]
    assert keys == sorted(keys)
