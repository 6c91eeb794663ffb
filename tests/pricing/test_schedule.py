"""Price schedules: exact boundaries, wall-clock windows across daylight saving, a lock that covers the
settlement, a bounded surcharge and a price book whose past never changes."""

from __future__ import annotations

import tomllib
from datetime import date, datetime, time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.catalog import Prices
from suanli.errors import BadRequest, ConfigError
from suanli.pricing import TokenUsage, cost_nano
from suanli.pricing.calendar import Calendar, epoch_ms
from suanli.pricing.schedule import (
    NEXT_CHANGE_LOOKAHEAD_MS,
    LoadSurcharge,
    LongContextTier,
    PriceBook,
    PricePoint,
    PriceSchedule,
    PriceVersion,
    TimeWindow,
    cheapest_window_today,
    lock,
    max_prices,
    next_change,
    parse_schedule,
    prices_for,
    scale_prices,
)

BASE = Prices(input_nano=2000, cached_input_nano=200, output_nano=8000, reasoning_nano=8000, cache_write_nano=2000)
LONG = Prices(input_nano=4000, cached_input_nano=400, output_nano=16000, reasoning_nano=16000, cache_write_nano=4000)
CHINA = Calendar("Asia/Shanghai", frozenset({date(2025, 10, 1)}), frozenset({date(2025, 10, 11)}))
BERLIN = Calendar("Europe/Berlin")
ALL_DAYS = ["weekday", "weekend", "holiday"]

# DeepSeek's pattern: peak 09:00-12:00 and 14:00-18:00 Beijing time on working days, half price otherwise.
DEEPSEEK_TOML = """
[pricing]
default_window_name = "peak"
batch_percent = 50
load_surcharge = { above_percent = 80, max_percent = 20 }
long_context = [ { above_input_tokens = 32000, input = "4", cached_input = "0.4", output = "16" } ]
windows = [
  { name = "off-peak", days = ["weekday"], from = "00:00", to = "09:00", percent = 50 },
  { name = "off-peak", days = ["weekday"], from = "12:00", to = "14:00", percent = 50 },
  { name = "off-peak", days = ["weekday"], from = "18:00", to = "24:00", percent = 50 },
  { name = "off-peak", days = ["weekend", "holiday"], from = "00:00", to = "24:00", percent = 50 },
]
"""
DEEPSEEK = parse_schedule(BASE, tomllib.loads(DEEPSEEK_TOML)["pricing"], "offer deepseek.pricing")

prices = st.builds(Prices, *(st.integers(min_value=0, max_value=100_000) for _ in range(5)))
instants = st.integers(min_value=1_704_067_200_000, max_value=1_798_761_600_000)  # 2024 to 2026


def ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text))


def window(name: str, days: list[str], start: str, end: str, percent: int) -> dict[str, Any]:
    return {"name": name, "days": days, "from": start, "to": end, "percent": percent}


def tier(above: int, **prices: Any) -> dict[str, Any]:
    return {"above_input_tokens": above, "input": "4", "output": "16", **prices}


def schedule(*windows: dict[str, Any], **extra: Any) -> PriceSchedule:
    return parse_schedule(BASE, {"windows": list(windows), **extra}, "test")


def test_the_toml_example_is_read_exactly() -> None:
    assert DEEPSEEK.batch_percent == 50
    assert DEEPSEEK.surcharge == LoadSurcharge(80, 20)
    assert DEEPSEEK.long_context == (
        LongContextTier(32000, LONG),
    )  # cache_write defaults to input, reasoning to output
    assert DEEPSEEK.windows[3] == TimeWindow("off-peak", frozenset({"weekend", "holiday"}), time(0), time(0), 50)


def test_one_ms_before_noon_is_peak_until_exactly_noon() -> None:
    locked = lock(DEEPSEEK, CHINA, ms("2025-06-10T11:59:59.999+08:00"), 0, batch=False)  # a Tuesday
    assert (locked.window_name, locked.window_percent, locked.multiplier_bp) == ("peak", 100, 10_000)
    assert locked.valid_until_ms == ms("2025-06-10T12:00:00+08:00")
    assert locked.base == BASE


def test_noon_is_off_peak_until_two() -> None:
    locked = lock(DEEPSEEK, CHINA, ms("2025-06-10T12:00:00.000+08:00"), 0, batch=False)
    assert (locked.window_name, locked.window_percent, locked.multiplier_bp) == ("off-peak", 50, 5_000)
    assert locked.valid_until_ms == ms("2025-06-10T14:00:00+08:00")
    assert locked.base.input_nano == 1000 and locked.long_context[0].prices.output_nano == 8000


