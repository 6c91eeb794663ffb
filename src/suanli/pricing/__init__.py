"""Pure pricing: quotes fixed at reservation and costs from token usage."""

from suanli.pricing.quote import Charge, Quote, TokenUsage, charge, cost_nano, quote

__all__ = ["Charge", "Quote", "TokenUsage", "charge", "cost_nano", "quote"]
