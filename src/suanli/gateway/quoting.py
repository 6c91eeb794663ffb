"""Quotes at admission: each planned offer's prices locked at one instant, then the most the call can cost.

The catalog's price book and calendar are pure data; the gateway adds the two things they can't know:
the instant (passed in, so a test can pin it) and each offer's live load (calls in flight per mille of its
declared capacity, read from ``health`` as integers, so the surcharge involves no float). The lock holds
for the whole call: the settlement prices the usage with it, whenever the answer ends.

A synchronous request is never priced as a batch one: a flag any client could set would make the batch
price a free discount, since the call gets the same service. ``batch`` is for the Batch API to come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suanli.catalog import Catalog, Offer
from suanli.gateway.health import HealthRegistry
from suanli.gateway.requests import ChatRequest
from suanli.limits import INPUT_ESTIMATE_MARGIN_PERCENT
from suanli.pricing import Quote, quote
from suanli.pricing.listing import PriceList, utilisation_of
from suanli.pricing.prices import Prices
from suanli.pricing.schedule import LockedPrices


def input_bound(prompt_tokens: int, margin_percent: int = INPUT_ESTIMATE_MARGIN_PERCENT) -> int:
    """The prompt as counted, plus the offer's margin for its operator's tokenizer, rounded up."""
    return prompt_tokens + (prompt_tokens * margin_percent + 99) // 100


def choice_output_max(offer: Offer, request: ChatRequest) -> int:
    """The ``max_tokens`` sent to ``offer``'s operator: the client's, clamped to the offer's cap; the cap
    when the client gave none, so an operator never serves output nobody reserved for."""
    return min(request.max_output_tokens or offer.max_output_tokens, offer.max_output_tokens)


def output_bound(offer: Offer, request: ChatRequest) -> int:
    """The most output a request can be charged on ``offer``: each of its ``n`` answers up to
    ``choice_output_max``, nothing for an embedding, and the declared tokens of the images asked for."""
    if request.kind == "embedding":
        return 0  # an embedding's price is all input
    if request.image is not None:
        return request.image.count * (offer.tokens_per_image(request.image.size, request.image.quality) or 0)
    return request.choices * choice_output_max(offer, request)


def utilisation_permille(health: HealthRegistry, offer: Offer) -> int:
    """This worker's calls in flight against its share of the offer's capacity: with N live workers on one
    database (docs/scaling.md) each sees about 1/N of the load, so each has 1/N of the capacity."""
    return utilisation_of(health.of(offer).in_flight, offer.capacity // max(health.workers, 1))


def price_list_of(catalog: Catalog) -> PriceList:
    return PriceList(catalog.price_book, catalog.calendar)


class PriceClock:
    """Each offer's price by the clock (its price version and time-of-day window, before any load
    surcharge), kept until it next changes. Routing sorts and filters offers by it, so the cheapest offer
    is the cheapest now, not at its base price; and an offer without a surcharge rule locks it as is."""

    def __init__(self, catalog: Catalog) -> None:
        self._prices = price_list_of(catalog)
        self._cache: dict[str, _Clocked] = {}

    def _clocked(self, offer: Offer, t_ms: int) -> _Clocked:
        entry = self._cache.get(offer.id)
        if entry is not None and entry.since_ms <= t_ms < entry.until_ms:
            return entry
        schedule = self._prices.schedule_in_force(offer, t_ms)
        locked = self._prices.lock_at(offer, t_ms, 0)
        change = self._prices.next_price_change(offer, t_ms)
        until = locked.valid_until_ms if change is None else min(change, locked.valid_until_ms)
        entry = self._cache[offer.id] = _Clocked(t_ms, until, locked, schedule.surcharge is not None)
        return entry

    def locked(self, offer: Offer, t_ms: int) -> LockedPrices:
        return self._clocked(offer, t_ms).locked

    def prices(self, offer: Offer, t_ms: int) -> Prices:
        """The per-token prices by the clock at ``t_ms`` (the base tier)."""
        return self._clocked(offer, t_ms).locked.base

    def lock(self, offer: Offer, t_ms: int, health: HealthRegistry) -> LockedPrices:
        """The prices a request reserved at ``t_ms`` locks on ``offer``, at its load now."""
        clocked = self._clocked(offer, t_ms)
        if not clocked.load_priced:
            return clocked.locked  # no load rule: the clock's price is the price
        return self._prices.lock_at(offer, t_ms, utilisation_permille(health, offer))


@dataclass(frozen=True, slots=True)
class _Clocked:
    """An offer's price by the clock, valid from ``since_ms`` until ``until_ms``."""

    since_ms: int
    until_ms: int
    locked: LockedPrices
    load_priced: bool  # its schedule has a load surcharge, so a lock must read the load too


def quote_plan(
    clock: PriceClock,
    health: HealthRegistry,
    plan: Sequence[Offer],
    request: ChatRequest,
    *,
    prompt_tokens: int,
    t_ms: int,
) -> dict[str, Quote]:
    """A quote for every offer the request may go to, by offer id, locked at ``t_ms``."""
    return {
        offer.id: quote(
            offer,
            input_bound(prompt_tokens, offer.input_margin_percent),
            output_bound(offer, request),
            clock.lock(offer, t_ms, health),
        )
        for offer in plan
    }