@pytest.mark.parametrize(
    ("moment", "window_name"),
    [
        ("2025-06-14T10:00:00+08:00", "off-peak"),  # a Saturday
        ("2025-06-15T15:00:00+08:00", "off-peak"),  # a Sunday
        ("2025-10-01T10:00:00+08:00", "off-peak"),  # a holiday on a Wednesday
        ("2025-10-11T10:00:00+08:00", "peak"),  # a make-up Saturday is a working day
        ("2025-10-11T12:30:00+08:00", "off-peak"),  # with a working day's lunch break
        ("2025-06-10T08:59:59.999+08:00", "off-peak"),
        ("2025-06-10T09:00:00+08:00", "peak"),
        ("2025-06-10T17:59:59.999+08:00", "peak"),
        ("2025-06-10T18:00:00+08:00", "off-peak"),
    ],
)
def test_day_types_and_edges(moment: str, window_name: str) -> None:
    assert lock(DEEPSEEK, CHINA, ms(moment), 0, batch=False).window_name == window_name


def test_next_change_skips_a_midnight_that_changes_nothing() -> None:
    assert next_change(DEEPSEEK, CHINA, ms("2025-06-10T19:00:00+08:00")) == PricePoint(
        ms("2025-06-11T09:00:00+08:00"), "peak", 100
    )


def test_next_change_across_a_weekend() -> None:
    friday_evening = ms("2025-06-13T18:00:00+08:00")
    assert next_change(DEEPSEEK, CHINA, friday_evening) == PricePoint(ms("2025-06-16T09:00:00+08:00"), "peak", 100)


def test_next_change_at_midnight() -> None:
    nights = schedule(
        window("night", ["weekday"], "22:00", "24:00", 60), window("weekend", ["weekend"], "00:00", "24:00", 50)
    )
    assert next_change(nights, CHINA, ms("2025-06-13T23:00:00+08:00")) == PricePoint(
        ms("2025-06-14T00:00:00+08:00"), "weekend", 50
    )
    assert next_change(nights, CHINA, ms("2025-06-10T23:00:00+08:00")) == PricePoint(
        ms("2025-06-11T00:00:00+08:00"), "standard", 100
    )


def test_a_schedule_without_windows_never_changes() -> None:
    flat = PriceSchedule(BASE)
    t_ms = ms("2025-06-10T10:00:00+08:00")
    assert next_change(flat, CHINA, t_ms) is None
    assert lock(flat, CHINA, t_ms, 0, batch=False).valid_until_ms == t_ms + NEXT_CHANGE_LOOKAHEAD_MS


def test_a_change_beyond_the_look_ahead_is_not_reported() -> None:
    holidays_only = schedule(window("holiday", ["holiday"], "00:00", "24:00", 50))
    assert next_change(holidays_only, CHINA, ms("2025-06-10T10:00:00+08:00")) is None
    assert next_change(holidays_only, CHINA, ms("2025-09-28T10:00:00+08:00")) == PricePoint(
        ms("2025-10-01T00:00:00+08:00"), "holiday", 50
    )


def test_windows_follow_the_wall_clock_across_daylight_saving() -> None:
    night = schedule(window("night", ALL_DAYS, "00:00", "06:00", 50))
    # Spring forward (02:00 -> 03:00): the night ends at 06:00 summer time, five real hours after midnight.
    spring = lock(night, BERLIN, ms("2025-03-30T00:00:00+01:00"), 0, batch=False)
    assert (spring.window_name, spring.valid_until_ms) == ("night", ms("2025-03-30T06:00:00+02:00"))
    # Fall back (03:00 -> 02:00): it ends at 06:00 winter time, seven real hours after midnight.
    autumn = lock(night, BERLIN, ms("2025-10-26T00:00:00+02:00"), 0, batch=False)
    assert autumn.valid_until_ms == ms("2025-10-26T06:00:00+01:00")
    assert lock(night, BERLIN, ms("2025-10-26T05:59:59.999+01:00"), 0, batch=False).window_name == "night"


def test_a_boundary_in_the_skipped_hour_falls_at_the_jump() -> None:
    short = schedule(window("night", ALL_DAYS, "00:00", "02:30", 50))
    assert next_change(short, BERLIN, ms("2025-03-30T01:00:00+01:00")) == PricePoint(
        ms("2025-03-30T03:00:00+02:00"), "standard", 100
    )


