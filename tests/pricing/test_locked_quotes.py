"""Quotes that lock the price book: read from the catalog, locked at reservation, honoured at settlement.

Pinned: a request reserved at 11:59:59.999 Beijing time keeps its peak quote when settled after noon; the
long-context threshold at N-1, N and N+1 input tokens; a price version never alters a quote already given;
and, as a property over random schedules, instants, loads and usages: a quote is never exceeded.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.catalog import Catalog, Offer, Prices, parse_catalog
from suanli.errors import BadRequest, ConfigError
from suanli.gateway.health import HealthRegistry
from suanli.gateway.quoting import PriceClock, quote_plan
from suanli.gateway.requests import chat_request_from
from suanli.gateway.routing import OfferState, RoutePreferences, plan_route
from suanli.limits import PRICE_VERSION_HORIZON_DAYS
from suanli.pricing import TokenUsage, charge, cost_nano, quote
from suanli.pricing.calendar import Calendar, epoch_ms
from suanli.pricing.listing import Bounds, PriceList, offer_quote, parse_instant
from suanli.pricing.schedule import LoadSurcharge, LongContextTier, PriceSchedule, TimeWindow, lock
from tests.pricing.catalogs import DEEPSEEK_OFFER_PRICING

CATALOG = (
    """
[operators.ds]
base_url = "http://ds/v1"
[operators.zp]
base_url = "http://zp/v1"

[models."deepseek-v3.2"]
[models."glm-5"]
[models.plain]

[[offers]]
operator = "ds"
model = "deepseek-v3.2"
"""
    + DEEPSEEK_OFFER_PRICING
    + """[[offers.price_versions]]
effective_from = 2026-07-01T00:00:00+08:00
price = { input = "1", cached_input = "0.1", output = "2" }

[[offers]]
operator = "zp"
model = "glm-5"
context_window = 200000
max_output_tokens = 16384
price = { input = "4", cached_input = "1", output = "18" }
[offers.pricing]
long_context = [{ above_input_tokens = 32000, input = "6", cached_input = "1.5", output = "24" }]
batch_percent = 50

[[offers]]
operator = "zp"
model = "plain"
context_window = 1000
max_output_tokens = 100
price = { input = "1", output = "2" }

