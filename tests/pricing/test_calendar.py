"""The pricing calendar: day types with China's holidays and make-up workdays, exact ms ↔ local time."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.errors import ConfigError
from suanli.pricing.calendar import Calendar, epoch_ms, parse_calendar

# China's 2025 National Day: Oct 1-8 off, Sunday Sep 28 and Saturday Oct 11 worked instead.
NATIONAL_DAY = frozenset(date(2025, 10, day) for day in range(1, 9))
MAKE_UP = frozenset({date(2025, 9, 28), date(2025, 10, 11)})
CHINA = Calendar("Asia/Shanghai", NATIONAL_DAY, MAKE_UP)
BERLIN = Calendar("Europe/Berlin")
instants = st.integers(min_value=0, max_value=4_102_444_800_000)  # 1970 to 2100


def ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 6, 10), "weekday"),  # a Tuesday
        (date(2025, 6, 14), "weekend"),  # a Saturday
        (date(2025, 6, 15), "weekend"),  # a Sunday
        (date(2025, 10, 1), "holiday"),  # a Wednesday in the holiday
        (date(2025, 10, 4), "holiday"),  # a Saturday in the holiday: holiday wins
        (date(2025, 9, 28), "weekday"),  # a make-up Sunday
        (date(2025, 10, 11), "weekday"),  # a make-up Saturday
        (date(2025, 10, 12), "weekend"),  # the Sunday after it is a weekend again
    ],
)
def test_day_types(day: date, expected: str) -> None:
    assert CHINA.day_type(day) == expected


def test_the_local_date_changes_at_local_midnight() -> None:
    assert CHINA.local_date(ms("2025-06-10T23:59:59.999+08:00")) == date(2025, 6, 10)
    assert CHINA.local_date(ms("2025-06-11T00:00:00+08:00")) == date(2025, 6, 11)
    assert CHINA.local_date(ms("2025-06-10T16:00:00+00:00")) == date(2025, 6, 11)


def test_offsets_follow_daylight_saving() -> None:
    assert CHINA.utc_offset_ms(ms("2025-07-01T00:00:00+00:00")) == 8 * 3_600_000
    assert BERLIN.utc_offset_ms(ms("2025-01-15T12:00:00+00:00")) == 3_600_000
    assert BERLIN.utc_offset_ms(ms("2025-07-15T12:00:00+00:00")) == 7_200_000


def test_offset_change_is_found_to_the_millisecond() -> None:
    noon = ms("2025-03-29T12:00:00+01:00")
    assert BERLIN.offset_change_ms(noon, noon + 86_400_000) == ms("2025-03-30T01:00:00+00:00")
    assert BERLIN.offset_change_ms(noon, noon + 3_600_000) is None
    assert CHINA.offset_change_ms(noon, noon + 86_400_000) is None


def test_a_naive_local_time_is_read_in_the_zone_and_fold_picks_the_pass() -> None:
    assert BERLIN.epoch_ms(datetime(2025, 7, 1, 9, 0)) == ms("2025-07-01T07:00:00+00:00")
    assert BERLIN.epoch_ms(datetime(2025, 10, 26, 2, 30)) == ms("2025-10-26T00:30:00+00:00")
    assert BERLIN.epoch_ms(datetime(2025, 10, 26, 2, 30, fold=1)) == ms("2025-10-26T01:30:00+00:00")


@given(instants)
def test_ms_to_local_and_back_is_exact(t_ms: int) -> None:
    for calendar in (CHINA, BERLIN):
        local = calendar.local_datetime(t_ms)
        assert calendar.epoch_ms(local) == t_ms
        assert calendar.local_date(t_ms) == local.date()


def test_parse_reads_strings_and_toml_dates() -> None:
    calendar = parse_calendar(
        {"timezone": "Asia/Shanghai", "holidays": ["2025-10-01", date(2025, 10, 2)], "workdays": ["2025-10-11"]}
    )
    assert calendar.holidays == {date(2025, 10, 1), date(2025, 10, 2)}
    assert calendar.workdays == {date(2025, 10, 11)}
    assert parse_calendar({}) == Calendar()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"timezone": "Asia/Beijing"}, "calendar.timezone: unknown time zone 'Asia/Beijing'"),
        ({"timezone": 8}, "calendar.timezone must be"),
        ({"holidays": "2025-10-01"}, "calendar.holidays must be a list"),
        ({"holidays": ["2025-10-01", "2025-13-01"]}, "calendar.holidays[1]: '2025-13-01' is not a date"),
        ({"holidays": ["2025-10-1"]}, "calendar.holidays[0]"),
        ({"workdays": [datetime(2025, 10, 11, 9, 0)]}, "calendar.workdays[0]"),
        ({"holidays": ["2025-10-11"], "workdays": ["2025-10-11"]}, "calendar.holidays: 2025-10-11 is also listed"),
        ({"workdays": ["2025-10-10"]}, "calendar.workdays: 2025-10-10 is not a Saturday or Sunday"),
        ({"holiday": ["2025-10-01"]}, "calendar: unknown key 'holiday'"),
    ],
)
def test_parse_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_calendar(spec)
    assert message in str(caught.value)
