"""The price list and request quotes as people read them: pure views of the price book at an instant.

``GET /v1/pricing``, ``POST /v1/quote`` and the ``suanli prices`` / ``suanli quote`` commands all show these
same dictionaries (JSON-ready), so the API and the command line can never disagree. Prices are shown twice
per token class: in CNY per million tokens as a decimal string, as price lists write them, and in integer
nano-CNY per token, as they are computed. Times are ISO 8601 in the calendar's zone, and epoch ms.

The load surcharge is the offer's at the instant asked about, from the utilisation the caller passes;
prices later in the day (the next change, the cheapest time) assume that load holds, since it can't be known.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from suanli.instants import parse_iso_ms
from suanli.money import nano_per_token_to_price_per_mtok, nano_to_cny
from suanli.pricing.calendar import DAY_TYPES, Calendar
from suanli.pricing.prices import Prices
from suanli.pricing.quote import PricedOffer, Quote, quote
from suanli.pricing.schedule import (
    PERMILLE,
    LockedPrices,
    LongContextTier,
    PriceBook,
    PriceSchedule,
    TimeWindow,
    lock,
    next_change,
)

TOKEN_CLASSES = tuple(f.name.removesuffix("_nano") for f in fields(Prices))
PRICE_CHANGES_PER_DAY_MAX = 2 * 24 * 60  # windows start and end on whole minutes: a bound on the walk below


@dataclass(frozen=True, slots=True)
class PricedAt:
    """A quote made at an instant: when, and the quote (its locked prices, bounds and amount)."""

    at_ms: int
    quote: Quote


@dataclass(frozen=True, slots=True)
class PriceList:
    """The price book read on its calendar: what any offer costs at any instant."""

    book: PriceBook
    calendar: Calendar

    def schedule_in_force(self, offer: PricedOffer, t_ms: int) -> PriceSchedule:
        """The offer's schedule at ``t_ms``; an offer the book does not hold is priced at its base price."""
        return self.book.schedule_at(offer.id, t_ms) or PriceSchedule(offer.prices)

    def lock_at(self, offer: PricedOffer, t_ms: int, utilisation_permille: int, *, batch: bool = False) -> LockedPrices:
        """The prices a request reserved at ``t_ms`` locks on this offer."""
        return lock(self.schedule_in_force(offer, t_ms), self.calendar, t_ms, utilisation_permille, batch)

    def next_price_change(self, offer: PricedOffer, t_ms: int) -> int | None:
        """When the offer's price next changes by the clock: a window boundary that changes the percent,
        or a new price-book version, whichever is first; None if neither is ahead."""
        window_change = next_change(self.schedule_in_force(offer, t_ms), self.calendar, t_ms)
        version = self.book.version_after(offer.id, t_ms)
        times = [window_change.at_ms] if window_change is not None else []
        if version is not None:
            times.append(version.effective_from_ms)
        return min(times) if times else None

    def quote_at(self, offer: PricedOffer, t_ms: int, bounds: Bounds, *, batch: bool = False) -> PricedAt:
        locked = self.lock_at(offer, t_ms, bounds.utilisation_permille, batch=batch)
        return PricedAt(t_ms, quote(offer, bounds.input_max, bounds.output_max, locked))

    def cheapest_today(self, offer: PricedOffer, t_ms: int, bounds: Bounds, *, batch: bool = False) -> PricedAt:
        """The cheapest instant from ``t_ms`` to the end of the local day for a request of these bounds,
        the earliest on a tie. Every price change of the day is tried, price-book versions included, and
        compared by the quote's amount, since a version changes the base prices too."""
        today = self.calendar.local_date(t_ms)
        best = self.quote_at(offer, t_ms, bounds, batch=batch)
        at = t_ms
        for _ in range(PRICE_CHANGES_PER_DAY_MAX + len(self.book.history(offer.id))):
            following = self.next_price_change(offer, at)
            if following is None or self.calendar.local_date(following) != today:
                break
            at = following
            candidate = self.quote_at(offer, at, bounds, batch=batch)
            if candidate.quote.reserved_nano < best.quote.reserved_nano:
                best = candidate
        return best

    def entry(self, offer: PricedOffer, t_ms: int, utilisation_permille: int) -> dict[str, Any]:
        """One offer on the price list: the price now and until when, the next price, and the rules."""
        schedule = self.schedule_in_force(offer, t_ms)
        locked = lock(schedule, self.calendar, t_ms, utilisation_permille, False)
        change_ms = self.next_price_change(offer, t_ms)
        following = None
        if change_ms is not None:
            upcoming = self.lock_at(offer, change_ms, utilisation_permille)
            following = {**self.instant(change_ms, "at"), **_window_view(upcoming)}
        return {
            "current": {**_window_view(locked), **self.instant(change_ms, "until")},
            "next": following,
            "rules": self._rules(offer, schedule, t_ms, locked, utilisation_permille),
        }

    def _rules(
        self, offer: PricedOffer, schedule: PriceSchedule, t_ms: int, locked: LockedPrices, utilisation_permille: int
    ) -> dict[str, Any]:
        version = self.book.version_after(offer.id, t_ms)
        started = [v.effective_from_ms for v in self.book.history(offer.id) if 0 < v.effective_from_ms <= t_ms]
        surcharge = schedule.surcharge
        return {
            "effective_from": self.instant(started[-1] if started else None, "at")["at"],
            "next_version_from": self.instant(version.effective_from_ms if version else None, "at")["at"],
            "base_prices": prices_view(schedule.base),
            "windows": [window_view(w) for w in sorted(schedule.windows, key=lambda w: (w.start_ms, w.name))],
            "default_window_name": schedule.default_window_name,
            "long_context": _tiers_view(schedule.long_context),
            "batch_percent": schedule.batch_percent,
            "load_surcharge": None
            if surcharge is None
            else {
                "above_percent": surcharge.above_percent,
                "max_percent": surcharge.max_percent,
                "utilisation_permille": utilisation_permille,
                "current_permille": locked.surcharge_permille,
            },
        }

    def instant(self, t_ms: int | None, name: str) -> dict[str, Any]:
        """``{name: ISO 8601 local time, name_ms: epoch ms}``, both None for no instant."""
        if t_ms is None:
            return {name: None, f"{name}_ms": None}
        local = self.calendar.local_datetime(t_ms)
        return {name: local.isoformat(timespec="milliseconds" if t_ms % 1000 else "seconds"), f"{name}_ms": t_ms}