[calendar]
timezone = "Asia/Shanghai"
holidays = [2026-06-19]
workdays = ["2026-06-28"]
"""
)
BEFORE_JULY_MS = epoch_ms(datetime.fromisoformat("2026-06-01T00:00:00+08:00"))
BOOK = parse_catalog(tomllib.loads(CATALOG), {}, now_ms=BEFORE_JULY_MS)
OFFERS = {offer.model: offer for offer in BOOK.offers}
THRESHOLD = 32_000
PEAK = Prices(2000, 200, 3000, 3000, 2000)
OFF_PEAK = Prices(1000, 100, 1500, 1500, 1000)


def ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text))


def locked_quote(model: str, at: str, input_max: int, output_max: int, load_permille: int = 0) -> Any:
    prices = PriceList(BOOK.price_book, BOOK.calendar)
    return quote(OFFERS[model], input_max, output_max, prices.lock_at(OFFERS[model], ms(at), load_permille))


def test_the_catalog_reads_schedules_versions_and_the_calendar() -> None:
    offer = OFFERS["deepseek-v3.2"]
    history = BOOK.price_book.history(offer.id)
    assert [v.effective_from_ms for v in history] == [0, ms("2026-07-01T00:00:00+08:00")]
    assert history[1].schedule.windows == history[0].schedule.windows  # a version keeps the offer's rules
    assert history[1].schedule.base == Prices(1000, 100, 2000, 2000, 1000)
    assert offer.prices == PEAK  # the base price in force when the catalog was read
    assert parse_catalog(tomllib.loads(CATALOG), {}, now_ms=ms("2026-07-02T00:00:00+08:00")).offers[0].prices == (
        Prices(1000, 100, 2000, 2000, 1000)
    )
    assert BOOK.timezone == BOOK.calendar.timezone == "Asia/Shanghai"
    assert BOOK.calendar.day_type(datetime(2026, 6, 19).date()) == "holiday"
    assert BOOK.calendar.day_type(datetime(2026, 6, 28).date()) == "weekday"  # a make-up Sunday


def test_reserved_at_11_59_59_999_is_settled_at_the_peak_price_after_noon() -> None:
    usage = TokenUsage(input=1000, cached_input=500, output=400)
    before_noon = locked_quote("deepseek-v3.2", "2026-06-10T11:59:59.999+08:00", 2000, 400)  # a Wednesday
    at_noon = locked_quote("deepseek-v3.2", "2026-06-10T12:00:00+08:00", 2000, 400)
    assert (before_noon.locked.window_name, before_noon.locked.valid_until_ms) == (
        "peak",
        ms("2026-06-10T12:00:00+08:00"),
    )
    # Settling reads no clock: whenever it runs (after noon, here), the lock made before noon prices it.
    settled = charge(before_noon, usage)
    assert settled.cost_nano == cost_nano(PEAK, usage) == 1000 * 2000 + 500 * 200 + 400 * 3000
    assert settled.prices == PEAK and settled.uncharged_nano == 0
    assert charge(at_noon, usage).cost_nano == cost_nano(OFF_PEAK, usage) == settled.cost_nano // 2


@pytest.mark.parametrize(
    ("input_tokens", "tier"),
    [(THRESHOLD - 1, "base"), (THRESHOLD, "base"), (THRESHOLD + 1, "long")],
)
def test_the_long_context_threshold_at_n_minus_1_n_and_n_plus_1(input_tokens: int, tier: str) -> None:
    base, long = Prices(4000, 1000, 18000, 18000, 4000), Prices(6000, 1500, 24000, 24000, 6000)
    expected = {"base": base, "long": long}[tier]
    q = locked_quote("glm-5", "2026-06-10T10:00:00+08:00", input_tokens, 100)
    # The reservation is at the dearest tier the bound can reach; the charge at the tier the usage reached.
    assert q.prices == expected
    assert q.reserved_nano == input_tokens * expected.input_nano + 100 * expected.output_nano
    usage = TokenUsage(input=input_tokens - 10, cached_input=10, output=100)  # cached input counts too
    settled = charge(q, usage)
    assert settled.prices == expected
    assert settled.cost_nano == cost_nano(expected, usage) and settled.uncharged_nano == 0


def test_a_bound_above_the_threshold_reserves_long_context_but_short_usage_pays_base() -> None:
    q = locked_quote("glm-5", "2026-06-10T10:00:00+08:00", THRESHOLD + 5000, 100)
    settled = charge(q, TokenUsage(input=THRESHOLD, output=100))
    assert settled.prices.input_nano == 4000 and settled.cost_nano < q.reserved_nano


def test_a_new_price_version_never_alters_a_quote_already_given() -> None:
    usage = TokenUsage(input=1000, output=1000)
    given_in_june = locked_quote("deepseek-v3.2", "2026-06-30T23:59:59.999+08:00", 1000, 1000)  # a Tuesday night
    in_july = locked_quote("deepseek-v3.2", "2026-07-01T00:00:00+08:00", 1000, 1000)
    assert charge(given_in_june, usage).cost_nano == 1000 * 1000 + 1000 * 1500  # June's price, off-peak
    assert charge(in_july, usage).cost_nano == 1000 * 500 + 1000 * 1000  # July's, off-peak
    assert given_in_june.locked.valid_until_ms == ms("2026-07-01T09:00:00+08:00")  # the lock itself is kept


def test_an_offer_without_pricing_prices_as_before_at_any_instant() -> None:
    offer = OFFERS["plain"]
    prices = PriceList(BOOK.price_book, BOOK.calendar)
    for at in ("2026-06-10T11:00:00+08:00", "2026-06-13T03:00:00+08:00"):
        locked = prices.lock_at(offer, ms(at), 1000)
        assert locked.multiplier_bp == 10_000 and locked.base == offer.prices
        assert quote(offer, 500, 100, locked).reserved_nano == quote(offer, 500, 100).reserved_nano


def test_the_load_surcharge_comes_from_the_offers_calls_in_flight() -> None:
    offer = OFFERS["deepseek-v3.2"]
    health = HealthRegistry(BOOK.offers)
    at = ms("2026-06-10T10:00:00+08:00")
    assert PriceClock(BOOK).lock(offer, at, health).surcharge_permille == 0
    health.of(offer).in_flight = 9  # 900 per mille: halfway from 80% to 100%
    assert PriceClock(BOOK).lock(offer, at, health).surcharge_permille == 100
    health.of(offer).in_flight = 25  # over capacity: the surcharge stays at its cap
    locked = PriceClock(BOOK).lock(offer, at, health)
    assert locked.surcharge_permille == 200 and locked.base.input_nano == 2400


def test_quote_plan_locks_every_offer_at_the_instant_given() -> None:
    health = HealthRegistry(BOOK.offers)
    request = chat_request_from(
        {"model": "deepseek-v3.2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    )
    plan = [OFFERS["deepseek-v3.2"], OFFERS["plain"]]
    quotes = quote_plan(
        PriceClock(BOOK), health, plan, request, prompt_tokens=18, t_ms=ms("2026-06-13T11:00:00+08:00")
    )  # Saturday: 18 tokens and the default 10 % margin, rounded up, bound the input at 20
    assert quotes["ds/deepseek-v3.2"].locked.window_name == "off-peak"
    assert quotes["ds/deepseek-v3.2"].reserved_nano == 20 * 1000 + 50 * 1500
    assert quotes["zp/plain"].output_tokens_max == 50 and quotes["zp/plain"].locked.window_name == "standard"


def test_cheapest_today_is_noon_from_mid_morning_and_now_in_the_evening() -> None:
    prices, offer, bounds = PriceList(BOOK.price_book, BOOK.calendar), OFFERS["deepseek-v3.2"], Bounds(1000, 1000)
    morning = offer_quote(prices, offer, ms("2026-06-10T10:30:00+08:00"), bounds)
    assert morning["now"]["window"] == "peak" and morning["now"]["max_cost_nano"] == 1000 * 2000 + 1000 * 3000
    assert morning["cheapest_today"]["at"] == "2026-06-10T12:00:00+08:00"
    assert morning["cheapest_today"]["max_cost"] == "0.0025"
    evening = offer_quote(prices, offer, ms("2026-06-10T19:00:00+08:00"), bounds)
    assert evening["cheapest_today"]["at_ms"] == evening["now"]["at_ms"]


def test_cheapest_today_sees_a_price_version_that_starts_later_that_day() -> None:
    prices, offer, bounds = PriceList(BOOK.price_book, BOOK.calendar), OFFERS["deepseek-v3.2"], Bounds(1000, 1000)
    # June 30th is a Tuesday: its evening is off-peak at June's prices; July's prices start at midnight,
    # which is the next day, so the cheapest time on June 30th is 18:00.
    evening = offer_quote(prices, offer, ms("2026-06-30T17:00:00+08:00"), bounds)
    assert evening["cheapest_today"]["at"] == "2026-06-30T18:00:00+08:00"
    # On July 1st (a Wednesday) at 10:00 the version is in force: half of July's peak price from noon.
    july = offer_quote(prices, offer, ms("2026-07-01T10:00:00+08:00"), bounds)
    assert july["now"]["max_cost_nano"] == 1000 * 1000 + 1000 * 2000
    assert july["cheapest_today"]["max_cost_nano"] == (1000 * 1000 + 1000 * 2000) // 2


def test_the_price_list_entry_shows_now_until_next_and_the_rules() -> None:
    prices = PriceList(BOOK.price_book, BOOK.calendar)
    entry = prices.entry(OFFERS["deepseek-v3.2"], ms("2026-06-10T11:59:59.999+08:00"), 850)
    assert entry["current"]["window"] == "peak" and entry["current"]["until"] == "2026-06-10T12:00:00+08:00"
    assert entry["current"]["surcharge_permille"] == 50
    assert entry["current"]["prices"]["cny_per_mtok"]["input"] == "2.1"  # 5% above ¥2
    assert (entry["next"]["window"], entry["next"]["window_percent"]) == ("off-peak", 50)
    rules = entry["rules"]
    assert rules["next_version_from"] == "2026-07-01T00:00:00+08:00" and rules["effective_from"] is None
    assert rules["windows"][0] == {
        "name": "off-peak",
        "days": ["weekday"],
        "from": "00:00",
        "to": "09:00",
        "percent": 50,
    }
    assert rules["windows"][-1]["to"] == "24:00"
    assert rules["load_surcharge"] == {
        "above_percent": 80,
        "max_percent": 20,
        "utilisation_permille": 850,
        "current_permille": 50,
    }
    glm = prices.entry(OFFERS["glm-5"], ms("2026-06-10T10:00:00+08:00"), 0)
    assert glm["next"] is None and glm["current"]["until"] is None and glm["rules"]["batch_percent"] == 50
    assert glm["rules"]["long_context"][0]["prices"]["cny_per_mtok"]["output"] == "24"


def test_an_instant_without_a_zone_is_read_in_the_calendars_zone() -> None:
    assert parse_instant("2026-06-10T12:00", BOOK.calendar, "at", BEFORE_JULY_MS) == ms("2026-06-10T12:00:00+08:00")
    with pytest.raises(BadRequest) as refused:
        parse_instant("noon", BOOK.calendar, "at", BEFORE_JULY_MS)
    assert refused.value.code == "invalid_field" and refused.value.param == "at"


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59", "0001-01-01", "0001-01-01T00:00:00+14:00", "1969-12-31", "2127-01-01T00:00:00Z"]
)
def test_an_instant_beyond_the_horizon_or_before_1970_is_refused(text: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_instant(text, BOOK.calendar, "at", BEFORE_JULY_MS)
    assert refused.value.code == "invalid_field" and "1970" in refused.value.message


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        (
            "[offers.pricing]\n"
            "windows = [{ name = 'x', days = ['weekday'], from = '10:00', to = '09:00', percent = 50 }]",
            "offer zp/plain.pricing.windows[0]: to 09:00 is not after from 10:00",
        ),
        ("[offers.pricing]\nbatch_percent = 0", "offer zp/plain.pricing"),
        ("[offers.pricing]\nsurge = 2", "offer zp/plain.pricing: unknown key 'surge'"),
        (
            "[[offers.price_versions]]\neffective_from = 2026-07-01T00:00:00\nprice = { input = '1', output = '1' }",
            "offer zp/plain.price_versions[0].effective_from: ",
        ),
        (
            "[[offers.price_versions]]\neffective_from = '1969-12-31T00:00:00Z'\nprice = { input = '1', output = '1' }",
            "later than the version before it",
        ),
        (
            "[[offers.price_versions]]\neffective_from = 2026-07-01T00:00:00Z\nprice = { input = '1' }",
            "offer zp/plain.price_versions[0]: price.output is required",
        ),
        (
            "[[offers.price_versions]]\neffective_from = 9999-12-31T23:59:59Z\nprice = { input = '1', output = '1' }",
            f"effective_from is more than {PRICE_VERSION_HORIZON_DAYS} days ahead",
        ),
    ],
)
def test_a_bad_pricing_table_names_the_offer(pricing: str, message: str) -> None:
    text = CATALOG.replace(
        'price = { input = "1", output = "2" }\n', f'price = {{ input = "1", output = "2" }}\n{pricing}\n'
    )
    with pytest.raises(ConfigError) as refused:
        parse_catalog(tomllib.loads(text), {})
    assert message in str(refused.value)


def test_a_bad_calendar_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"calendar\.timezone: unknown time zone"):
        parse_catalog(tomllib.loads(CATALOG.replace('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"')), {})


# A quote is never exceeded, for any schedule, instant, load, batch flag and usage.
_prices = st.builds(Prices, *(st.integers(0, 50_000) for _ in range(5)))
_tokens = st.integers(0, 300_000)
_day_types = st.lists(st.sampled_from(["weekday", "weekend", "holiday"]), min_size=1, max_size=3, unique=True)


@st.composite
def _windows(draw: st.DrawFn) -> tuple[TimeWindow, ...]:
    """Up to three windows on whole hours; overlapping ones are left out, as start-up refuses them."""
    chosen: list[TimeWindow] = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, 23))
        end = min(24, start + draw(st.integers(1, 6)))
        window = TimeWindow(
            draw(st.sampled_from(["night", "day"])),
            frozenset(draw(_day_types)),
            time(start),
            time(end % 24),
            draw(st.integers(1, 1000)),
        )
        if all(
            not (w.day_types & window.day_types) or w.end_ms <= window.start_ms or window.end_ms <= w.start_ms
            for w in chosen
        ):
            chosen.append(window)
    return tuple(chosen)


@st.composite
def _schedules(draw: st.DrawFn) -> PriceSchedule:
    thresholds = sorted(draw(st.sets(st.integers(0, 200_000), max_size=3)))
    tiers = tuple(LongContextTier(above, draw(_prices)) for above in thresholds)
    surcharge = draw(st.none() | st.builds(LoadSurcharge, st.integers(0, 99), st.integers(1, 100)))
    return PriceSchedule(draw(_prices), tiers, draw(_windows()), draw(st.integers(1, 1000)), surcharge)


@given(
    _schedules(),
    st.tuples(st.integers(1_767_225_600_000, 1_830_297_600_000), st.integers(0, 2000), st.booleans()),
    st.tuples(_tokens, _tokens),
    st.builds(TokenUsage, _tokens, _tokens, _tokens, _tokens, _tokens),
)
def test_a_quote_is_never_exceeded(
    schedule: PriceSchedule, when: tuple[int, int, bool], bounds: tuple[int, int], usage: TokenUsage
) -> None:
    t_ms, load_permille, batch = when
    input_max, output_max = bounds
    offer = Offer("op/m", "op", "m", "m", schedule.base, 1_000_000, 100_000, frozenset({"enterprise"}))
    q = quote(offer, input_max, output_max, lock(schedule, Calendar(), t_ms, load_permille, batch))
    settled = charge(q, usage)
    assert 0 <= settled.cost_nano <= q.reserved_nano
    assert settled.cost_nano + settled.uncharged_nano == cost_nano(settled.prices, usage)
    # Usage within the quote's bounds is always covered in full: nothing is absorbed by the platform.
    fresh, out = min(usage.input, input_max), min(usage.output, output_max)
    within = TokenUsage(
        input=fresh,
        cached_input=min(usage.cached_input, input_max - fresh),
        output=out,
        reasoning=min(usage.reasoning, output_max - out),
    )
    assert charge(q, within).uncharged_nano == 0


def test_catalog_type_is_what_the_gateway_reads() -> None:
    assert isinstance(BOOK, Catalog) and BOOK.price_book.schedule_at("zp/plain", 0) is not None


ROUTED = """
[operators.flat]
base_url = "http://flat/v1"
[operators.tidal]
base_url = "http://tidal/v1"
[models.m]
[[offers]]
operator = "flat"
model = "m"
context_window = 1000
max_output_tokens = 100
price = { input = "2", output = "3" }
[[offers]]
operator = "tidal"
model = "m"
context_window = 1000
max_output_tokens = 100
price = { input = "3", output = "4" }
[offers.pricing]
default_window_name = "peak"
windows = [{ name = "off-peak", days = ["weekday"], from = "00:00", to = "09:00", percent = 50 }]
"""


def test_routing_prefers_the_offer_cheapest_now_not_at_its_base_price() -> None:
    catalog = parse_catalog(tomllib.loads(ROUTED), {}, now_ms=BEFORE_JULY_MS)
    clock = PriceClock(catalog)

    def route(at: str) -> list[str]:
        t = ms(at)
        plan = plan_route(
            catalog,
            model="m",
            tier="enterprise",
            key_models=None,
            prefs=RoutePreferences(),
            state_of=lambda offer: OfferState(),
            price_of=lambda offer: clock.prices(offer, t),
        )
        return [offer.operator for offer in plan]

    assert route("2026-06-10T10:00:00+08:00") == ["flat", "tidal"]  # peak: ¥3+¥4 against ¥2+¥3
    assert route("2026-06-10T08:59:59.999+08:00") == ["tidal", "flat"]  # off-peak: ¥1.5+¥2 is the cheapest now


def test_the_price_clock_keeps_a_lock_until_the_price_changes() -> None:
    catalog = parse_catalog(tomllib.loads(ROUTED), {}, now_ms=BEFORE_JULY_MS)
    clock, tidal = PriceClock(catalog), catalog.offers[1]
    early = clock.locked(tidal, ms("2026-06-10T08:00:00+08:00"))
    assert clock.locked(tidal, ms("2026-06-10T08:59:59.999+08:00")) is early  # the same window: kept
    later = clock.locked(tidal, ms("2026-06-10T09:00:00+08:00"))
    assert (early.window_name, later.window_name) == ("off-peak", "peak")
    assert clock.prices(tidal, ms("2026-06-10T09:00:00+08:00")).input_nano == 3000
