"""Price schedules: the dynamic prices of an offer (time-of-day windows, long-context tiers, batch discount,
bounded load surcharge) and the price book that versions them.

A quote locks its prices once, at reservation (``lock``), and the settlement prices the reported usage with
that lock; nothing here reads a clock, so the caller passes the instant in (epoch ms UTC). Everything is
integer arithmetic and every rounding is down, in the customer's favour:

- the load surcharge is floored to a whole per mille of the price;
- the multiplier is composed in basis points, ``window % × batch % × (1000 + surcharge ‰) // 1000``, so
  100% × 100% with no surcharge is exactly 10,000 bp and leaves prices unchanged;
- each scaled price is ``price × multiplier_bp // 10,000``.

Windows are read on the local wall clock of the calendar's zone: "09:00" means 09:00 on the clocks there,
whatever the UTC offset that day, so a window is an hour shorter or longer on a daylight-saving change day.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from itertools import pairwise
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from suanli.errors import BadRequest, ConfigError, InvariantViolation, invariant
from suanli.money import MoneyFormatError, price_per_mtok_to_nano_per_token
from suanli.pricing.calendar import DAY_MS, DAY_TYPES, Calendar, wall_date
from suanli.pricing.prices import Prices

PERCENT_MIN = 1
PERCENT_MAX = 1000  # a window or batch price is 1%..1000% of the base price
SURCHARGE_PERCENT_MAX = 100  # a load surcharge at most doubles a price
NEXT_CHANGE_LOOKAHEAD_MS = 8 * DAY_MS  # a week and a day: every weekly pattern shows within it
WINDOW_NAME_CHARS_MAX = 64
DEFAULT_WINDOW_NAME = "standard"  # what time outside every window is called; it is priced at 100%
BP_PER_UNIT = 10_000  # basis points in a multiplier of 1
NEVER_MS = 2**63 - 1  # the end of a lock that no schedule will ever change
PERMILLE = 1000
_PRICE_FIELDS = tuple(f.name for f in fields(Prices))  # every token class, should one be added
_TIME_PATTERN = re.compile(r"^(\d{2}):(\d{2})$")
_PRICE_CLASSES = {"input": None, "cached_input": "input", "output": None, "reasoning": "output", "cache_write": "input"}
_SCHEDULE_KEYS = frozenset({"batch_percent", "load_surcharge", "long_context", "windows", "default_window_name"})
_WINDOW_KEYS = frozenset({"name", "days", "from", "to", "percent"})
_TIER_KEYS = frozenset({"above_input_tokens", *_PRICE_CLASSES})
_SURCHARGE_KEYS = frozenset({"above_percent", "max_percent"})
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Prices at ``percent``% of base on the given day types, from local ``start`` (inclusive) to ``end``
    (exclusive). An ``end`` of 00:00 is 24:00, the end of the day; a window never crosses midnight (write
    two), so which day type it belongs to is never in doubt."""

    name: str
    day_types: frozenset[str]
    start: time
    end: time
    percent: int

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= WINDOW_NAME_CHARS_MAX:
            raise ConfigError(f"name must be 1 to {WINDOW_NAME_CHARS_MAX} characters")
        if not self.day_types or not self.day_types <= set(DAY_TYPES):
            raise ConfigError(f"days must be a non-empty list of {', '.join(DAY_TYPES)}")
        _check_range(self.percent, "percent", PERCENT_MIN, PERCENT_MAX)
        if self.end_ms <= self.start_ms:
            raise ConfigError(f"to {self.end:%H:%M} is not after from {self.start:%H:%M}; split a window at midnight")

    @property
    def start_ms(self) -> int:
        return _ms_of_day(self.start)

    @property
    def end_ms(self) -> int:
        return _ms_of_day(self.end) or DAY_MS


@dataclass(frozen=True, slots=True)
class LongContextTier:
    """All tokens of a request with more than ``above_input_tokens`` input tokens are priced at ``prices``."""

    above_input_tokens: int
    prices: Prices

    def __post_init__(self) -> None:
        _check_range(self.above_input_tokens, "above_input_tokens", 0, None)


