"""Allowance and budget periods: where each window starts and ends, in epoch milliseconds.

- ``5h``: a rolling window that opens with the first request made after the previous one closed and
  lasts five hours, as the Coding Plans count prompts (the reset time is the window's end);
- ``day`` / ``week``: the local calendar day, and the calendar week from Monday 00:00, in the platform's
  time zone (Asia/Shanghai by default);
- ``month``: a subscription's billing month from the day it started (the 31st becomes the month's last
  day in shorter months); a budget's month is the calendar month.
Everything is pure: the time is an argument, never read from a clock here.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

ROLLING_WINDOW_MS = 5 * 3600 * 1000
DEFAULT_TIMEZONE = "Asia/Shanghai"


def _local(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def rolling(previous_end_ms: int | None, previous_start_ms: int | None, now_ms: int) -> tuple[int, int]:
    """The 5-hour window ``now_ms`` falls in: the open one, or a new one starting now. A request stamped a
    moment before the open window's start (its worker stamped it before another worker's request opened the
    window, and reached the database after) belongs to that window too: never a second, fully granted one."""
    if previous_start_ms is not None and previous_end_ms is not None and now_ms < previous_end_ms:
        return previous_start_ms, previous_end_ms
    return now_ms, now_ms + ROLLING_WINDOW_MS


def day(now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    local = _local(now_ms, zone)
    start = datetime(local.year, local.month, local.day, tzinfo=zone)
    end = start + timedelta(days=1)
    return _ms(start), _ms(datetime(end.year, end.month, end.day, tzinfo=zone))


def week(now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    local = _local(now_ms, zone)
    monday = datetime(local.year, local.month, local.day, tzinfo=zone) - timedelta(days=local.weekday())
    monday = datetime(monday.year, monday.month, monday.day, tzinfo=zone)  # wall-clock midnight
    nxt = monday + timedelta(days=7)
    return _ms(monday), _ms(datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone))


def add_months(moment: datetime, months: int, anchor_day: int) -> datetime:
    """``moment`` moved by whole months, on ``anchor_day`` or the month's last day if shorter."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(anchor_day, last))


def billing_month(anchor_ms: int, now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """The billing month of a subscription that started at ``anchor_ms`` which holds ``now_ms``."""
    anchor = _local(anchor_ms, zone)
    now = _local(now_ms, zone)
    months = (now.year - anchor.year) * 12 + now.month - anchor.month
    start = add_months(anchor, months, anchor.day)
    if start > now:
        months -= 1
        start = add_months(anchor, months, anchor.day)
    end = add_months(anchor, months + 1, anchor.day)
    return _ms(start), _ms(end)


def calendar_month(now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    local = _local(now_ms, zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    return _ms(start), _ms(add_months(start, 1, 1))