def test_a_repeated_hour_repeats_its_prices() -> None:
    short = schedule(window("night", ALL_DAYS, "00:00", "02:30", 50))
    first_pass = ms("2025-10-26T02:45:00+02:00")
    assert lock(short, BERLIN, first_pass, 0, batch=False).window_name == "standard"
    back_to_two = next_change(short, BERLIN, first_pass)
    assert back_to_two == PricePoint(ms("2025-10-26T02:00:00+01:00"), "night", 50)
    assert next_change(short, BERLIN, back_to_two.at_ms) == PricePoint(ms("2025-10-26T02:30:00+01:00"), "standard", 100)


def test_cheapest_window_today() -> None:
    tuesday = ms("2025-06-10T10:00:00+08:00")
    assert cheapest_window_today(DEEPSEEK, CHINA, tuesday) == PricePoint(
        ms("2025-06-10T12:00:00+08:00"), "off-peak", 50
    )
    now = ms("2025-06-10T12:30:00+08:00")
    assert cheapest_window_today(DEEPSEEK, CHINA, now) == PricePoint(now, "off-peak", 50)
    late = schedule(
        window("off-peak", ["weekday"], "18:00", "22:00", 50), window("night", ["weekday"], "22:00", "24:00", 25)
    )
    assert cheapest_window_today(late, CHINA, tuesday) == PricePoint(ms("2025-06-10T22:00:00+08:00"), "night", 25)


def test_a_cheaper_price_tomorrow_is_not_today() -> None:
    friday_evening = ms("2025-06-13T19:00:00+08:00")
    cheap_weekend = schedule(
        window("evening", ["weekday"], "18:00", "24:00", 50), window("w", ["weekend"], "00:00", "24:00", 25)
    )
    assert cheapest_window_today(cheap_weekend, CHINA, friday_evening) == PricePoint(friday_evening, "evening", 50)
    assert cheapest_window_today(PriceSchedule(BASE), CHINA, friday_evening) == PricePoint(
        friday_evening, "standard", 100
    )


@pytest.mark.parametrize(("tokens", "expected"), [(31_999, BASE), (32_000, BASE), (32_001, LONG)])
def test_long_context_boundary(tokens: int, expected: Prices) -> None:
    locked = lock(DEEPSEEK, CHINA, ms("2025-06-10T10:00:00+08:00"), 0, batch=False)
    assert prices_for(locked, tokens) == expected
    assert max_prices(locked, tokens) == expected


def test_max_prices_take_the_dearest_class_of_a_cheaper_tier() -> None:
    odd = Prices(input_nano=1000, cached_input_nano=100, output_nano=20000, reasoning_nano=20000, cache_write_nano=1000)
    locked = lock(PriceSchedule(BASE, (LongContextTier(1000, odd),)), CHINA, 0, 0, batch=False)
    assert max_prices(locked, 1001) == Prices(2000, 200, 20000, 20000, 2000)


def test_batch_and_surcharge_compose_in_basis_points() -> None:
    # Off-peak 50% x batch 50% x (1000 + 200 permille at full load) = 3000 bp.
    locked = lock(DEEPSEEK, CHINA, ms("2025-06-14T10:00:00+08:00"), 1000, batch=True)
    assert (locked.surcharge_permille, locked.batch_percent, locked.multiplier_bp) == (200, 50, 3000)
    assert locked.base.input_nano == 600 and locked.base.cached_input_nano == 60


def test_scaled_prices_round_down() -> None:
    assert scale_prices(Prices(3, 1, 0, 9999, 10001), 5000) == Prices(1, 0, 0, 4999, 5000)


@pytest.mark.parametrize(
    ("utilisation", "permille"), [(0, 0), (800, 0), (801, 1), (850, 50), (900, 100), (1000, 200), (5000, 200)]
)
def test_surcharge_points(utilisation: int, permille: int) -> None:
    assert LoadSurcharge(80, 20).permille_at(utilisation) == permille


def test_surcharge_rounds_down() -> None:
    assert LoadSurcharge(80, 15).permille_at(801) == 0  # 150 x 1 / 200 = 0.75 permille
    assert LoadSurcharge(80, 15).permille_at(802) == 1


@given(st.integers(0, 99), st.integers(1, 100), st.integers(0, 3000), st.integers(0, 3000))
def test_surcharge_is_bounded_and_monotonic(above: int, most: int, u1: int, u2: int) -> None:
    surcharge = LoadSurcharge(above, most)
    low, high = sorted((u1, u2))
    assert 0 <= surcharge.permille_at(low) <= surcharge.permille_at(high) <= most * 10
    assert surcharge.permille_at(1000) == most * 10
    assert surcharge.permille_at(above * 10) == 0


