"""Counting large prompts: bounded by their length first, counted in pieces, stopping past the largest
context window; the same count as one pass for ordinary text."""

from __future__ import annotations

import asyncio
import random

import pytest

from suanli.catalog import Offer
from suanli.errors import BadRequest, PaymentRequired
from suanli.gateway.counting import TOKEN_CHARS_MAX, PromptCounter, refuse_early, tokens_at_least
from suanli.ledger import Balance
from suanli.metering.tokenizer import count_request, count_text, encoding
from suanli.pricing.prices import Prices

WORDS = "the quick brown fox jumps over the lazy dog 算力 令牌 ledger, quote; price: (pack)\n\n  code = x+1"
WORDS_SPLIT = WORDS.split(" ")
PRICES = Prices(input_nano=1000, cached_input_nano=100, output_nano=2000, reasoning_nano=2000, cache_write_nano=1000)
OFFER = Offer("op/m", "op", "m", "m", PRICES, 200_000, 1000, frozenset({"enterprise"}))


def long_text(words: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS_SPLIT) for _ in range(words))


def test_a_long_text_counted_in_pieces_counts_as_one_pass() -> None:
    text = long_text(150_000)
    assert count_text(text) == len(encoding().encode_ordinary(text))


def test_no_token_is_longer_than_the_bound_the_length_check_uses() -> None:
    enc = encoding()
    longest = max(len(enc.decode_single_token_bytes(t)) for t in range(100_000))
    assert longest <= TOKEN_CHARS_MAX


def test_a_count_past_the_largest_window_stops_early() -> None:
    text = long_text(400_000)
    body = {"messages": [{"role": "user", "content": text}]}
    full = count_request(body, body["messages"])
    stopped = count_request(body, body["messages"], above=10_000)
    assert 10_000 < stopped < full // 5  # enough to refuse, far from the whole count


def test_the_length_alone_refuses_what_no_window_holds_or_no_wallet_pays() -> None:
    messages = [{"role": "user", "content": "x" * (TOKEN_CHARS_MAX * 300_000)}]
    assert tokens_at_least(messages) == 300_000
    with pytest.raises(BadRequest) as too_long:
        refuse_early([OFFER], tokens_at_least(messages), None, {OFFER.id: PRICES})
    assert too_long.value.code == "context_length_exceeded"
    empty = Balance("wallet:a", "CNY", 0, 0, 0, 0, 0)
    with pytest.raises(PaymentRequired):
        refuse_early([OFFER], 1_000, empty, {OFFER.id: PRICES})  # 1,000 tokens at 100 nano: more than 0
    funded = Balance("wallet:a", "CNY", 0, 0, 0, 0, 100_000)
    refuse_early([OFFER], 1_000, funded, {OFFER.id: PRICES})  # exactly enough: let through, to be counted


def test_a_large_prompt_is_counted_off_the_loop_with_the_same_result() -> None:
    text = long_text(40_000)
    body = {"messages": [{"role": "user", "content": text}]}
    counter = PromptCounter()
    try:
        assert counter.is_large(0, body["messages"])
        counted = asyncio.run(counter.count(body, body["messages"], 0))
    finally:
        counter.close()
    assert counted == count_request(body, body["messages"])
