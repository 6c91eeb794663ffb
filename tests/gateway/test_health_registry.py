"""The registry of every offer's breaker, and a state machine: half-open never runs two trials at once,
and a probe never closes a breaker."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from suanli.gateway.health import CLOSED, HALF_OPEN, OPEN, HealthRegistry, OfferHealth, Outcome
from suanli.gateway.quoting import utilisation_permille
from suanli.limits import BREAKER_HALF_OPEN_CALLS, BREAKER_OPEN_MAX_S, BREAKER_OPEN_S
from tests.gateway.breaker import CAPACITY, EPS_S, OFFER, REASON, FakeClock, fail, make_offers, open_breaker

# --- the registry ----------------------------------------------------------------------------------------

ALPHA_M, ALPHA_G, BETA_M = make_offers(("alpha", "m"), ("alpha", "g"), ("beta", "m"))


@pytest.fixture
def registry(clock: FakeClock) -> HealthRegistry:
    return HealthRegistry([ALPHA_M, ALPHA_G, BETA_M], clock)


def test_no_operator_to_probe_while_every_breaker_is_closed(registry: HealthRegistry) -> None:
    fail(registry.of(ALPHA_M))
    assert registry.operators_to_probe() == set()


def test_operators_with_a_breaker_not_closed_are_probed(registry: HealthRegistry, clock: FakeClock) -> None:
    open_breaker(registry.of(ALPHA_M))
    assert registry.operators_to_probe() == {"alpha"}
    clock.advance(BREAKER_OPEN_S)  # half-open is not closed either
    assert registry.operators_to_probe() == {"alpha"}
    open_breaker(registry.of(BETA_M))
    assert registry.operators_to_probe() == {"alpha", "beta"}


def test_a_probe_affects_only_that_operators_offers(registry: HealthRegistry) -> None:
    open_breaker(registry.of(ALPHA_M))
    open_breaker(registry.of(BETA_M))
    registry.probed("alpha", False)
    registry.probed("beta", True)  # beta never failed a probe: its success is no news
    registry.probed("alpha", True)
    states = {o.id: registry.of(o).current_state() for o in (ALPHA_M, ALPHA_G, BETA_M)}
    assert states == {ALPHA_M.id: HALF_OPEN, ALPHA_G.id: CLOSED, BETA_M.id: OPEN}
    registry.probed("alpha", True)
    assert registry.operators_to_probe() == {"alpha", "beta"}  # half-open until real calls close it


def test_the_registry_shows_each_offers_state(registry: HealthRegistry) -> None:
    open_breaker(registry.of(BETA_M))
    assert registry.of(ALPHA_M).begin()
    assert registry.state_of(ALPHA_M).utilization == 1 / CAPACITY
    assert not registry.state_of(BETA_M).available
    snapshots = {s["offer"]: s for s in registry.snapshot()}
    assert set(snapshots) == {ALPHA_M.id, ALPHA_G.id, BETA_M.id}
    assert (snapshots[ALPHA_M.id]["in_flight"], snapshots[BETA_M.id]["state"]) == (1, OPEN)


# --- half-open never runs two trials at once; a probe never closes a breaker ------------------------------


class BreakerMachine(RuleBasedStateMachine):
    """Calls begin, end with an outcome (or are cancelled), probes answer and time passes, in any order; the
    breaker must never let a second trial through while one is out, never close but on a successful call,
    and its counts must add up."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.health = OfferHealth(OFFER, self.clock)
        self.calls = 0  # begun and not finished
        self.trial_out = False  # a trial call began in this half-open period and has no outcome yet
        self.trial_successes = 0  # successes recorded in this half-open period

    @rule()
    def begin(self) -> None:
        was_half_open = self.health.current_state() == HALF_OPEN
        if self.health.begin():
            self.calls += 1
            if was_half_open:
                assert not self.trial_out, "a second trial began while one was out"
                self.trial_out = True

    def _record(self, outcome: Outcome) -> None:
        before = self.health.current_state()
        self.health.record(outcome)
        after = self.health.current_state()
        if before == HALF_OPEN:
            self.trial_out = False
            self.trial_successes = self.trial_successes + 1 if outcome.ok else 0
            if after == CLOSED:
                assert self.trial_successes == BREAKER_HALF_OPEN_CALLS
        if after == CLOSED and before != CLOSED:
            assert outcome.ok and before == HALF_OPEN

    @precondition(lambda self: self.calls > 0)
    @rule(ok=st.booleans(), retry_after_s=st.none() | st.sampled_from([1.0, 2 * BREAKER_OPEN_S]))
    def end_call(self, ok: bool, retry_after_s: float | None) -> None:
        self._record(Outcome(ok=ok, reason="" if ok else REASON, latency_ms=5.0, retry_after_s=retry_after_s))
        self.health.finish()
        self.calls -= 1

    @precondition(lambda self: self.calls > 0)
    @rule()
    def cancel_call(self) -> None:
        self.health.finish()
        self.calls -= 1
        if self.calls == 0:
            self.trial_out = False  # the trial ended without an outcome (its client went away): the slot is free

    @rule(ok=st.booleans())
    def probe(self, ok: bool) -> None:
        before = self.health.current_state()
        self.health.probed(ok)
        after = self.health.current_state()
        assert after == before or (ok and (before, after) == (OPEN, HALF_OPEN)), (before, after)

    @rule(ok=st.booleans())
    def late_outcome(self, ok: bool) -> None:
        """An outcome recorded for a call whose finish() is not modelled (e.g. a stream's end)."""
        self._record(Outcome(ok=ok, reason="" if ok else REASON))

    @rule(seconds=st.sampled_from([EPS_S, 1.0, BREAKER_OPEN_S, 2 * BREAKER_OPEN_S, BREAKER_OPEN_MAX_S]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def states_are_known(self) -> None:
        state = self.health.current_state()
        assert state in (CLOSED, OPEN, HALF_OPEN)
        if state != HALF_OPEN:
            self.trial_out, self.trial_successes = False, 0

    @invariant()
    def an_open_breaker_is_unavailable(self) -> None:
        if self.health.current_state() == OPEN:
            assert not self.health.available()

    @invariant()
    def in_flight_counts_the_calls(self) -> None:
        assert self.health.in_flight == self.calls


BreakerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_breaker_state_machine = BreakerMachine.TestCase


def test_with_n_live_workers_each_sees_its_share_of_an_offers_capacity(registry: HealthRegistry) -> None:
    """On one PostgreSQL database N workers share each offer's capacity; each counts only its own calls,
    so each measures them against 1/N of it (docs/scaling.md), for routing and the load surcharge alike."""
    health = registry.of(ALPHA_M)
    health.in_flight = 1
    alone = (health.view().utilization, utilisation_permille(registry, ALPHA_M))
    registry.workers = 2
    shared = (health.view().utilization, utilisation_permille(registry, ALPHA_M))
    assert shared == (2 * alone[0], 2 * alone[1])
    registry.workers = 0  # no lease seen yet: as if alone
    assert (health.view().utilization, utilisation_permille(registry, ALPHA_M)) == alone