@dataclass(frozen=True, slots=True)
class LoadSurcharge:
    """A surcharge rising linearly from 0 at ``above_percent``% utilisation to ``max_percent``% at 100%,
    and never beyond: a busy offer costs more, within a bound stated on the price list."""

    above_percent: int
    max_percent: int

    def __post_init__(self) -> None:
        _check_range(self.above_percent, "above_percent", 0, 99)
        _check_range(self.max_percent, "max_percent", 1, SURCHARGE_PERCENT_MAX)

    def permille_at(self, utilisation_permille: int) -> int:
        """The surcharge in per mille of the price, rounded down (in the customer's favour)."""
        invariant(utilisation_permille >= 0, "utilisation cannot be negative")
        threshold = self.above_percent * 10
        if utilisation_permille <= threshold:
            return 0
        cap = self.max_percent * 10
        return min(cap, cap * (utilisation_permille - threshold) // (PERMILLE - threshold))


class _Segment(NamedTuple):
    start_ms: int  # local ms of day
    end_ms: int
    name: str
    percent: int


@dataclass(frozen=True, slots=True)
class PriceSchedule:
    """The dynamic prices of one offer, built once at start-up; invalid schedules are refused here."""

    base: Prices
    long_context: tuple[LongContextTier, ...] = ()  # thresholds strictly increasing
    windows: tuple[TimeWindow, ...] = ()
    batch_percent: int = 100
    surcharge: LoadSurcharge | None = None
    default_window_name: str = DEFAULT_WINDOW_NAME
    _days: Mapping[str, tuple[_Segment, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_range(self.batch_percent, "batch_percent", PERCENT_MIN, PERCENT_MAX)
        thresholds = [tier.above_input_tokens for tier in self.long_context]
        if any(low >= high for low, high in pairwise(thresholds)):
            raise ConfigError(f"long_context: above_input_tokens must strictly increase, not {thresholds}")
        if not 0 < len(self.default_window_name) <= WINDOW_NAME_CHARS_MAX:
            raise ConfigError(f"default_window_name must be 1 to {WINDOW_NAME_CHARS_MAX} characters")
        days = {day: _day_segments(self.windows, day, self.default_window_name) for day in DAY_TYPES}
        object.__setattr__(self, "_days", MappingProxyType(days))  # frozen: derived once from the fields

    def segment_at(self, day_type: str, ms_of_day: int) -> _Segment:
        for segment in self._days[day_type]:
            if ms_of_day < segment.end_ms:
                return segment
        raise InvariantViolation(f"no segment at {ms_of_day} ms of a {day_type}: the segments must cover the day")


def _day_segments(windows: tuple[TimeWindow, ...], day_type: str, default_name: str) -> tuple[_Segment, ...]:
    """The whole day as consecutive segments: the windows of this day type and the default between them."""
    segments: list[_Segment] = []
    cursor = 0
    for window in sorted((w for w in windows if day_type in w.day_types), key=lambda w: w.start_ms):
        if window.start_ms < cursor:
            raise ConfigError(f"windows: {window.name!r} overlaps {segments[-1].name!r} on {day_type}s")
        if window.start_ms > cursor:
            segments.append(_Segment(cursor, window.start_ms, default_name, 100))
        segments.append(_Segment(window.start_ms, window.end_ms, window.name, window.percent))
        cursor = window.end_ms
    if cursor < DAY_MS:
        segments.append(_Segment(cursor, DAY_MS, default_name, 100))
    return tuple(segments)


class PricePoint(NamedTuple):
    """From ``at_ms`` on, the time-of-day price is ``percent``% of base, in the window called ``window_name``."""

    at_ms: int
    window_name: str
    percent: int


@dataclass(frozen=True, slots=True)
class LockedPrices:
    """The prices a quote fixes at reservation, already scaled by ``multiplier_bp``. ``valid_until_ms`` is
    when the time-of-day price next changes (or the look-ahead's end); a new price-book version, or a change
    in load, can end a lock's validity sooner."""

    multiplier_bp: int  # window % × batch % × (1000 + surcharge ‰) // 1000
    window_name: str
    window_percent: int
    surcharge_permille: int
    batch_percent: int  # 100 unless the request is a batch one
    valid_until_ms: int
    base: Prices
    long_context: tuple[LongContextTier, ...]


def scale_prices(prices: Prices, multiplier_bp: int) -> Prices:
    """Each price × multiplier, rounded down; 10,000 bp returns the prices unchanged."""
    invariant(multiplier_bp >= 0, "a multiplier cannot be negative")
    values = [getattr(prices, name) for name in _PRICE_FIELDS]  # positional: this runs on every admission
    invariant(min(values) >= 0, "a price cannot be negative")
    if multiplier_bp == BP_PER_UNIT:
        return prices
    return Prices(*[value * multiplier_bp // BP_PER_UNIT for value in values])


def lock(
    schedule: PriceSchedule, calendar: Calendar, t_ms: int, utilisation_permille: int, batch: bool
) -> LockedPrices:
    """The prices for a request reserved at ``t_ms`` on an offer with this utilisation (per mille of its
    capacity in flight)."""
    now, change = _now_and_next(schedule, calendar, t_ms)
    surcharge = 0 if schedule.surcharge is None else schedule.surcharge.permille_at(utilisation_permille)
    batch_percent = schedule.batch_percent if batch else 100
    multiplier_bp = now.percent * batch_percent * (PERMILLE + surcharge) // PERMILLE
    return LockedPrices(
        multiplier_bp=multiplier_bp,
        window_name=now.window_name,
        window_percent=now.percent,
        surcharge_permille=surcharge,
        batch_percent=batch_percent,
        valid_until_ms=t_ms + NEXT_CHANGE_LOOKAHEAD_MS if change is None else change.at_ms,
        base=scale_prices(schedule.base, multiplier_bp),
        long_context=tuple(
            LongContextTier(tier.above_input_tokens, scale_prices(tier.prices, multiplier_bp))
            for tier in schedule.long_context
        ),
    )


def base_lock(prices: Prices) -> LockedPrices:
    """The lock of prices with no schedule behind them: base at 100%, no tier, no surcharge, never
    changing. A quote made without an instant gets it, so it prices exactly as the base price does."""
    return LockedPrices(BP_PER_UNIT, DEFAULT_WINDOW_NAME, 100, 0, 100, NEVER_MS, prices, ())


def prices_for(locked: LockedPrices, input_tokens_total: int) -> Prices:
    """The prices of a request with this many input tokens (input + cached input + cache write): the tier
    with the largest threshold below the count, else base. A count equal to a threshold stays below it."""
    chosen = locked.base
    for tier in locked.long_context:
        if input_tokens_total > tier.above_input_tokens:
            chosen = tier.prices
    return chosen


def max_prices(locked: LockedPrices, input_tokens_max: int) -> Prices:
    """The dearest price per class among the tiers a request of up to ``input_tokens_max`` input tokens can
    reach, so a reservation at these prices covers the settlement whatever the actual input (a long-context
    tier may be cheaper than base in some class, so the base always stays a candidate)."""
    reachable = [locked.base, *(t.prices for t in locked.long_context if input_tokens_max > t.above_input_tokens)]
    return Prices(**{name: max(getattr(p, name) for p in reachable) for name in _PRICE_FIELDS})


def next_change(schedule: PriceSchedule, calendar: Calendar, t_ms: int) -> PricePoint | None:
    """When the time-of-day price next differs from the one at ``t_ms``, within the look-ahead; None for a
    schedule with no windows or none that changes the price within it."""
    return _now_and_next(schedule, calendar, t_ms)[1]


def cheapest_window_today(schedule: PriceSchedule, calendar: Calendar, t_ms: int) -> PricePoint:
    """The cheapest time-of-day price from ``t_ms`` to the end of the local day, the earliest on a tie (so
    the current price, from ``t_ms``, when nothing later today is cheaper)."""
    today = calendar.local_date(t_ms)
    pieces = _pieces(schedule, calendar, t_ms, t_ms + 2 * DAY_MS)  # a local day is at most 25 hours
    best = next(pieces)  # the price now: today's by definition
    for point in pieces:
        if calendar.local_date(point.at_ms) != today:
            break
        if point.percent < best.percent:
            best = point
    return best


def _now_and_next(schedule: PriceSchedule, calendar: Calendar, t_ms: int) -> tuple[PricePoint, PricePoint | None]:
    if not schedule.windows:  # the whole of every day is the default window: no clock to read
        return PricePoint(t_ms, schedule.default_window_name, 100), None
    pieces = _pieces(schedule, calendar, t_ms, t_ms + NEXT_CHANGE_LOOKAHEAD_MS)
    now = next(pieces)
    return now, next((point for point in pieces if point.percent != now.percent), None)


def _pieces(schedule: PriceSchedule, calendar: Calendar, t_ms: int, until_ms: int) -> Iterator[PricePoint]:
    """The time-of-day prices from ``t_ms``, each point holding until the next. While the UTC offset is
    constant the wall clock runs with real time, so a boundary is one subtraction away; a span ends at an
    offset change (daylight saving), where the wall clock jumps and the price is read afresh. Points may
    repeat a price (at midnight, at a span's end): callers compare percents."""
    cursor = t_ms
    while cursor < until_ms:
        span_end = min(until_ms, cursor + DAY_MS)
        offset_ms = calendar.utc_offset_ms(cursor)
        if calendar.utc_offset_ms(span_end) != offset_ms:  # rare: bisect only on a day the offset changes
            change_ms = calendar.offset_change_ms(cursor, span_end)
            span_end = span_end if change_ms is None else change_ms
        while cursor < span_end:
            wall_ms = cursor + offset_ms
            ms_of_day = wall_ms % DAY_MS
            segment = schedule.segment_at(calendar.day_type(wall_date(wall_ms)), ms_of_day)
            yield PricePoint(cursor, segment.name, segment.percent)
            cursor = min(span_end, cursor + segment.end_ms - ms_of_day)


@dataclass(frozen=True, slots=True)
class PriceVersion:
    effective_from_ms: int
    schedule: PriceSchedule


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Versioned schedules per offer id. History is never rewritten: a new version can only take effect
    after ``now`` and after the offer's last version, so every quote already made stays explained by the
    book, and the price at any past instant never changes."""

    versions: Mapping[str, tuple[PriceVersion, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for offer_id, history in self.versions.items():
            starts = [version.effective_from_ms for version in history]
            if not starts or any(a >= b for a, b in pairwise(starts)):
                raise ConfigError(f"price book {offer_id}: versions must be non-empty, effective times increasing")
        object.__setattr__(self, "versions", MappingProxyType(dict(self.versions)))  # immutable from here on

    def schedule_at(self, offer_id: str, t_ms: int) -> PriceSchedule | None:
        """The version in force at ``t_ms`` (the latest effective at or before it); None before the first."""
        history = self.versions.get(offer_id, ())
        index = bisect.bisect_right(history, t_ms, key=lambda version: version.effective_from_ms)
        return history[index - 1].schedule if index else None

    def history(self, offer_id: str) -> tuple[PriceVersion, ...]:
        return self.versions.get(offer_id, ())

    def version_after(self, offer_id: str, t_ms: int) -> PriceVersion | None:
        """The first version to take effect after ``t_ms``, if one is on the book."""
        return next((v for v in self.history(offer_id) if v.effective_from_ms > t_ms), None)

    def add_version(self, offer_id: str, effective_from_ms: int, schedule: PriceSchedule, now_ms: int) -> PriceBook:
        """A new book with this version added; the book itself is unchanged."""
        history = self.history(offer_id)
        not_before = max(now_ms, history[-1].effective_from_ms if history else now_ms)
        if effective_from_ms <= not_before:
            raise BadRequest(
                f"A price version must take effect after {not_before} (now or the offer's latest version); "
                "history is never rewritten.",
                code="invalid_field",
                param="effective_from_ms",
            )
        versions = dict(self.versions)
        versions[offer_id] = (*history, PriceVersion(effective_from_ms, schedule))
        return PriceBook(versions)


def parse_schedule(base: Prices, spec: Mapping[str, Any], where: str) -> PriceSchedule:
    """Read an offer's pricing table (the format is in the catalog's docs); ``base`` is the offer's price."""
    _check_keys(_table(spec, where), _SCHEDULE_KEYS, where)
    window_specs = _list(spec.get("windows", []), f"{where}.windows")
    windows = tuple(_window(window, f"{where}.windows[{i}]") for i, window in enumerate(window_specs))
    tier_specs = _list(spec.get("long_context", []), f"{where}.long_context")
    tiers = tuple(_tier(tier, f"{where}.long_context[{i}]") for i, tier in enumerate(tier_specs))
    surcharge_spec = spec.get("load_surcharge")
    surcharge = None if surcharge_spec is None else _surcharge(surcharge_spec, f"{where}.load_surcharge")
    batch_percent = _int(spec.get("batch_percent", 100), f"{where}.batch_percent")
    default_name = spec.get("default_window_name", DEFAULT_WINDOW_NAME)
    if not isinstance(default_name, str):
        raise ConfigError(f"{where}.default_window_name must be a string")
    return _built(where, lambda: PriceSchedule(base, tiers, windows, batch_percent, surcharge, default_name))


def _window(spec: Any, where: str) -> TimeWindow:
    table = _table(spec, where)
    _check_keys(table, _WINDOW_KEYS, where)
    days, name = table.get("days"), table.get("name")
    if not isinstance(days, list) or not all(isinstance(day, str) for day in days):
        raise ConfigError(f"{where}.days must be a list of {', '.join(DAY_TYPES)}")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string")
    start, end = _time(table.get("from"), f"{where}.from", False), _time(table.get("to"), f"{where}.to", True)
    percent = _int(table.get("percent"), f"{where}.percent")
    return _built(where, lambda: TimeWindow(name, frozenset(days), start, end, percent))


def _tier(spec: Any, where: str) -> LongContextTier:
    table = _table(spec, where)
    _check_keys(table, _TIER_KEYS, where)
    above, prices = _int(table.get("above_input_tokens"), f"{where}.above_input_tokens"), _prices(table, where)
    return _built(where, lambda: LongContextTier(above, prices))


def _surcharge(spec: Any, where: str) -> LoadSurcharge:
    table = _table(spec, where)
    _check_keys(table, _SURCHARGE_KEYS, where)
    above = _int(table.get("above_percent"), f"{where}.above_percent")
    most = _int(table.get("max_percent"), f"{where}.max_percent")
    return _built(where, lambda: LoadSurcharge(above, most))


def _built(where: str, build: Callable[[], _T]) -> _T:
    """Build a value whose constructor checks it, naming where in the file a refusal comes from."""
    try:
        return build()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _prices(table: Mapping[str, Any], where: str) -> Prices:
    """CNY per million tokens, as the offer's base price; a missing class defaults as in the catalog."""
    values: dict[str, int] = {}
    for key, fallback in _PRICE_CLASSES.items():
        text = table.get(key, table.get(fallback) if fallback else None)
        if text is None:
            raise ConfigError(f"{where}.{key} is required (CNY per million tokens)")
        if not isinstance(text, str | int) or isinstance(text, bool):
            raise ConfigError(f'{where}.{key}: write the price as a string, e.g. "2.5", so it stays exact')
        try:
            values[f"{key}_nano"] = price_per_mtok_to_nano_per_token(text)
        except MoneyFormatError as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from exc
    return Prices(**values)


def _time(value: Any, where: str, is_end: bool) -> time:
    """``"HH:MM"`` (or a TOML local time); ``"24:00"`` (and ``"00:00"``) ends a window at midnight."""
    if isinstance(value, time):
        return value
    match = _TIME_PATTERN.match(value) if isinstance(value, str) else None
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if is_end and (hour, minute) == (24, 0):
            return time(0)
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise ConfigError(f'{where}: {value!r} is not a time of day (write "HH:MM"{", up to 24:00" if is_end else ""})')


def _ms_of_day(moment: time) -> int:
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1000 + moment.microsecond // 1000


def _check_range(value: int, name: str, low: int, high: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ConfigError(f"{name} must be an integer {bound}, not {value!r}")


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where} must be an integer, not {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"`{where}` must be a list")
    return value


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"`{where}` must be a table")
    return value


def _check_keys(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(sorted(known))})")
