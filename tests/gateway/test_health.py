"""The circuit breaker of every offer, driven by a fake clock: when it opens, how long it stays open, the
trial calls of half-open (one at a time, all must succeed), probes (which never close it), Retry-After,
load and the figures shown to admins.

Every threshold comes from ``suanli.limits``, so these tests follow the limits when they are retuned."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.gateway.health import CLOSED, EWMA_WEIGHT, HALF_OPEN, OPEN, OfferHealth, Outcome
from suanli.limits import (
    BREAKER_CONSECUTIVE_FAILURES,
    BREAKER_ERROR_RATE_PERCENT,
    BREAKER_HALF_OPEN_CALLS,
    BREAKER_MIN_CALLS,
    BREAKER_OPEN_MAX_S,
    BREAKER_OPEN_S,
    HEALTH_WINDOW_CALLS_MAX,
    HEALTH_WINDOW_S,
    RETRY_AFTER_MAX_S,
)
from tests.gateway.breaker import (
    CAPACITY,
    EPS_S,
    OFFER,
    REASON,
    FakeClock,
    assert_open_for,
    fail,
    half_open,
    open_breaker,
    record_all,
    spread,
    succeed,
)

# --- when the breaker opens ------------------------------------------------------------------------------


def test_a_new_offer_is_closed_and_available(health: OfferHealth) -> None:
    assert health.current_state() == CLOSED and health.available()


def test_one_failure_never_opens_the_breaker(health: OfferHealth) -> None:
    fail(health)
    assert health.current_state() == CLOSED and health.available() and health.begin()


def test_one_failure_fewer_than_the_limit_in_a_row_keeps_it_closed(health: OfferHealth) -> None:
    fail(health, BREAKER_CONSECUTIVE_FAILURES - 1)
    assert health.current_state() == CLOSED and health.available()


def test_the_limit_of_failures_in_a_row_opens_it(health: OfferHealth) -> None:
    fail(health, BREAKER_CONSECUTIVE_FAILURES - 1)
    fail(health, reason="upstream_unreachable")
    assert health.current_state() == OPEN
    assert health.reason == f"{BREAKER_CONSECUTIVE_FAILURES} failures in a row, last: upstream_unreachable"


def test_a_success_breaks_a_run_of_failures(health: OfferHealth) -> None:
    succeed(health, BREAKER_MIN_CALLS)  # keeps the error rate low, so only the run could open it
    fail(health, BREAKER_CONSECUTIVE_FAILURES - 1)
    succeed(health)
    fail(health, BREAKER_CONSECUTIVE_FAILURES - 1)
    assert health.current_state() == CLOSED


def test_an_error_rate_at_the_limit_over_enough_calls_opens_it(health: OfferHealth) -> None:
    failures = math.ceil(BREAKER_ERROR_RATE_PERCENT * BREAKER_MIN_CALLS / 100)
    pattern = spread(BREAKER_MIN_CALLS, failures)
    record_all(health, pattern[:-1])
    assert health.current_state() == CLOSED
    record_all(health, pattern[-1:])
    assert health.current_state() == OPEN and not health.available()
    assert health.reason == f"{failures} of {BREAKER_MIN_CALLS} calls failed in {HEALTH_WINDOW_S:.0f} s, last: {REASON}"


def test_an_error_rate_below_the_limit_keeps_it_closed(health: OfferHealth) -> None:
    calls = 2 * BREAKER_MIN_CALLS
    failures = math.ceil(BREAKER_ERROR_RATE_PERCENT * calls / 100) - 1
    assert failures * 100 < BREAKER_ERROR_RATE_PERCENT * calls
    record_all(health, spread(calls, failures))
    assert health.current_state() == CLOSED


def test_a_high_error_rate_over_too_few_calls_keeps_it_closed(health: OfferHealth) -> None:
    calls = BREAKER_MIN_CALLS - 1
    failures = math.ceil(BREAKER_ERROR_RATE_PERCENT * calls / 100)
    record_all(health, spread(calls, failures))
    assert health.current_state() == CLOSED


def test_outcomes_older_than_the_window_leave_it(health: OfferHealth, clock: FakeClock) -> None:
    pattern = spread(BREAKER_MIN_CALLS, math.ceil(BREAKER_ERROR_RATE_PERCENT * BREAKER_MIN_CALLS / 100))
    record_all(health, pattern[:-2])
    clock.advance(HEALTH_WINDOW_S + EPS_S)
    record_all(health, pattern[-2:])
    assert health.current_state() == CLOSED
    assert health.snapshot()["window_calls"] == 2


def test_outcomes_exactly_one_window_old_still_count(health: OfferHealth, clock: FakeClock) -> None:
    pattern = spread(BREAKER_MIN_CALLS, math.ceil(BREAKER_ERROR_RATE_PERCENT * BREAKER_MIN_CALLS / 100))
    record_all(health, pattern[:-2])
    clock.advance(HEALTH_WINDOW_S)
    record_all(health, pattern[-2:])
    assert health.current_state() == OPEN


def test_the_window_keeps_a_bounded_number_of_outcomes(health: OfferHealth) -> None:
    succeed(health, HEALTH_WINDOW_CALLS_MAX + 7)
    snapshot = health.snapshot()
    assert snapshot["window_calls"] == HEALTH_WINDOW_CALLS_MAX
    assert snapshot["calls_total"] == HEALTH_WINDOW_CALLS_MAX + 7


@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, EPS_S, 1.0, HEALTH_WINDOW_S])), max_size=BREAKER_MIN_CALLS - 1
    )
)
def test_too_few_calls_without_a_long_run_of_failures_never_open_it(calls: list[tuple[bool, float]]) -> None:
    run = longest = 0
    for ok, _ in calls:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    clock = FakeClock()
    health = OfferHealth(OFFER, clock)
    for ok, wait_s in calls:
        clock.advance(wait_s)
        health.record(Outcome(ok=ok, reason="" if ok else REASON))
    assert (health.current_state() == CLOSED) == (longest < BREAKER_CONSECUTIVE_FAILURES)


# --- open and half-open ----------------------------------------------------------------------------------


def test_an_open_breaker_refuses_calls(health: OfferHealth) -> None:
    open_breaker(health)
    assert not health.available()
    assert not health.begin()
    assert health.in_flight == 0
    assert not health.view().available


def test_it_stays_open_for_the_first_wait_then_is_half_open(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)
    assert_open_for(health, clock, BREAKER_OPEN_S)


def test_half_open_lets_exactly_one_trial_through(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    assert health.begin()
    assert health.in_flight == 1
    assert not health.available()
    assert not health.begin()
    assert not health.begin()
    assert health.in_flight == 1
    assert health.current_state() == HALF_OPEN


def close_by_trials(health: OfferHealth) -> None:
    """The trial calls of a half-open breaker, one after the other, all successful."""
    for _ in range(BREAKER_HALF_OPEN_CALLS):
        assert health.begin()
        succeed(health)
        health.finish()


def test_the_trials_one_at_a_time_all_successful_close_the_breaker(health: OfferHealth, clock: FakeClock) -> None:
    assert BREAKER_HALF_OPEN_CALLS >= 2  # a few real calls, not one, decide
    half_open(health, clock)
    for _ in range(BREAKER_HALF_OPEN_CALLS - 1):
        assert health.begin()
        assert not health.begin()  # one trial at a time
        succeed(health)
        health.finish()
        assert health.current_state() == HALF_OPEN
    assert health.begin()  # the last trial
    succeed(health)
    health.finish()
    assert health.current_state() == CLOSED and health.reason == ""
    assert all(health.begin() for _ in range(3))


def test_a_failure_after_successful_trials_reopens_it_for_twice_as_long(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    succeed(health, BREAKER_HALF_OPEN_CALLS - 1)
    fail(health, reason="upstream_timeout")
    assert health.current_state() == OPEN and health.reason == "trial failed: upstream_timeout"
    assert_open_for(health, clock, 2 * BREAKER_OPEN_S)
    succeed(health, BREAKER_HALF_OPEN_CALLS - 1)  # the successes before the failure do not count again
    assert health.current_state() == HALF_OPEN


def test_a_closed_breaker_starts_afresh(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    close_by_trials(health)
    fail(health, BREAKER_CONSECUTIVE_FAILURES - 1)
    assert health.current_state() == CLOSED
    assert health.snapshot()["window_calls"] == BREAKER_CONSECUTIVE_FAILURES - 1


def test_a_failed_trial_reopens_it_for_twice_as_long(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    assert health.begin()
    fail(health, reason="upstream_timeout")
    assert health.current_state() == OPEN
    assert health.reason == "trial failed: upstream_timeout"
    assert_open_for(health, clock, 2 * BREAKER_OPEN_S)


def test_the_wait_doubles_up_to_the_maximum(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)
    wait_s = BREAKER_OPEN_S
    assert_open_for(health, clock, wait_s)
    while wait_s < BREAKER_OPEN_MAX_S:
        fail(health)  # the trial
        wait_s = min(2 * wait_s, BREAKER_OPEN_MAX_S)
        assert_open_for(health, clock, wait_s)
    fail(health)
    assert_open_for(health, clock, BREAKER_OPEN_MAX_S)


def test_closing_resets_the_wait(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    fail(health)
    assert_open_for(health, clock, 2 * BREAKER_OPEN_S)
    close_by_trials(health)
    assert health.current_state() == CLOSED
    open_breaker(health)
    assert_open_for(health, clock, BREAKER_OPEN_S)


def test_a_late_failure_while_open_changes_nothing(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)
    clock.advance(BREAKER_OPEN_S - EPS_S)
    fail(health)  # a call that began before the breaker opened
    clock.advance(EPS_S)
    assert health.current_state() == HALF_OPEN


def test_a_trial_that_ends_without_an_outcome_frees_the_half_open_slot(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    assert health.begin()
    health.finish()  # failover.py does exactly this when the attempt is cancelled (client gone)
    clock.advance(BREAKER_OPEN_MAX_S)
    assert health.available()


def test_a_new_trial_waits_for_a_trial_still_in_flight(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    assert health.begin()  # trial A hangs (the upstream is down)
    health.probed(False)  # a probe fails meanwhile: nothing changes
    health.probed(True)
    clock.advance(BREAKER_OPEN_MAX_S)
    assert health.current_state() == HALF_OPEN
    assert not health.begin()  # trial A has not ended: a second one would run alongside it


# --- probes ---------------------------------------------------------------------------------------------


def test_a_probe_that_kept_succeeding_does_not_shorten_the_open_period(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)  # e.g. an operator that hangs on every call and still lists its models
    for _ in range(5):
        health.probed(True)
    clock.advance(BREAKER_OPEN_S - EPS_S)
    health.probed(True)
    assert health.current_state() == OPEN and not health.available()
    clock.advance(EPS_S)
    assert health.current_state() == HALF_OPEN


def test_a_probe_never_closes_the_breaker(health: OfferHealth, clock: FakeClock) -> None:
    half_open(health, clock)
    for ok in (False, True, True, True):
        health.probed(ok)
        assert health.current_state() == HALF_OPEN
    succeed(health, BREAKER_HALF_OPEN_CALLS - 1)
    health.probed(True)
    assert health.current_state() == HALF_OPEN  # only the last trial call closes it
    succeed(health)
    assert health.current_state() == CLOSED


def test_a_probe_succeeding_after_a_failed_one_moves_open_to_half_open(health: OfferHealth) -> None:
    open_breaker(health)  # e.g. an operator that was unreachable
    health.probed(False)
    assert health.current_state() == OPEN
    health.probed(True)  # it answers again: real calls may try it now
    assert health.current_state() == HALF_OPEN and health.available()
    health.probed(True)
    assert health.current_state() == HALF_OPEN


def test_a_failed_trial_after_the_probes_shortcut_waits_its_whole_period(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)
    health.probed(False)
    health.probed(True)
    fail(health)  # the trial: the operator answers probes but not calls
    health.probed(True)  # no failed probe since the breaker reopened: no shortcut
    assert_open_for(health, clock, 2 * BREAKER_OPEN_S)


def test_a_failed_probe_neither_keeps_it_open_nor_reopens_it(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)  # e.g. an operator serving calls but with no GET /models
    clock.advance(BREAKER_OPEN_S - EPS_S)
    health.probed(False)
    clock.advance(EPS_S)
    assert health.current_state() == HALF_OPEN
    health.probed(False)
    assert health.current_state() == HALF_OPEN and health.available()
    assert health.reason == f"{BREAKER_CONSECUTIVE_FAILURES} failures in a row, last: {REASON}"


@pytest.mark.parametrize("ok", [True, False])
def test_a_probe_leaves_a_closed_breaker_closed(health: OfferHealth, ok: bool) -> None:
    health.probed(ok)
    assert health.current_state() == CLOSED and health.available()


def test_a_probe_failure_while_closed_is_forgotten(health: OfferHealth) -> None:
    health.probed(False)
    open_breaker(health)
    health.probed(True)
    assert health.current_state() == OPEN


# --- Retry-After -----------------------------------------------------------------------------------------


def test_retry_after_keeps_calls_away_until_it_passes(health: OfferHealth, clock: FakeClock) -> None:
    health.record(Outcome(ok=False, reason="HTTP 429", retry_after_s=30.0))
    assert health.current_state() == CLOSED  # one failure: the breaker itself stays closed
    assert not health.available() and not health.begin() and not health.view().available
    assert health.snapshot()["retry_after_s"] == 30.0
    clock.advance(30.0 - EPS_S)
    assert not health.available()
    clock.advance(EPS_S)
    assert health.available() and health.begin()
    assert health.snapshot()["retry_after_s"] == 0.0


def test_retry_after_is_capped(health: OfferHealth, clock: FakeClock) -> None:
    health.record(Outcome(ok=False, reason="HTTP 429", retry_after_s=10 * RETRY_AFTER_MAX_S))
    assert health.snapshot()["retry_after_s"] == RETRY_AFTER_MAX_S
    clock.advance(RETRY_AFTER_MAX_S - EPS_S)
    assert not health.available()
    clock.advance(EPS_S)
    assert health.available()


def test_retry_after_outlasts_the_breaker_wait(health: OfferHealth, clock: FakeClock) -> None:
    fail(health, BREAKER_CONSECUTIVE_FAILURES - 1)
    health.record(Outcome(ok=False, reason="HTTP 503", retry_after_s=4 * BREAKER_OPEN_S))
    clock.advance(BREAKER_OPEN_S)
    assert health.current_state() == HALF_OPEN
    assert not health.available() and not health.begin()
    clock.advance(3 * BREAKER_OPEN_S)
    assert health.available() and health.begin()


@pytest.mark.parametrize("retry_after_s", [None, 0.0, -5.0])
def test_no_retry_after_keeps_the_offer_available(health: OfferHealth, retry_after_s: float | None) -> None:
    health.record(Outcome(ok=False, reason="HTTP 429", retry_after_s=retry_after_s))
    assert health.available()


# --- load and the figures routing sorts by ---------------------------------------------------------------


def test_in_flight_counts_begin_and_finish(health: OfferHealth) -> None:
    assert all(health.begin() for _ in range(3))
    assert health.in_flight == 3
    health.finish()
    assert health.in_flight == 2


def test_in_flight_never_goes_below_zero(health: OfferHealth) -> None:
    health.finish()
    assert health.begin()
    for _ in range(3):
        health.finish()
    assert health.in_flight == 0
    assert health.begin() and health.in_flight == 1


def test_utilization_is_calls_in_flight_over_capacity(health: OfferHealth) -> None:
    assert health.view().utilization == 0.0
    for begun in range(1, CAPACITY + 2):
        assert health.begin()  # capacity is a preference, not a refusal
        assert health.view().utilization == begun / CAPACITY


def test_a_fresh_offer_has_no_latency_or_throughput_figure(health: OfferHealth) -> None:
    view = health.view()
    assert view.available and view.latency_p50_ms == math.inf and view.tokens_per_s == 0.0


def test_latency_is_a_moving_average_of_outcomes(health: OfferHealth) -> None:
    health.record(Outcome(ok=True, latency_ms=100.0))
    assert health.view().latency_p50_ms == 100.0
    health.record(Outcome(ok=False, reason=REASON, latency_ms=200.0))
    health.record(Outcome(ok=True))  # no latency: the figure is unchanged
    assert health.view().latency_p50_ms == pytest.approx(100.0 + EWMA_WEIGHT * 100.0)


def test_throughput_is_a_moving_average_of_finished_calls(health: OfferHealth) -> None:
    health.record_throughput(100, 2.0)
    assert health.view().tokens_per_s == 50.0
    health.record_throughput(0, 1.0)
    health.record_throughput(10, 0.0)
    health.record_throughput(-3, 1.0)
    assert health.view().tokens_per_s == 50.0
    health.record_throughput(300, 2.0)
    assert health.view().tokens_per_s == pytest.approx(50.0 + EWMA_WEIGHT * 100.0)


# --- snapshot --------------------------------------------------------------------------------------------

SNAPSHOT_KEYS = {
    "offer",
    "operator",
    "model",
    "state",
    "reason",
    "window_calls",
    "window_error_rate_percent",
    "latency_p50_ms",
    "latency_p95_ms",
    "tokens_per_s",
    "in_flight",
    "capacity",
    "retry_after_s",
    "calls_total",
    "failures_total",
}


def test_snapshot_of_a_fresh_offer(health: OfferHealth) -> None:
    snapshot = health.snapshot()
    assert set(snapshot) >= SNAPSHOT_KEYS  # admins may be shown more; never less
    assert {key: snapshot[key] for key in SNAPSHOT_KEYS} == {
        "offer": "alpha/m",
        "operator": "alpha",
        "model": "m",
        "state": CLOSED,
        "reason": "",
        "window_calls": 0,
        "window_error_rate_percent": 0.0,
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "tokens_per_s": None,
        "in_flight": 0,
        "capacity": CAPACITY,
        "retry_after_s": 0.0,
        "calls_total": 0,
        "failures_total": 0,
    }


def test_snapshot_counts_and_error_rate(health: OfferHealth) -> None:
    record_all(health, [True, False, True])
    health.record_throughput(123, 1.0)
    assert health.begin()
    snapshot = health.snapshot()
    assert (snapshot["window_calls"], snapshot["window_error_rate_percent"]) == (3, 33.3)
    assert (snapshot["calls_total"], snapshot["failures_total"]) == (3, 1)
    assert (snapshot["in_flight"], snapshot["tokens_per_s"]) == (1, 123.0)


def test_snapshot_latency_percentiles(health: OfferHealth) -> None:
    latencies = [float(ms) for ms in range(1, 102)]
    random.Random(7).shuffle(latencies)
    for ms in latencies:
        health.record(Outcome(ok=True, latency_ms=ms))
    snapshot = health.snapshot()
    assert (snapshot["latency_p50_ms"], snapshot["latency_p95_ms"]) == (51.0, 96.0)


def test_snapshot_of_a_single_latency(health: OfferHealth) -> None:
    health.record(Outcome(ok=True, latency_ms=42.0))
    assert (health.snapshot()["latency_p50_ms"], health.snapshot()["latency_p95_ms"]) == (42.0, 42.0)


def test_snapshot_names_why_the_breaker_is_open(health: OfferHealth, clock: FakeClock) -> None:
    open_breaker(health)
    snapshot = health.snapshot()
    assert snapshot["state"] == OPEN
    assert snapshot["reason"] == f"{BREAKER_CONSECUTIVE_FAILURES} failures in a row, last: {REASON}"
    assert snapshot["window_error_rate_percent"] == 100.0
    clock.advance(BREAKER_OPEN_S)
    assert health.snapshot()["state"] == HALF_OPEN


def test_snapshot_window_forgets_old_outcomes(health: OfferHealth, clock: FakeClock) -> None:
    fail(health, 2)
    clock.advance(HEALTH_WINDOW_S + EPS_S)
    snapshot = health.snapshot()
    assert (snapshot["window_calls"], snapshot["window_error_rate_percent"]) == (0, 0.0)
    assert snapshot["failures_total"] == 2
