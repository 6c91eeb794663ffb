"""Prometheus metrics (``GET /metrics``): requests, tokens by class, cost, latency and time to first
token by operator, model and outcome; upstream attempts; breaker states; refusals by error code.

Every admitted request is observed once, at settlement, from its usage event, so the metrics count what
the ledger counts. The ledger stays the record of money: costs here are for dashboards.

With several workers (``suanli serve --workers N``) the counters and histograms are prometheus-client's
multiprocess values: each worker writes its own to a file in ``PROMETHEUS_MULTIPROC_DIR`` (set by the
parent before the workers start: the library chooses at import), and whichever worker answers
``/metrics`` sums every worker's files, those of workers that died included (so totals never go back).
The health gauges are read from the answering worker's own breakers at scrape time, which the files cannot
hold; there they carry a ``worker`` label (its pid), since each worker keeps its own breakers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from suanli.gateway.health import CLOSED, HALF_OPEN, OPEN, HealthRegistry
from suanli.store.usage import Attempt, UsageEvent

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BREAKER_STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
TOKEN_CLASSES = ("input", "cached_input", "cache_write", "output", "reasoning")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own switch to multiprocess values


class _HealthCollector(Collector):
    """Breaker state, calls in flight and window error rate of every offer, read at scrape time."""

    def __init__(self, health: HealthRegistry, worker: str | None = None) -> None:
        self._health = health
        self._worker = [] if worker is None else [worker]  # one of several workers: its pid, as a label

    def collect(self) -> Iterator[Metric]:
        labels = ["offer", "operator", "model", *(["worker"] if self._worker else [])]
        state = GaugeMetricFamily(
            "suanli_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", labels=labels
        )
        in_flight = GaugeMetricFamily("suanli_offer_in_flight", "Upstream calls in flight", labels=labels)
        errors = GaugeMetricFamily(
            "suanli_offer_error_rate_percent", "Failed calls in the health window", labels=labels
        )
        for view in self._health.snapshot():
            values = [view["offer"], view["operator"], view["model"], *self._worker]
            state.add_metric(values, BREAKER_STATE_VALUE[view["state"]])
            in_flight.add_metric(values, view["in_flight"])
            errors.add_metric(values, view["window_error_rate_percent"])
        yield from (state, in_flight, errors)


@dataclass(frozen=True, slots=True)
class _Children:
    requests: Counter
    latency: Histogram
    ttft: Histogram
    cost: Counter
    tokens: tuple[Counter, ...]


class Metrics:
    def __init__(self, health: HealthRegistry, environ: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry()
        by_call = ["operator", "model", "outcome"]
        self._requests = Counter("suanli_requests", "Requests settled", by_call, registry=self.registry)
        self._tokens = Counter(
            "suanli_tokens", "Tokens settled, by class", ["operator", "model", "token_class"], registry=self.registry
        )
        self._cost = Counter(
            "suanli_cost_nano_cny", "Charged to customers, nano-CNY", ["operator", "model"], registry=self.registry
        )
        self._latency = Histogram(
            "suanli_request_duration_seconds",
            "Request duration in the gateway",
            by_call,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._ttft = Histogram(
            "suanli_time_to_first_token_seconds",
            "Time to the operator's first byte",
            ["operator", "model"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._uncharged = Counter(
            "suanli_uncharged_nano_cny",
            "Usage no customer balance could pay, nano-CNY",
            ["operator", "offer"],
            registry=self.registry,
        )
        self._background_failures = Counter(
            "suanli_background_failures", "Failed runs of a background loop", ["loop"], registry=self.registry
        )
        self._attempts = Counter(
            "suanli_upstream_attempts", "Upstream calls, by outcome", ["operator", "outcome"], registry=self.registry
        )
        self._refused = Counter(
            "suanli_refused_requests",
            "Requests refused before reaching an operator",
            ["status", "code"],
            registry=self.registry,
        )
        self._cache: dict[tuple[str, str, str], _Children] = {}
        self._scraped = self._scraped_registry(health, (os.environ if environ is None else environ))

    def _scraped_registry(self, health: HealthRegistry, environ: Mapping[str, str]) -> CollectorRegistry:
        """What a scrape reads: this registry and the health, or, for one worker of several, every worker's
        counters from their files and this one's health."""
        directory = environ.get(MULTIPROCESS_DIR_ENV)
        if directory is None:
            self.registry.register(_HealthCollector(health))
            return self.registry
        scraped = CollectorRegistry()
        MultiProcessCollector(scraped, path=directory)  # type: ignore[no-untyped-call]
        scraped.register(_HealthCollector(health, worker=str(os.getpid())))
        return scraped

    def _children(self, operator: str, model: str, outcome: str) -> _Children:
        # labels() takes a lock and builds a key on every call; the set of label values is bounded by the
        # catalog, so each combination's children are looked up once and kept.
        key = (operator, model, outcome)
        children = self._cache.get(key)
        if children is None:
            children = self._cache[key] = _Children(
                self._requests.labels(operator, model, outcome),
                self._latency.labels(operator, model, outcome),
                self._ttft.labels(operator, model),
                self._cost.labels(operator, model),
                tuple(self._tokens.labels(operator, model, c) for c in TOKEN_CLASSES),
            )
        return children

    def observe(self, event: UsageEvent, attempts: Sequence[Attempt]) -> None:
        children = self._children(event.operator, event.model, event.outcome)
        children.requests.inc()
        children.latency.observe(event.latency_ms / 1000)
        if event.ttft_ms is not None:
            children.ttft.observe(event.ttft_ms / 1000)
        if event.cost_nano:
            children.cost.inc(event.cost_nano)
        if event.uncharged_nano:  # served, priced, and beyond what the customer's balance could pay
            self._uncharged.labels(event.operator, event.offer_id).inc(event.uncharged_nano)
        counts = (
            event.input_tokens,
            event.cached_input_tokens,
            event.cache_write_tokens,
            event.output_tokens,
            event.reasoning_tokens,
        )
        for child, count in zip(children.tokens, counts, strict=True):
            if count:
                child.inc(count)
        for attempt in attempts:
            self._attempts.labels(attempt.operator, attempt.outcome).inc()

    def background_failed(self, loop: str) -> None:
        self._background_failures.labels(loop).inc()

    def refused(self, status: int, code: str) -> None:
        self._refused.labels(str(status), code).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self._scraped))
