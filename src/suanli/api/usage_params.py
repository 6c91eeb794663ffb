"""The query parameters of the usage, summary and forecast endpoints, read and checked: every bad one is a
400 ``invalid_field`` naming it, before anything is read from the store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from suanli.errors import BadRequest
from suanli.gateway.accounts import USAGE_ROWS_MAX
from suanli.instants import DAY_MS, bounded_ms, parse_iso_ms
from suanli.metering.periods import days_back_start_ms, hours_back_start_ms

Query = Mapping[str, str]
TZ_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_+\-/]{0,63}")  # IANA names: Asia/Kathmandu, Etc/GMT+5, UTC
FILTER_CHARS_MAX = 200  # a model, key, operator or outcome to filter by
MS_DIGITS_MAX = 15  # epoch ms until the year 33658
# The longest summary of each period: what a chart shows, and a bound on the rows read for it.
SUMMARY_SPAN_DAYS_MAX = {"hour": 31, "day": 400}
SUMMARY_DEFAULT = {"hour": 23, "day": 29}  # hours or days before the current one shown by default
UNBOUNDED_MS = 2**62  # the end of a usage list with no 'to'


def invalid(param: str, message: str) -> BadRequest:
    return BadRequest(message, code="invalid_field", param=param)


def zone(query: Query, default: ZoneInfo) -> tuple[ZoneInfo, str]:
    """The zone asked for by IANA name (``tz``), or the platform's."""
    name = query.get("tz")
    if name is None:
        return default, default.key
    if not TZ_PATTERN.fullmatch(name) or ".." in name:
        raise invalid("tz", "'tz' must be an IANA time zone name, e.g. Asia/Shanghai.")
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid("tz", f"'tz': no time zone is called {name!r}.") from None


def choice(query: Query, param: str, options: tuple[str, ...]) -> str:
    """One of ``options`` (the first when not given)."""
    value = query.get(param, options[0])
    if value not in options:
        raise invalid(param, f"'{param}' must be one of {', '.join(options)}.")
    return value


def limit(query: Query, default: int) -> int:
    """How many rows (``limit``): 1 to ``USAGE_ROWS_MAX``."""
    value = whole(query, "limit", 1, USAGE_ROWS_MAX)
    return default if value is None else value


def whole(query: Query, param: str, low: int, high: int) -> int | None:
    """A whole number from ``low`` to ``high``; None when not given."""
    text = query.get(param)
    if text is None:
        return None
    # ASCII digits only ("²" is a digit to str.isdigit, not to int), and few: int() of a long one is slow.
    if not text.isascii() or not text.isdigit() or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise invalid(param, f"'{param}' must be a whole number from {low} to {high}.")
    return int(text)


def text(query: Query, param: str) -> str | None:
    value = query.get(param)
    if value is not None and not 0 < len(value) <= FILTER_CHARS_MAX:
        raise invalid(param, f"'{param}' is 1 to {FILTER_CHARS_MAX} characters.")
    return value


def instant(query: Query, param: str, tz: ZoneInfo, now_ms: int) -> int | None:
    """An ISO 8601 time (one without a zone read in ``tz``) or epoch milliseconds; None when not given."""
    value = query.get(param)
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        if len(value) > MS_DIGITS_MAX:
            raise invalid(param, f"'{param}' in epoch milliseconds has at most {MS_DIGITS_MAX} digits.")
        return bounded_ms(int(value), param, now_ms, code="invalid_field")
    return parse_iso_ms(value, param, now_ms, tz, code="invalid_field")


def before(query: Query) -> tuple[int, str | None] | None:
    """Where a page starts: before ``before_ms`` (and, at that very ms, before request ``before_id``)."""
    before_ms = whole(query, "before_ms", 0, 10**MS_DIGITS_MAX - 1)
    before_id = text(query, "before_id")
    if before_ms is None:
        if before_id is not None:
            raise invalid("before_id", "'before_id' goes with 'before_ms'.")
        return None
    return before_ms, before_id


def list_range(query: Query, tz: ZoneInfo, now_ms: int) -> tuple[int, int]:
    """A usage list's ``from`` (default: the beginning) and ``to`` (default: no end)."""
    start = instant(query, "from", tz, now_ms)
    end = instant(query, "to", tz, now_ms)
    return (0 if start is None else start), (UNBOUNDED_MS if end is None else end)


def summary_range(query: Query, period: str, tz: ZoneInfo, now_ms: int) -> tuple[int, int]:
    """A summary's ``from`` and ``to``: by default the last 24 hours (from the start of the hour 23 hours
    ago) or 30 days (from the start of the day 29 days ago) up to now; at most ``SUMMARY_SPAN_DAYS_MAX``."""
    end = instant(query, "to", tz, now_ms)
    end = now_ms if end is None else end
    start = instant(query, "from", tz, now_ms)
    if start is None:
        back = SUMMARY_DEFAULT[period]
        start = hours_back_start_ms(end, back, tz) if period == "hour" else days_back_start_ms(end, back, tz)
    if end <= start:
        raise invalid("to", "'to' must be after 'from'.")
    if end - start > SUMMARY_SPAN_DAYS_MAX[period] * DAY_MS:
        raise invalid("from", f"A summary by {period} spans at most {SUMMARY_SPAN_DAYS_MAX[period]} days.")
    return start, end
