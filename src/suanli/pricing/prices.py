"""Prices by token class, in integer nano-CNY per token.

They live here, below the catalog, because the catalog holds each offer's price schedule and the pricing
code must not need the catalog to price anything: the catalog imports pricing, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prices:
    """nano-CNY per token, by token class."""

    input_nano: int
    cached_input_nano: int
    output_nano: int
    reasoning_nano: int
    cache_write_nano: int  # input written to a prompt cache (only Anthropic-protocol operators report it)
