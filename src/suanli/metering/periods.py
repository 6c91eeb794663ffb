"""Hours and days of a time zone, for usage summaries: which local hour or day an instant falls in, and
where that hour or day starts, exactly, whatever the zone's offset (+05:45) or its daylight-saving changes.

A local day is 23, 24 or 25 hours long around a change; a fall-back hour happens twice and is two buckets
(01:00-04:00 and 01:00-05:00 in New York); a spring-forward hour does not exist and is no bucket. Pure:
instants are arguments, never read from a clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("hour", "day")
MS_PER_S = 1000


def local(t_ms: int, zone: ZoneInfo) -> datetime:
    """``t_ms`` as the zone's wall-clock time (to the second, with ``fold`` set in a repeated hour)."""
    return datetime.fromtimestamp(t_ms // MS_PER_S, zone)


def bucket_start_ms(t_ms: int, period: str, zone: ZoneInfo) -> int:
    """The first instant of the local hour or day that holds ``t_ms``."""
    moment = local(t_ms, zone)
    if period == "hour":
        # The repeated hour keeps its fold: its second pass is a bucket of its own.
        start = moment.replace(minute=0, second=0, microsecond=0)
    else:
        # fold=0: the first midnight, if a day has two; a midnight that a change skips resolves, with fold=0,
        # to the offset before the change, which is the instant the day's first existing time begins.
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    return int(start.timestamp()) * MS_PER_S


def iso(t_ms: int, zone: ZoneInfo) -> str:
    """``t_ms`` in ISO 8601 with the zone's offset then, to the millisecond when it has any."""
    moment = datetime.fromtimestamp(t_ms // MS_PER_S, zone)
    if t_ms % MS_PER_S:
        moment += timedelta(milliseconds=t_ms % MS_PER_S)
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat()


def days_back_start_ms(now_ms: int, days: int, zone: ZoneInfo) -> int:
    """The start of the local day ``days`` days before the one holding ``now_ms`` (0: today's start)."""
    today = local(now_ms, zone).date() - timedelta(days=days)
    midnight = datetime(today.year, today.month, today.day, tzinfo=zone)
    return bucket_start_ms(int(midnight.timestamp()) * MS_PER_S + 12 * 3600 * MS_PER_S, "day", zone)


def hours_back_start_ms(now_ms: int, hours: int, zone: ZoneInfo) -> int:
    """The start of the local hour ``hours`` hours (of elapsed time) before the one holding ``now_ms``."""
    return bucket_start_ms(bucket_start_ms(now_ms, "hour", zone) - hours * 3600 * MS_PER_S, "hour", zone)
