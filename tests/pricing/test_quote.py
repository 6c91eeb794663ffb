"""Quotes and charges: integer arithmetic, a charge never above its quote, every token priced once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from suanli.catalog import Offer, Prices
from suanli.metering import usage_from_anthropic, usage_from_openai
from suanli.pricing import TokenUsage, charge, cost_nano, quote

prices = st.builds(Prices, *(st.integers(min_value=0, max_value=100_000) for _ in range(5)))
tokens = st.integers(min_value=0, max_value=2_000_000)
usages = st.builds(TokenUsage, tokens, tokens, tokens, tokens, tokens)


def offer(p: Prices) -> Offer:
    return Offer("op/m", "op", "m", "m", p, 1_000_000, 100_000, frozenset({"enterprise"}))


@given(prices, tokens, tokens, usages)
def test_a_charge_never_exceeds_its_quote(p: Prices, input_max: int, output_max: int, usage: TokenUsage) -> None:
    q = quote(offer(p), input_max, output_max)
    result = charge(q, usage)
    assert 0 <= result.cost_nano <= q.reserved_nano
    assert result.cost_nano + result.uncharged_nano == cost_nano(p, usage)


@given(prices, usages)
def test_usage_within_the_bounds_is_charged_in_full(p: Prices, usage: TokenUsage) -> None:
    q = quote(offer(p), usage.input + usage.cached_input + usage.cache_write, usage.output + usage.reasoning)
    assert charge(q, usage).uncharged_nano == 0


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_openai_usage_classes_are_disjoint(prompt: int, cached: int, completion: int, reasoning: int) -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    )
    assert usage.total == prompt + completion
    assert usage.cached_input == min(cached, prompt) and usage.reasoning == min(reasoning, completion)


def test_deepseek_cache_hit_field_is_read() -> None:
    usage = usage_from_openai(
        {"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36}
    )
    assert (usage.input, usage.cached_input, usage.output) == (36, 64, 5)


def test_exact_cost_of_a_known_call() -> None:
    p = Prices(input_nano=2000, cached_input_nano=200, output_nano=3000, reasoning_nano=3000, cache_write_nano=2500)
    usage = TokenUsage(input=1000, cached_input=500, output=200, cache_write=40)
    assert cost_nano(p, usage) == 2_000_000 + 100_000 + 600_000 + 100_000


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_anthropic_usage_classes_are_counted_once(fresh: int, read: int, written: int, output: int) -> None:
    # Anthropic's input_tokens already excludes the cache reads and writes: the three are added, never nested.
    usage = usage_from_anthropic(
        {
            "input_tokens": fresh,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
            "output_tokens": output,
        }
    )
    assert usage == TokenUsage(input=fresh, cached_input=read, output=output, cache_write=written)
    assert usage.total == fresh + read + written + output
