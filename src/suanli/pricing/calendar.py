"""The calendar a price schedule reads: which local day type an instant falls on, in one time zone.

Time is always passed in as epoch milliseconds UTC and converted here, with integer arithmetic only, so the
same instant always gets the same price. A day is a "holiday" when listed as one, a "weekend" on Saturday and
Sunday, and otherwise a "weekday" — including a Saturday or Sunday listed in ``workdays``, China's make-up
working days (调休), which are priced like any other working day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from suanli.errors import ConfigError

DayType = Literal["weekday", "weekend", "holiday"]
DAY_TYPES: tuple[DayType, ...] = ("weekday", "weekend", "holiday")
DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_MS = timedelta(milliseconds=1)
_SATURDAY = 5
_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CALENDAR_KEYS = frozenset({"timezone", "holidays", "workdays"})


@dataclass(frozen=True, slots=True)
class Calendar:
    """A time zone and its exceptional days. Invalid calendars are refused when built, at start-up."""

    timezone: str = "Asia/Shanghai"
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()  # make-up working days: a Saturday or Sunday priced as a weekday
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"timezone: unknown time zone {self.timezone!r}") from exc
        both = sorted(self.holidays & self.workdays)
        if both:
            raise ConfigError(f"holidays: {both[0].isoformat()} is also listed in workdays")
        weekdays = sorted(day for day in self.workdays if day.weekday() < _SATURDAY)
        if weekdays:
            raise ConfigError(f"workdays: {weekdays[0].isoformat()} is not a Saturday or Sunday")
        object.__setattr__(self, "zone", zone)  # frozen: set once, here, from the validated name

    def day_type(self, local_date: date) -> DayType:
        if local_date in self.holidays:
            return "holiday"
        if local_date.weekday() >= _SATURDAY and local_date not in self.workdays:
            return "weekend"
        return "weekday"

    def utc_offset_ms(self, t_ms: int) -> int:
        """The zone's offset from UTC at the instant: local wall-clock ms = ``t_ms + utc_offset_ms(t_ms)``."""
        offset = self.local_datetime(t_ms).utcoffset()
        return 0 if offset is None else offset // _ONE_MS

    def local_datetime(self, t_ms: int) -> datetime:
        return (_EPOCH + timedelta(milliseconds=t_ms)).astimezone(self.zone)

    def local_date(self, t_ms: int) -> date:
        return wall_date(t_ms + self.utc_offset_ms(t_ms))

    def epoch_ms(self, local: datetime) -> int:
        """The instant of a local time; a naive one is read in this calendar's zone (its ``fold`` choosing
        the first or second pass through a repeated hour)."""
        aware = local if local.tzinfo is not None else local.replace(tzinfo=self.zone)
        return epoch_ms(aware)

    def offset_change_ms(self, t_ms: int, until_ms: int) -> int | None:
        """The first instant in (t_ms, until_ms] where the UTC offset differs from the one at ``t_ms``, or
        None. Only the ends are compared, then bisected: callers keep ``until_ms - t_ms`` to a day, and no
        zone changes its offset twice within a day."""
        offset = self.utc_offset_ms(t_ms)
        if until_ms <= t_ms or self.utc_offset_ms(until_ms) == offset:
            return None
        low, high = t_ms, until_ms
        while high - low > 1:
            middle = (low + high) // 2
            if self.utc_offset_ms(middle) == offset:
                low = middle
            else:
                high = middle
        return high


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (no float seconds on the way)."""
    return (moment - _EPOCH) // _ONE_MS


def wall_date(wall_ms: int) -> date:
    """The date of a local wall-clock time written as milliseconds since 1970-01-01 00:00 local."""
    return date.fromordinal(_EPOCH_ORDINAL + wall_ms // DAY_MS)


def parse_calendar(spec: Mapping[str, Any], where: str = "calendar") -> Calendar:
    """Read ``timezone = "Asia/Shanghai"``, ``holidays = ["2025-10-01", ...]`` and ``workdays = [...]``."""
    unknown = sorted(set(spec) - _CALENDAR_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(sorted(_CALENDAR_KEYS))})")
    timezone = spec.get("timezone", "Asia/Shanghai")
    if not isinstance(timezone, str):
        raise ConfigError(f'{where}.timezone must be a time zone name such as "Asia/Shanghai"')
    holidays = _dates(spec.get("holidays", []), f"{where}.holidays")
    workdays = _dates(spec.get("workdays", []), f"{where}.workdays")
    try:
        return Calendar(timezone, holidays, workdays)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from exc


def _dates(values: Any, where: str) -> frozenset[date]:
    if not isinstance(values, list):
        raise ConfigError(f'{where} must be a list of dates, e.g. ["2025-10-01"]')
    return frozenset(_date(value, f"{where}[{index}]") for index, value in enumerate(values))


def _date(value: Any, where: str) -> date:
    # A TOML date arrives as a date; a TOML date-time is a datetime (a date subclass) and is refused.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_PATTERN.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {value!r} is not a date (write YYYY-MM-DD)")
