"""Integer money: exact conversions, and refusal of anything that would need rounding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.money import (
    MoneyFormatError,
    cny_to_nano,
    nano_per_token_to_price_per_mtok,
    nano_to_cny,
    price_per_mtok_to_nano_per_token,
)


def test_price_per_million_tokens_converts_exactly() -> None:
    assert price_per_mtok_to_nano_per_token("0.2") == 200
    assert price_per_mtok_to_nano_per_token("2") == 2000
    assert price_per_mtok_to_nano_per_token("18") == 18_000
    assert price_per_mtok_to_nano_per_token("0.001") == 1


@pytest.mark.parametrize("text", ["0.0001", "-1", "abc", "NaN", "Infinity", ""])
def test_prices_that_are_not_exact_or_valid_are_refused(text: str) -> None:
    with pytest.raises(MoneyFormatError):
        price_per_mtok_to_nano_per_token(text)


def test_amounts_below_a_nano_are_refused() -> None:
    with pytest.raises(MoneyFormatError):
        cny_to_nano("0.0000000001")


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_nano_round_trips_through_its_decimal_string(amount: int) -> None:
    assert cny_to_nano(nano_to_cny(amount)) == amount


@given(st.integers(min_value=0, max_value=10**12))
def test_price_round_trips(price_nano: int) -> None:
    assert price_per_mtok_to_nano_per_token(nano_per_token_to_price_per_mtok(price_nano)) == price_nano


def test_formatting_has_no_exponent() -> None:
    assert nano_to_cny(1) == "0.000000001"
    assert nano_to_cny(1_500_000_000) == "1.5"
    assert nano_to_cny(-2_000_000_000) == "-2"
