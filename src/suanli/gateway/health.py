"""Health of every offer: a circuit breaker fed by every call (passive) and by probes (active).

closed     calls flow; each outcome enters a sliding window (``HEALTH_WINDOW_S``). The breaker opens when
           the window holds at least ``BREAKER_MIN_CALLS`` with ``BREAKER_ERROR_RATE_PERCENT`` failed, or
           after ``BREAKER_CONSECUTIVE_FAILURES`` failures in a row: never on one failure.
open       no calls for ``open_for_s`` (``BREAKER_OPEN_S``, doubled after each failed trial up to
           ``BREAKER_OPEN_MAX_S``); then half-open.
half-open  real calls are the trials, one at a time: ``BREAKER_HALF_OPEN_CALLS`` successes in a row close
           the breaker, any failure reopens it for twice as long. One at a time, so that an operator that
           hangs holds at most one client per open period.

Only real calls close a breaker. A probe (``GET /models``) says little about calls: an operator that hangs
on every completion may still list its models. So a probe never closes a breaker and never keeps one
open; the one thing it can tell is that an operator that failed a probe (unreachable, say) answers again,
and then it moves the breaker from open to half-open at once, for real calls to decide.

An upstream's ``Retry-After`` keeps calls away from the offer until then, whatever the breaker says.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from suanli.catalog import Offer
from suanli.gateway.routing import OfferState
from suanli.limits import (
    BREAKER_CONSECUTIVE_FAILURES,
    BREAKER_ERROR_RATE_PERCENT,
    BREAKER_HALF_OPEN_CALLS,
    BREAKER_MIN_CALLS,
    BREAKER_OPEN_MAX_S,
    BREAKER_OPEN_S,
    HEALTH_LATENCY_SAMPLES_MAX,
    HEALTH_WINDOW_CALLS_MAX,
    HEALTH_WINDOW_S,
    RETRY_AFTER_MAX_S,
)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
EWMA_WEIGHT = 0.2  # weight of the newest latency in the figure routing sorts by


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str = ""  # why it failed, e.g. "upstream_unreachable" or "HTTP 503"
    latency_ms: float | None = None  # to the first byte of the answer
    retry_after_s: float | None = None


def _percentile(samples: Iterable[float], percent: int) -> float | None:
    ordered = sorted(samples)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, len(ordered) * percent // 100)]


class OfferHealth:
    def __init__(self, offer: Offer, clock: Callable[[], float]) -> None:
        self.offer = offer
        self._clock = clock
        self.state = CLOSED
        self.reason = ""
        self._window: deque[tuple[float, bool]] = deque(maxlen=HEALTH_WINDOW_CALLS_MAX)
        self._latencies_ms: deque[float] = deque(maxlen=HEALTH_LATENCY_SAMPLES_MAX)
        self._ttfts_ms: deque[float] = deque(maxlen=HEALTH_LATENCY_SAMPLES_MAX)
        self._latency_ewma_ms: float | None = None
        self._tokens_per_s_ewma: float | None = None
        self._consecutive_failures = 0
        self._open_for_s = BREAKER_OPEN_S
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._trial_successes = 0  # in this half-open period
        self._probe_failed = False  # a probe failed since the breaker opened
        self._retry_after_until = 0.0
        self.in_flight = 0
        self.workers = 1  # the live workers this offer's capacity is shared by (HealthRegistry.workers)
        self.calls_total = 0
        self.failures_total = 0

    def _advance(self, now: float) -> None:
        if self.state == OPEN and now >= self._opened_at + self._open_for_s:
            self._half_open()

    def _half_open(self) -> None:
        self.state, self._trial_successes = HALF_OPEN, 0

    def current_state(self) -> str:
        self._advance(self._clock())
        return self.state

    def available(self) -> bool:
        """Whether a call may go to this offer now (no side effects)."""
        now = self._clock()
        self._advance(now)
        if now < self._retry_after_until:
            return False
        return self.state == CLOSED or (self.state == HALF_OPEN and not self._trial_in_flight)

    def begin(self) -> bool:
        """Take a place for a call; False if the breaker does not let it through."""
        if not self.available():
            return False
        if self.state == HALF_OPEN:
            self._trial_in_flight = True
        self.in_flight += 1
        return True

    def finish(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight == 0:
            # No call in flight, so no trial either: one that ended without an outcome (its client went
            # away) must not hold the half-open slot for ever.
            self._trial_in_flight = False

    def record(self, outcome: Outcome) -> None:
        now = self._clock()
        if self.state != CLOSED:
            # While the breaker is not closed, the only call let through is the trial: its outcome frees
            # the slot. (An outcome of a call begun before the breaker opened frees it too: outcomes carry
            # no identity. At worst a second trial then starts beside one still hanging.)
            self._trial_in_flight = False
        self.calls_total += 1
        self._window.append((now, outcome.ok))
        if outcome.latency_ms is not None:
            self._latencies_ms.append(outcome.latency_ms)
            old = self._latency_ewma_ms
            self._latency_ewma_ms = (
                outcome.latency_ms if old is None else old + EWMA_WEIGHT * (outcome.latency_ms - old)
            )
        if outcome.retry_after_s:
            self._retry_after_until = now + min(outcome.retry_after_s, RETRY_AFTER_MAX_S)
        if outcome.ok:
            self._succeeded()
        else:
            self._failed(now, outcome.reason)

    def record_ttft(self, ttft_ms: float) -> None:
        """Time from the request's arrival to the first token the client could see."""
        self._ttfts_ms.append(ttft_ms)

    def record_throughput(self, output_tokens: int, seconds: float) -> None:
        """Output tokens per second of a finished call, for ``sort: throughput``."""
        if output_tokens <= 0 or seconds <= 0:
            return
        rate, old = output_tokens / seconds, self._tokens_per_s_ewma
        self._tokens_per_s_ewma = rate if old is None else old + EWMA_WEIGHT * (rate - old)

    def _succeeded(self) -> None:
        self._consecutive_failures = 0
        if self.state == HALF_OPEN:
            self._trial_successes += 1
            if self._trial_successes >= BREAKER_HALF_OPEN_CALLS:
                self._close()

    def _failed(self, now: float, reason: str) -> None:
        self.failures_total += 1
        self._consecutive_failures += 1
        self.reason = reason
        if self.state == HALF_OPEN:
            self._open(now, f"trial failed: {reason}", backoff=True)
        elif self.state == CLOSED:
            calls, failed = self._window_counts(now)
            if self._consecutive_failures >= BREAKER_CONSECUTIVE_FAILURES:
                self._open(now, f"{self._consecutive_failures} failures in a row, last: {reason}")
            elif calls >= BREAKER_MIN_CALLS and failed * 100 >= BREAKER_ERROR_RATE_PERCENT * calls:
                self._open(now, f"{failed} of {calls} calls failed in {HEALTH_WINDOW_S:.0f} s, last: {reason}")

    def _window_counts(self, now: float) -> tuple[int, int]:
        while self._window and self._window[0][0] < now - HEALTH_WINDOW_S:
            self._window.popleft()
        return len(self._window), sum(1 for _, ok in self._window if not ok)

    def _open(self, now: float, reason: str, *, backoff: bool = False) -> None:
        self._open_for_s = min(self._open_for_s * 2, BREAKER_OPEN_MAX_S) if backoff else BREAKER_OPEN_S
        self.state, self.reason, self._opened_at = OPEN, reason, now
        self._probe_failed = False

    def _close(self) -> None:
        self.state, self.reason = CLOSED, ""
        self._open_for_s = BREAKER_OPEN_S
        self._consecutive_failures = 0
        self._window.clear()

    def probed(self, ok: bool) -> None:
        """An active probe of the operator. It never closes the breaker nor keeps it open (module
        docstring): a failure is noted, and a success after a failed probe moves open → half-open."""
        self._advance(self._clock())
        if self.state == CLOSED:
            return
        if not ok:
            self._probe_failed = True
        elif self._probe_failed and self.state == OPEN:
            self._probe_failed = False
            self._half_open()

    def view(self) -> OfferState:
        capacity = max(self.offer.capacity // self.workers, 1)  # this worker's share (docs/scaling.md)
        return OfferState(
            available=self.available(),
            latency_p50_ms=self._latency_ewma_ms if self._latency_ewma_ms is not None else float("inf"),
            tokens_per_s=self._tokens_per_s_ewma or 0.0,
            utilization=self.in_flight / capacity,
        )

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        self._advance(now)
        calls, failed = self._window_counts(now)
        return {
            "offer": self.offer.id,
            "operator": self.offer.operator,
            "model": self.offer.model,
            "state": self.state,
            "reason": self.reason,
            "window_calls": calls,
            "window_error_rate_percent": round(100 * failed / calls, 1) if calls else 0.0,
            "latency_p50_ms": _percentile(self._latencies_ms, 50),
            "latency_p95_ms": _percentile(self._latencies_ms, 95),
            "ttft_p50_ms": _percentile(self._ttfts_ms, 50),
            "ttft_p95_ms": _percentile(self._ttfts_ms, 95),
            "tokens_per_s": None if self._tokens_per_s_ewma is None else round(self._tokens_per_s_ewma, 1),
            "in_flight": self.in_flight,
            "capacity": self.offer.capacity,
            "retry_after_s": round(max(0.0, self._retry_after_until - now), 3),
            "calls_total": self.calls_total,
            "failures_total": self.failures_total,
        }


class HealthRegistry:
    def __init__(self, offers: Iterable[Offer], clock: Callable[[], float] = time.monotonic) -> None:
        self._offers = {offer.id: OfferHealth(offer, clock) for offer in offers}
        self._workers = 1

    @property
    def workers(self) -> int:
        """Live workers sharing the offers' capacity (PostgreSQL's leases; 1 on SQLite)."""
        return self._workers

    @workers.setter
    def workers(self, count: int) -> None:
        self._workers = max(count, 1)
        for health in self._offers.values():
            health.workers = self._workers

    def of(self, offer: Offer) -> OfferHealth:
        return self._offers[offer.id]

    def state_of(self, offer: Offer) -> OfferState:
        return self._offers[offer.id].view()

    def operators_to_probe(self) -> set[str]:
        return {h.offer.operator for h in self._offers.values() if h.current_state() != CLOSED}

    def probed(self, operator: str, ok: bool) -> None:
        for health in self._offers.values():
            if health.offer.operator == operator:
                health.probed(ok)

    def snapshot(self) -> list[dict[str, Any]]:
        return [health.snapshot() for health in self._offers.values()]