@dataclass(frozen=True, slots=True)
class Bounds:
    """A request's bounds (input and output tokens at most) and its offer's load, per mille."""

    input_max: int
    output_max: int
    utilisation_permille: int = 0


def quote_entry(prices: PriceList, at: PricedAt) -> dict[str, Any]:
    """What a request would cost at most at one instant, and the prices that bound it."""
    q = at.quote
    return {
        **prices.instant(at.at_ms, "at"),
        **_window_view(q.locked, with_prices=False),
        "max_cost": nano_to_cny(q.reserved_nano),
        "max_cost_nano": q.reserved_nano,
        "prices": prices_view(q.prices),
    }


def offer_quote(prices: PriceList, offer: PricedOffer, t_ms: int, bounds: Bounds) -> dict[str, Any]:
    """The most a request of these bounds would cost on ``offer`` at ``t_ms``, and at its cheapest today."""
    return {
        "now": quote_entry(prices, prices.quote_at(offer, t_ms, bounds)),
        "cheapest_today": quote_entry(prices, prices.cheapest_today(offer, t_ms, bounds)),
    }


def parse_instant(text: str, calendar: Calendar, param: str, now_ms: int) -> int:
    """An ISO 8601 time as epoch ms; one written without a zone is read in the calendar's zone. It must lie from
    1970 to ``INSTANT_HORIZON_DAYS`` after ``now_ms`` (400 ``invalid_field`` otherwise)."""
    return parse_iso_ms(text, param, now_ms, calendar.zone, code="invalid_field")


def _window_view(locked: LockedPrices, *, with_prices: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "window": locked.window_name,
        "window_percent": locked.window_percent,
        "surcharge_permille": locked.surcharge_permille,
        "batch_percent": locked.batch_percent,
        "multiplier_bp": locked.multiplier_bp,
    }
    if with_prices:
        view["prices"] = prices_view(locked.base)
        view["long_context"] = _tiers_view(locked.long_context)
    return view


def _tiers_view(tiers: tuple[LongContextTier, ...]) -> list[dict[str, Any]]:
    return [{"above_input_tokens": tier.above_input_tokens, "prices": prices_view(tier.prices)} for tier in tiers]


def prices_view(prices: Prices) -> dict[str, dict[str, Any]]:
    nano = {name: getattr(prices, f"{name}_nano") for name in TOKEN_CLASSES}
    return {
        "cny_per_mtok": {name: nano_per_token_to_price_per_mtok(value) for name, value in nano.items()},
        "nano_per_token": nano,
    }


def window_view(window: TimeWindow) -> dict[str, Any]:
    end = "24:00" if window.end_ms == 24 * 3600 * 1000 else f"{window.end:%H:%M}"
    return {
        "name": window.name,
        "days": [day for day in DAY_TYPES if day in window.day_types],
        "from": f"{window.start:%H:%M}",
        "to": end,
        "percent": window.percent,
    }


def utilisation_of(in_flight: int, capacity: int) -> int:
    """Calls in flight per mille of the offer's capacity: the integer the surcharge reads."""
    return in_flight * PERMILLE // max(capacity, 1)
