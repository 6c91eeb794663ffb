"""Quotes and costs: pure integer arithmetic on token counts and per-token prices.

A quote fixes the prices of one request when its reservation is made and the most the request can cost
(``reserved_nano``); the settlement prices the reported usage with the quote's prices, never a newer
price, and never charges more than the quote reserved.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanli.catalog import Offer, Prices
from suanli.errors import invariant


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


@dataclass(frozen=True, slots=True)
class Quote:
    offer_id: str
    prices: Prices
    input_tokens_max: int
    output_tokens_max: int
    reserved_nano: int


def quote(offer: Offer, input_tokens_max: int, output_tokens_max: int) -> Quote:
    """The most a request can cost on ``offer``: every input token at the dearer input price and every
    output token at the dearer output price."""
    invariant(input_tokens_max >= 0 and output_tokens_max >= 0, "token bounds must be non-negative")
    p = offer.prices
    input_price = max(p.input_nano, p.cached_input_nano, p.cache_write_nano)
    reserved = input_tokens_max * input_price + output_tokens_max * max(p.output_nano, p.reasoning_nano)
    return Quote(offer.id, p, input_tokens_max, output_tokens_max, reserved)


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
    cost_nano: int  # what is posted: never more than the reservation
    uncharged_nano: int  # priced usage the reservation did not cover, absorbed by the platform


def charge(q: Quote, usage: TokenUsage) -> Charge:
    full = cost_nano(q.prices, usage)
    charged = min(full, q.reserved_nano)
    result = Charge(charged, full - charged)
    invariant(0 <= result.cost_nano <= q.reserved_nano, "a charge exceeds its quote")
    return result
