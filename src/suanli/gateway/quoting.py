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

from suanli.catalog import Catalog, Offer
from suanli.gateway.health import HealthRegistry
from suanli.gateway.requests import ChatRequest
from suanli.limits import INPUT_ESTIMATE_MARGIN_PERCENT
from suanli.pricing import Quote, quote
from suanli.pricing.listing import PriceList, utilisation_of
from suanli.pricing.schedule import LockedPrices


def input_bound(prompt_tokens: int) -> int:
    """The prompt as counted, plus a margin for operators whose tokenizers count differently."""
    return prompt_tokens + (prompt_tokens * INPUT_ESTIMATE_MARGIN_PERCENT + 99) // 100


def output_bound(offer: Offer, request: ChatRequest) -> int:
    """The most output a request can be charged on ``offer``: ``max_tokens`` within the offer's cap, the
    cap when none is given, nothing for an embedding, and the declared tokens of the images asked for."""
    if request.kind == "embedding":
        return 0  # an embedding's price is all input
    if request.image is not None:
        return request.image.count * (offer.tokens_per_image(request.image.size, request.image.quality) or 0)
    return min(request.max_output_tokens or offer.max_output_tokens, offer.max_output_tokens)


def utilisation_permille(health: HealthRegistry, offer: Offer) -> int:
    return utilisation_of(health.of(offer).in_flight, offer.capacity)


def lock_offer(catalog: Catalog, health: HealthRegistry, offer: Offer, t_ms: int) -> LockedPrices:
    """The prices a request reserved at ``t_ms`` locks on ``offer``, at its load now."""
    return price_list_of(catalog).lock_at(offer, t_ms, utilisation_permille(health, offer))


def price_list_of(catalog: Catalog) -> PriceList:
    return PriceList(catalog.price_book, catalog.calendar)


def quote_plan(
    catalog: Catalog, health: HealthRegistry, plan: Sequence[Offer], request: ChatRequest, *, input_max: int, t_ms: int
) -> dict[str, Quote]:
    """A quote for every offer the request may go to, by offer id, locked at ``t_ms``."""
    return {
        offer.id: quote(offer, input_max, output_bound(offer, request), lock_offer(catalog, health, offer, t_ms))
        for offer in plan
    }