@given(prices)
def test_a_hundred_percent_is_the_identity(p: Prices) -> None:
    assert scale_prices(p, 10_000) == p
    flat = PriceSchedule(p, (LongContextTier(10, p),), surcharge=LoadSurcharge(80, 20))
    locked = lock(flat, CHINA, 0, 800, batch=True)
    assert locked.multiplier_bp == 10_000 and locked.base == p and locked.long_context == flat.long_context


@given(prices, st.integers(0, 2_000_000))
def test_scaling_never_exceeds_the_exact_product(p: Prices, multiplier_bp: int) -> None:
    scaled = scale_prices(p, multiplier_bp)
    for exact, rounded in zip(
        (p.input_nano, p.output_nano, p.cached_input_nano),
        (scaled.input_nano, scaled.output_nano, scaled.cached_input_nano),
        strict=True,
    ):
        assert 0 <= rounded * 10_000 <= exact * multiplier_bp < (rounded + 1) * 10_000


@st.composite
def schedules(draw: st.DrawFn) -> PriceSchedule:
    thresholds = sorted(draw(st.sets(st.integers(0, 200_000), max_size=3)))
    tiers = tuple(LongContextTier(above, draw(prices)) for above in thresholds)
    surcharge = draw(st.none() | st.builds(LoadSurcharge, st.integers(0, 99), st.integers(1, 100)))
    return PriceSchedule(draw(prices), tiers, DEEPSEEK.windows, draw(st.integers(1, 1000)), surcharge)


@given(schedules(), instants, st.integers(0, 2000), st.booleans(), st.data())
def test_the_settlement_never_exceeds_the_reservation(
    sched: PriceSchedule, t_ms: int, utilisation: int, batch: bool, data: st.DataObject
) -> None:
    locked = lock(sched, CHINA, t_ms, utilisation, batch)
    input_tokens_max = data.draw(st.integers(0, 300_000))
    total = data.draw(st.integers(0, input_tokens_max))
    cached = data.draw(st.integers(0, total))
    written = data.draw(st.integers(0, total - cached))
    out = st.integers(0, 100_000)
    usage = TokenUsage(total - cached - written, cached, data.draw(out), data.draw(out), written)
    assert cost_nano(prices_for(locked, total), usage) <= cost_nano(max_prices(locked, input_tokens_max), usage)


@given(instants, st.sampled_from([CHINA, BERLIN]))
def test_a_lock_holds_until_valid_until_and_no_longer(t_ms: int, calendar: Calendar) -> None:
    locked = lock(DEEPSEEK, calendar, t_ms, 0, batch=False)
    local = calendar.local_datetime(t_ms)
    peak = calendar.day_type(local.date()) == "weekday" and (9 <= local.hour < 12 or 14 <= local.hour < 18)
    assert locked.window_percent == (100 if peak else 50)
    assert t_ms < locked.valid_until_ms <= t_ms + 4 * 86_400_000  # at most a long holiday weekend
    assert lock(DEEPSEEK, calendar, locked.valid_until_ms - 1, 0, False).window_percent == locked.window_percent
    assert lock(DEEPSEEK, calendar, locked.valid_until_ms, 0, False).window_percent != locked.window_percent
    assert cheapest_window_today(DEEPSEEK, calendar, t_ms).percent <= locked.window_percent


def flat(marker: int) -> PriceSchedule:
    return PriceSchedule(Prices(marker, marker, marker, marker, marker))


def test_price_book_versions_and_refusals() -> None:
    book = PriceBook({"a": (PriceVersion(0, flat(1)),)}).add_version("a", 2000, flat(2), now_ms=1000)
    assert book.schedule_at("a", -1) is None
    assert book.schedule_at("a", 1999) == flat(1) and book.schedule_at("a", 2000) == flat(2)
    assert [v.effective_from_ms for v in book.history("a")] == [0, 2000]
    assert book.schedule_at("b", 5000) is None and book.history("b") == ()
    for effective, now in ((1000, 1000), (500, 100), (2000, 100)):  # not after now, or not after the last version
        with pytest.raises(BadRequest) as caught:
            book.add_version("a", effective, flat(3), now_ms=now)
        assert caught.value.param == "effective_from_ms"


