"""Helpers for the circuit-breaker tests: a fake clock, offers, and outcomes recorded in patterns."""

from __future__ import annotations

from typing import Any

from suanli.catalog import Offer, parse_catalog
from suanli.gateway.health import HALF_OPEN, OPEN, OfferHealth, Outcome
from suanli.limits import BREAKER_CONSECUTIVE_FAILURES, BREAKER_OPEN_S

CAPACITY = 4
# A step of time that floats represent exactly, so "just before" and "exactly at" a deadline are exact.
EPS_S = 0.125
REASON = "HTTP 503"


class FakeClock:
    def __init__(self, now: float = 1024.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_offers(*operator_models: tuple[str, str]) -> tuple[Offer, ...]:
    data: dict[str, Any] = {
        "operators": {op: {"base_url": f"https://{op}.example/v1"} for op, _ in operator_models},
        "models": {model: {} for _, model in operator_models},
        "offers": [
            {
                "operator": op,
                "model": model,
                "context_window": 8192,
                "max_output_tokens": 1024,
                "price": {"input": "1", "output": "2"},
                "capacity": CAPACITY,
            }
            for op, model in operator_models
        ],
    }
    return parse_catalog(data, environ={}).offers


OFFER = make_offers(("alpha", "m"))[0]


def fail(health: OfferHealth, times: int = 1, reason: str = REASON) -> None:
    for _ in range(times):
        health.record(Outcome(ok=False, reason=reason))


def succeed(health: OfferHealth, times: int = 1) -> None:
    for _ in range(times):
        health.record(Outcome(ok=True))


def record_all(health: OfferHealth, pattern: list[bool]) -> None:
    for ok in pattern:
        health.record(Outcome(ok=ok, reason="" if ok else REASON))


def spread(calls: int, failures: int) -> list[bool]:
    """`calls` outcomes (True = ok) of which `failures` failed, the last one a failure.

    No two failures are adjacent, so the consecutive-failures rule never fires and only the error rate
    can open the breaker. The spare successes come first, so when `calls >= 2 * failures` no shorter
    prefix has a higher error rate than the whole: the breaker can only open at the last outcome."""
    if not (failures >= 1 and 2 * failures - 1 <= calls and BREAKER_CONSECUTIVE_FAILURES >= 2):
        raise ValueError(f"cannot spread {failures} failures over {calls} calls; the limits changed")
    return [True] * (calls - 2 * failures + 1) + [False] + [True, False] * (failures - 1)


def open_breaker(health: OfferHealth) -> None:
    fail(health, BREAKER_CONSECUTIVE_FAILURES)
    assert health.current_state() == OPEN


def half_open(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)
    clock.advance(BREAKER_OPEN_S)
    assert health.current_state() == HALF_OPEN


def assert_open_for(health: OfferHealth, clock: FakeClock, seconds: float) -> None:
    """The breaker, opened just now, stays open for exactly `seconds`, then lets a trial through."""
    clock.advance(seconds - EPS_S)
    assert health.current_state() == OPEN and not health.available()
    clock.advance(EPS_S)
    assert health.current_state() == HALF_OPEN and health.available()
