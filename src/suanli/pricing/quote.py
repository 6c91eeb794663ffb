"""Quotes and costs: pure integer arithmetic on token counts and per-token prices.

A quote locks the prices of one request when its reservation is made (``LockedPrices``: the price-book
version, time-of-day window, load surcharge and batch price in force then) and the most the request can
cost (``reserved_nano``). The settlement prices the reported usage with that lock, never a newer price,
choosing the long-context tier by the usage's input tokens, and never charges more than the quote reserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from suanli.errors import invariant
from suanli.pricing.prices import Prices
from suanli.pricing.schedule import LockedPrices, base_lock, max_prices, prices_for


class PricedOffer(Protocol):
    """What a quote needs of an offer (the catalog's ``Offer`` is one): its id and base prices."""

    @property
    def id(self) -> str: ...

    @property
    def prices(self) -> Prices: ...


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts by class. The classes are disjoint: ``input`` excludes input read from or written to
    a prompt cache, and ``output`` excludes reasoning, so each token is priced exactly once."""

    input: int = 0
    cached_input: int = 0
    output: int = 0
    reasoning: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.cached_input + self.output + self.reasoning + self.cache_write

    @property
    def input_total(self) -> int:
        """Every input token, cached or not: what chooses the long-context tier."""
        return self.input + self.cached_input + self.cache_write


@dataclass(frozen=True, slots=True)
class Quote:
    offer_id: str
    prices: Prices  # the dearest per class the request can reach: what ``reserved_nano`` is priced at
    input_tokens_max: int
    output_tokens_max: int
    reserved_nano: int
    locked: LockedPrices  # the prices fixed at reservation; the settlement reads only these


def quote(
    offer: PricedOffer, input_tokens_max: int, output_tokens_max: int, locked: LockedPrices | None = None
) -> Quote:
    """The most a request can cost on ``offer``: every input token at the dearest input price and every
    output token at the dearest output price, of every long-context tier ``input_tokens_max`` can reach.
    ``locked`` comes from ``schedule.lock`` at the reservation's instant; without it, the base prices."""
    invariant(input_tokens_max >= 0 and output_tokens_max >= 0, "token bounds must be non-negative")
    locked = base_lock(offer.prices) if locked is None else locked
    p = max_prices(locked, input_tokens_max)
    input_price = max(p.input_nano, p.cached_input_nano, p.cache_write_nano)
    reserved = input_tokens_max * input_price + output_tokens_max * max(p.output_nano, p.reasoning_nano)
    return Quote(offer.id, p, input_tokens_max, output_tokens_max, reserved, locked)


def cost_nano(prices: Prices, usage: TokenUsage) -> int:
    return (
        usage.input * prices.input_nano
        + usage.cached_input * prices.cached_input_nano
        + usage.output * prices.output_nano
        + usage.reasoning * prices.reasoning_nano
        + usage.cache_write * prices.cache_write_nano
    )


@dataclass(frozen=True, slots=True)
class Charge:
    cost_nano: int  # the part of the list price within the quote's reservation
    uncharged_nano: int  # the part beyond it: charged from the balance at settlement where it can be
    prices: Prices  # the per-token prices the usage was priced at (the locked tier its input reached)

    @property
    def list_nano(self) -> int:
        """The usage at the locked prices: what the call costs when the balance covers it."""
        return self.cost_nano + self.uncharged_nano


def charge(q: Quote, usage: TokenUsage) -> Charge:
    prices = prices_for(q.locked, usage.input_total)
    full = cost_nano(prices, usage)
    charged = min(full, q.reserved_nano)
    result = Charge(charged, full - charged, prices)
    invariant(0 <= result.cost_nano <= q.reserved_nano, "a charge exceeds its quote")
    return result