@given(
    st.lists(st.tuples(st.integers(1, 10_000), st.integers(0, 10_000)), max_size=12), st.lists(instants, max_size=10)
)
def test_price_book_answers_the_latest_version_and_never_rewrites_the_past(
    steps: list[tuple[int, int]], probes: list[int]
) -> None:
    book, added, now_ms = PriceBook(), [], 1_704_067_200_000
    for marker, (lead_ms, elapsed_ms) in enumerate(steps):
        now_ms += elapsed_ms
        effective = max(now_ms, added[-1][0] if added else now_ms) + lead_ms
        before = [(t, book.schedule_at("x", t)) for t in (*probes, effective - 1)]
        book = book.add_version("x", effective, flat(marker), now_ms)
        added.append((effective, flat(marker)))
        assert all(book.schedule_at("x", t) == answer for t, answer in before if t < effective)
    for t in (*probes, *(e for e, _ in added)):
        expected = [s for e, s in added if e <= t]
        assert book.schedule_at("x", t) == (expected[-1] if expected else None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"batch_percent": 0}, "test: batch_percent must be an integer from 1 to 1000"),
        ({"batch_percent": 50.0}, "test.batch_percent must be an integer"),
        ({"windows": [window("w", ["weekday"], "00:00", "09:00", 1001)]}, "test.windows[0]: percent must be"),
        ({"windows": [window("w", ["weekday"], "00:00", "09:00", 0)]}, "test.windows[0]: percent must be"),
        ({"windows": [window("w", ["workday"], "00:00", "09:00", 50)]}, "test.windows[0]: days must be"),
        ({"windows": [window("w", ["weekday"], "22:00", "06:00", 50)]}, "test.windows[0]: to 06:00 is not after"),
        ({"windows": [window("w", ["weekday"], "24:00", "24:00", 50)]}, "test.windows[0].from: '24:00'"),
        ({"windows": [window("w", ["weekday"], "9:00", "12:00", 50)]}, "test.windows[0].from: '9:00'"),
        ({"windows": [window("w", ["weekday"], "09:00", "12:60", 50)]}, "test.windows[0].to: '12:60'"),
        ({"windows": [{**window("w", ["weekday"], "09:00", "12:00", 50), "until": "1"}]}, "unknown key 'until'"),
        (
            {
                "windows": [
                    window("a", ["weekday", "holiday"], "00:00", "10:00", 50),
                    window("b", ["holiday"], "09:00", "12:00", 50),
                ]
            },
            "test: windows: 'b' overlaps 'a' on holidays",
        ),
        ({"long_context": [tier(10, input=4.0)]}, "test.long_context[0].input: write the price as a string"),
        ({"long_context": [{"above_input_tokens": 10, "input": "4"}]}, "test.long_context[0].output is required"),
        ({"long_context": [tier(10, input="0.0001")]}, "test.long_context[0].input: price '0.0001'"),
        ({"long_context": [tier(-1)]}, "test.long_context[0]: above_input_tokens must be an integer of at least 0"),
        ({"long_context": [tier(9), tier(9)]}, "test: long_context: above_input_tokens must strictly increase"),
        ({"long_context": [tier(9), tier(8)]}, "strictly increase, not [9, 8]"),
        ({"load_surcharge": {"above_percent": 100, "max_percent": 20}}, "test.load_surcharge: above_percent must"),
        ({"load_surcharge": {"above_percent": 80, "max_percent": 101}}, "test.load_surcharge: max_percent must"),
        ({"load_surcharge": {"above_percent": 80}}, "test.load_surcharge.max_percent must be an integer"),
        ({"surcharge": {}}, "test: unknown key 'surcharge'"),
        ({"windows": {"name": "w"}}, "`test.windows` must be a list"),
    ],
)
def test_parse_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_schedule(BASE, spec, "test")
    assert message in str(caught.value)


def test_a_long_context_tier_cheaper_than_base_is_allowed() -> None:
    cheaper = parse_schedule(BASE, {"long_context": [{"above_input_tokens": 9, "input": "1", "output": "1"}]}, "t")
    assert cheaper.long_context[0].prices == Prices(1000, 1000, 1000, 1000, 1000)


def test_adjacent_windows_and_a_toml_local_time() -> None:
    parsed = schedule(
        window("a", ["weekday"], "00:00", "09:00", 50),
        {**window("b", ["weekday"], "09:00", "10:00", 70), "to": time(10)},
    )
    assert [w.end for w in parsed.windows] == [time(9), time(10)]
