"""Local hours and days of a zone, and quarter hours folded into them: exact in whole-hour, +05:45 and
daylight-saving zones (the usage summaries' buckets)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.economy.forecast import RunOut
from suanli.gateway.usage_reports import fold
from suanli.metering.periods import bucket_start_ms, days_back_start_ms, hours_back_start_ms, iso
from suanli.store.usage_queries import SLOT_MS, TOKEN_CLASSES, ClassSums, SlotSums

SHANGHAI, KATHMANDU, NEW_YORK = ZoneInfo("Asia/Shanghai"), ZoneInfo("Asia/Kathmandu"), ZoneInfo("America/New_York")
HOUR_MS = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def slot(t_ms: int, calls: int = 1, group: str | None = None) -> SlotSums:
    classes = {name: ClassSums(0, 0, 0) for name in TOKEN_CLASSES}
    classes["input"] = ClassSums(10 * calls, 20 * calls, calls)
    classes["output"] = ClassSums(5 * calls, 15 * calls, calls)
    return SlotSums(t_ms, group, calls, 15 * calls, 35 * calls, 0, classes)


@pytest.mark.parametrize(
    ("zone", "instant", "day_start", "hour_start"),
    [
        # Shanghai's day starts at 16:00 UTC the day before.
        (SHANGHAI, "2026-05-01T15:59:59+00:00", "2026-05-01T00:00:00+08:00", "2026-05-01T23:00:00+08:00"),
        (SHANGHAI, "2026-05-01T16:00:00+00:00", "2026-05-02T00:00:00+08:00", "2026-05-02T00:00:00+08:00"),
        # Kathmandu is +05:45: its hours start at a quarter past the UTC hour, its day at 18:15 UTC.
        (KATHMANDU, "2026-05-01T18:14:59+00:00", "2026-05-01T00:00:00+05:45", "2026-05-01T23:00:00+05:45"),
        (KATHMANDU, "2026-05-01T18:15:00+00:00", "2026-05-02T00:00:00+05:45", "2026-05-02T00:00:00+05:45"),
        (KATHMANDU, "2026-05-01T05:00:00+00:00", "2026-05-01T00:00:00+05:45", "2026-05-01T10:00:00+05:45"),
        # New York springs forward on 2026-03-08 (02:00 EST is 03:00 EDT): a 23-hour day.
        (NEW_YORK, "2026-03-08T07:30:00+00:00", "2026-03-08T00:00:00-05:00", "2026-03-08T03:00:00-04:00"),
        (NEW_YORK, "2026-03-09T03:59:59+00:00", "2026-03-08T00:00:00-05:00", "2026-03-08T23:00:00-04:00"),
        # ... and falls back on 2026-11-01: a 25-hour day, whose 01:00 hour happens twice.
        (NEW_YORK, "2026-11-01T05:30:00+00:00", "2026-11-01T00:00:00-04:00", "2026-11-01T01:00:00-04:00"),
        (NEW_YORK, "2026-11-01T06:30:00+00:00", "2026-11-01T00:00:00-04:00", "2026-11-01T01:00:00-05:00"),
        (NEW_YORK, "2026-11-02T04:59:59+00:00", "2026-11-01T00:00:00-04:00", "2026-11-01T23:00:00-05:00"),
    ],
)
def test_an_instant_falls_in_its_local_hour_and_day(
    zone: ZoneInfo, instant: str, day_start: str, hour_start: str
) -> None:
    t = ms(instant)
    assert iso(bucket_start_ms(t, "day", zone), zone) == day_start
    assert iso(bucket_start_ms(t, "hour", zone), zone) == hour_start
    assert bucket_start_ms(t, "day", zone) == ms(day_start)
    assert bucket_start_ms(t, "hour", zone) == ms(hour_start)


def test_days_around_new_yorks_changes_are_23_and_25_hours() -> None:
    spring, fall = ms("2026-03-08T12:00:00-04:00"), ms("2026-11-01T12:00:00-05:00")
    assert (
        bucket_start_ms(spring + 86_400_000, "day", NEW_YORK) - bucket_start_ms(spring, "day", NEW_YORK) == 23 * HOUR_MS
    )
    assert bucket_start_ms(fall + 86_400_000, "day", NEW_YORK) - bucket_start_ms(fall, "day", NEW_YORK) == 25 * HOUR_MS


@pytest.mark.parametrize("zone", [SHANGHAI, KATHMANDU, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")])
@given(t=st.integers(min_value=ms("2024-01-01T00:00:00+00:00"), max_value=ms("2028-01-01T00:00:00+00:00")))
def test_a_bucket_holds_its_quarter_hour_whole_and_starts_where_the_local_clock_does(zone: ZoneInfo, t: int) -> None:
    """The property the summaries rest on: a UTC quarter hour lies in one local hour and one local day (so
    folding quarter hours is exact), and a bucket's start is on the local clock's hour or midnight."""
    start_slot = t - t % SLOT_MS
    for period in ("hour", "day"):
        start = bucket_start_ms(t, period, zone)
        assert start <= t and start % SLOT_MS == 0
        assert (
            bucket_start_ms(start_slot, period, zone)
            == bucket_start_ms(start_slot + SLOT_MS - 1, period, zone)
            == start
        )
        assert bucket_start_ms(start, period, zone) == start  # its own start is in it
        assert bucket_start_ms(start - 1, period, zone) != start  # and the instant before is not
        wall = datetime.fromtimestamp(start / 1000, UTC).astimezone(zone)
        assert (wall.minute, wall.second) == (0, 0) and (period == "hour" or wall.hour in (0, 1))


def test_quarter_hours_fold_into_local_hours_across_kathmandus_offset() -> None:
    # 04:00 and 04:15 UTC are 09:45 and 10:00 in Kathmandu: two hours; 04:15 to 05:00 UTC are all 10:xx.
    slots = [slot(ms(f"2026-05-01T{t}:00+00:00")) for t in ("04:00", "04:15", "04:30", "04:45", "05:00", "05:15")]
    buckets = fold(slots, "hour", KATHMANDU)
    assert [(iso(b.start_ms, KATHMANDU), b.calls) for b in buckets] == [
        ("2026-05-01T09:00:00+05:45", 1),
        ("2026-05-01T10:00:00+05:45", 4),
        ("2026-05-01T11:00:00+05:45", 1),
    ]


def test_quarter_hours_fold_into_shanghai_days_and_new_yorks_doubled_hour() -> None:
    shanghai = [slot(ms("2026-05-01T15:45:00+00:00"), 2), slot(ms("2026-05-01T16:00:00+00:00"), 3)]
    assert [(iso(b.start_ms, SHANGHAI), b.calls) for b in fold(shanghai, "day", SHANGHAI)] == [
        ("2026-05-01T00:00:00+08:00", 2),
        ("2026-05-02T00:00:00+08:00", 3),
    ]
    doubled = [slot(ms("2026-11-01T05:45:00+00:00")), slot(ms("2026-11-01T06:00:00+00:00"), 2)]
    assert [(iso(b.start_ms, NEW_YORK), b.calls) for b in fold(doubled, "hour", NEW_YORK)] == [
        ("2026-11-01T01:00:00-04:00", 1),
        ("2026-11-01T01:00:00-05:00", 2),
    ]
    assert [b.calls for b in fold(doubled, "day", NEW_YORK)] == [3]


def test_folding_keeps_every_total_by_group_and_by_token_class() -> None:
    slots = [slot(ms("2026-05-01T00:00:00+00:00") + i * SLOT_MS, i % 3 + 1, group=f"m{i % 2}") for i in range(200)]
    buckets = fold(slots, "day", NEW_YORK)
    assert sum(b.calls for b in buckets) == sum(s.calls for s in slots)
    assert sum(b.cost_nano for b in buckets) == sum(s.cost_nano for s in slots)
    assert {b.group for b in buckets} == {"m0", "m1"}
    assert [b.start_ms for b in buckets] == sorted(b.start_ms for b in buckets)
    by_class = fold(slots, "day", NEW_YORK, by_class=True)
    assert {b.group for b in by_class} == {"input", "output"}  # classes without tokens are left out
    assert sum(b.cost_nano for b in by_class) == sum(s.cost_nano for s in slots)
    assert sum(b.tokens for b in by_class) == sum(s.tokens for s in slots)


def test_default_ranges_start_on_local_boundaries() -> None:
    now = ms("2026-03-09T10:30:00-04:00")
    assert iso(days_back_start_ms(now, 29, NEW_YORK), NEW_YORK) == "2026-02-08T00:00:00-05:00"
    assert iso(hours_back_start_ms(now, 23, NEW_YORK), NEW_YORK) == "2026-03-08T11:00:00-04:00"
    assert iso(days_back_start_ms(now, 0, KATHMANDU), KATHMANDU) == "2026-03-09T00:00:00+05:45"


def test_a_run_out_beyond_the_horizon_gives_its_days_and_no_date() -> None:
    now = ms("2026-05-01T00:00:00+08:00")
    soon = RunOut.of(10 * 10**9, 3 * 10**9, now)
    assert (soon.days, soon.at_ms) == ("3.3", now + 10 * 10**9 * 86_400_000 // (3 * 10**9))
    far = RunOut.of(10**18, 1, now)  # a budget of a billion CNY spent a nano a day
    assert far.days == f"{10**18}.0" and far.at_ms is None
    assert far.fields(SHANGHAI)["runs_out_at"] is None
    assert RunOut.of(5, 0, now).fields(SHANGHAI) == {"days": None, "runs_out_at": None, "runs_out_at_ms": None}
    assert RunOut.of(-5, 7, now).days == "0.0"  # owed already: runs out now
