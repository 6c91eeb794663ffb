"""Pure pricing: price schedules, quotes fixed at reservation and costs from token usage."""

from suanli.pricing.prices import Prices
from suanli.pricing.quote import Charge, PricedOffer, Quote, TokenUsage, charge, cost_nano, quote

__all__ = ["Charge", "PricedOffer", "Prices", "Quote", "TokenUsage", "charge", "cost_nano", "quote"]
