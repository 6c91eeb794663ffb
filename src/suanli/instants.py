"""Instants a client sends (``at``, ``expires_at``), read from ISO 8601 into epoch milliseconds and bounded.

Python's dates reach from year 1 to 9999, but the price book starts in 1970, and the calendar's arithmetic
on the days around an instant overflows at either end; an instant outside the named bounds is refused with
400 here, before anything computes with it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from suanli.errors import BadRequest
from suanli.limits import INSTANT_HORIZON_DAYS

DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def parse_iso_ms(text: str, param: str, now_ms: int, zone: tzinfo = UTC, *, code: str | None = None) -> int:
    """``text`` as epoch ms (a time without a zone is read in ``zone``), from 1970 to ``INSTANT_HORIZON_DAYS``
    after ``now_ms``."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadRequest(
            f"'{param}' must be an ISO 8601 time, e.g. 2026-06-10T11:59:59+08:00, not {text!r}.", code=code, param=param
        ) from None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=zone)
    return bounded_ms((aware - _EPOCH) // _ONE_MS, param, now_ms, code=code)


def bounded_ms(t_ms: int, param: str, now_ms: int, *, code: str | None = None) -> int:
    """``t_ms`` if it lies from 1970 to ``INSTANT_HORIZON_DAYS`` after ``now_ms``; else 400."""
    if not 0 <= t_ms <= now_ms + INSTANT_HORIZON_DAYS * DAY_MS:
        raise BadRequest(
            f"'{param}' must lie from 1970 to {INSTANT_HORIZON_DAYS} days from now.", code=code, param=param
        )
    return t_ms
