"""Fixtures of the circuit-breaker tests: a fake clock and one offer's health on it."""

from __future__ import annotations

import pytest

from suanli.gateway.health import OfferHealth
from tests.gateway.breaker import OFFER, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def health(clock: FakeClock) -> OfferHealth:
    return OfferHealth(OFFER, clock)
