"""What the tests of the "styled" offers share: their prices, and a usage object priced at them.

The offers (tests/conftest.py) sit on the simulated operators ``rough`` and ``roughdual``, which the
tests play in every wire style real operators use.
"""

from __future__ import annotations

from typing import Any

PRICE_INPUT_NANO, PRICE_CACHED_NANO, PRICE_OUTPUT_NANO = 1000, 500, 2000  # per token: ¥1, ¥0.5, ¥2 per million
OFFER_OUTPUT_CAP = 1000


def list_price(usage: dict[str, Any]) -> int:
    """An OpenAI usage object at the styled offers' list prices, in nano-CNY."""
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return (
        (usage["prompt_tokens"] - cached) * PRICE_INPUT_NANO
        + cached * PRICE_CACHED_NANO
        + usage["completion_tokens"] * PRICE_OUTPUT_NANO
    )
