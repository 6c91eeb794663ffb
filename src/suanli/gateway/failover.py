"""Calling the planned offers in turn until one answers: failover before the first byte.

A connection error, a timeout, 429, 408 or a 5xx moves the request to the next offer of its plan, within
``ROUTE_DEADLINE_S`` and at most ``ROUTE_ATTEMPTS_MAX`` attempts (the plan is cut to that length at
admission). An operator's ``Retry-After`` keeps calls away from it until then. Any other 4xx is the
request's own fault, so it goes back to the client at once. Every attempt is recorded: in the offer's
health, and in the usage event's attempt list written with the settlement.

An attempt whose operator's connections all stayed busy (``UpstreamBusy``) never reached the operator:
it moves to the next offer too, but it is no outcome for the operator's health (the limit is the
platform's own); when every attempt ends so, the client gets 503 ``upstream_busy`` with ``retry-after``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from suanli.catalog import Offer, Operator
from suanli.errors import (
    BadRequest,
    ServiceUnavailable,
    SuanliError,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
)
from suanli.gateway.health import OfferHealth, Outcome
from suanli.gateway.lifecycle import Call
from suanli.gateway.platform import Platform
from suanli.gateway.quoting import choice_output_max
from suanli.gateway.sanitize import operator_error
from suanli.limits import ROUTE_DEADLINE_S
from suanli.providers.base import UpstreamResponse
from suanli.store.usage import Attempt

UPSTREAM_PATHS = {
    ("openai", "chat"): "/chat/completions",
    ("openai", "embedding"): "/embeddings",
    ("openai", "image"): "/images/generations",
    ("anthropic", "chat"): "/v1/messages",  # an Anthropic base URL stops before /v1, as its SDK's does
}
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
ROUTING_FIELDS = ("provider", "models")  # the gateway's, never sent on to an operator


def upstream_protocol(platform: Platform, call: Call, offer: Offer) -> str:
    """The client's own protocol where the operator speaks it (a pass-through), else OpenAI's (translated)."""
    protocol = call.request.protocol
    if protocol != "openai" and protocol in platform.catalog.operators[offer.operator].endpoints:
        return protocol
    return "openai"


def upstream_body(call: Call, offer: Offer, protocol: str = "openai") -> bytes:
    """The body for ``offer``'s operator: the client's, with the operator's model name, and the output
    bound the reservation was made for: a ``max_tokens`` above the offer's cap is lowered to it, and a
    request without one gets the cap, so the operator never serves output nobody reserved for."""
    native = call.request.native_body
    output_max = choice_output_max(offer, call.request)
    if protocol != "openai" and native is not None:
        body = {k: v for k, v in native.items() if k not in ROUTING_FIELDS}
        body["model"] = offer.upstream_model
        body["max_tokens"] = output_max
        return orjson.dumps(body)
    body = {k: v for k, v in call.request.body.items() if k not in ROUTING_FIELDS}
    body["model"] = offer.upstream_model
    if call.request.kind == "chat":
        if "max_completion_tokens" in body and body["max_completion_tokens"] is not None:
            body["max_completion_tokens"] = output_max
            body.pop("max_tokens", None)
        else:
            body["max_tokens"] = output_max
    if call.request.stream:  # the gateway always asks for usage; the relay hides it if the client didn't
        options = body.get("stream_options") or {}
        body["stream_options"] = {**options, "include_usage": True}
    return orjson.dumps(body)


async def first_answer(platform: Platform, call: Call) -> UpstreamResponse:
    """The first 200 answer among the plan's offers; raises the reason when none gives one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ROUTE_DEADLINE_S
    failures: list[SuanliError] = []
    for offer in call.plan:
        health = platform.health.of(offer)
        if loop.time() >= deadline or not health.begin():
            continue
        call.offer = offer
        response = await _attempt(platform, call, offer, health, failures)
        if response is not None:
            return response
    raise _exhausted(call, failures)


async def _attempt(
    platform: Platform, call: Call, offer: Offer, health: OfferHealth, failures: list[SuanliError]
) -> UpstreamResponse | None:
    started_ns = time.perf_counter_ns()
    try:
        protocol = call.upstream_protocol = upstream_protocol(platform, call, offer)
        path = UPSTREAM_PATHS[protocol, call.request.kind]
        response = await platform.upstreams[offer.operator, protocol].send(path, upstream_body(call, offer, protocol))
    except UpstreamBusy as exc:
        _record_busy(call, health, offer, started_ns, exc)
        failures.append(exc)
        return None
    except (UpstreamError, UpstreamTimeout) as exc:
        _record(call, health, offer, started_ns, Outcome(ok=False, reason=exc.code), status=0)
        failures.append(exc)
        return None
    except BaseException:
        health.finish()
        raise
    if response.status == 200:
        _record(call, health, offer, started_ns, Outcome(ok=True), status=200, finished=False)
        call.first_byte_ns = time.perf_counter_ns()
        return response
    error = await _upstream_failure(platform.catalog.operators[offer.operator], response)
    if response.status in RETRYABLE_STATUSES:
        outcome = Outcome(ok=False, reason=f"HTTP {response.status}", retry_after_s=_retry_after(response))
        _record(call, health, offer, started_ns, outcome, status=response.status)
        failures.append(error)
        return None
    _record(call, health, offer, started_ns, Outcome(ok=True), status=response.status)  # the operator is fine
    raise error


def _record(
    call: Call,
    health: OfferHealth,
    offer: Offer,
    started_ns: int,
    outcome: Outcome,
    *,
    status: int,
    finished: bool = True,
) -> None:
    latency_ms = (time.perf_counter_ns() - started_ns) / 1e6
    health.record(Outcome(outcome.ok, outcome.reason, latency_ms, outcome.retry_after_s))
    if finished:
        health.finish()
    label = "ok" if outcome.ok and status == 200 else (outcome.reason or f"HTTP {status}")
    call.attempts.append(Attempt(offer.operator, offer.id, label, status, int(latency_ms)))


def _record_busy(call: Call, health: OfferHealth, offer: Offer, started_ns: int, busy: UpstreamBusy) -> None:
    """An attempt that never reached the operator: listed with the request's attempts, but no outcome for
    the operator's health, which it says nothing about."""
    health.finish()
    waited_ms = (time.perf_counter_ns() - started_ns) // 1_000_000
    call.attempts.append(Attempt(offer.operator, offer.id, busy.code, 0, waited_ms))


def _retry_after(response: UpstreamResponse) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from these APIs; the breaker handles such an operator


async def _upstream_failure(op: Operator, response: UpstreamResponse) -> SuanliError:
    """An error answer from the operator, as the client's error: the operator's status, its code and a
    sanitized message (sanitize.py), never its body as it came."""
    try:
        raw = await response.read()
    except SuanliError as exc:
        return exc
    operator, status = op.name, response.status
    if status in (400, 404, 413, 422):
        return BadRequest(_rejection(op, status, raw), code="upstream_rejected")
    if status == 429:
        return UpstreamError(f"Operator {operator} is rate limiting the platform.", code="upstream_rate_limited")
    if status in (408, 504):
        return UpstreamTimeout(f"Operator {operator} timed out (HTTP {status}).")
    return UpstreamError(f"Operator {operator} failed (HTTP {status}).", code="upstream_error")


def _rejection(operator: Operator, status: int, raw: bytes) -> str:
    """'Operator X rejected the request (HTTP 400, its_code): its message', with the message sanitized."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    error = operator_error(data, operator)
    said = f"HTTP {status}, {error.code}" if error.code else f"HTTP {status}"
    return f"Operator {operator.name} rejected the request ({said}): {error.message}"


def _exhausted(call: Call, failures: list[SuanliError]) -> SuanliError:
    if not failures:
        names = ", ".join(sorted({o.operator for o in call.plan}))
        return ServiceUnavailable(
            f"No operator of '{call.request.model}' is healthy right now ({names}); retry shortly.",
            code="no_healthy_offer",
        )
    if len(failures) == 1:
        return failures[0]
    summary = "; ".join(f"{a.operator}: {a.outcome}" for a in call.attempts)
    message = f"All {len(failures)} operators tried failed ({summary})."
    if all(isinstance(f, UpstreamTimeout) for f in failures):
        return UpstreamTimeout(message)
    if all(isinstance(f, UpstreamBusy) for f in failures):
        return UpstreamBusy(message)
    codes = {f.code for f in failures}
    return UpstreamError(message, code=codes.pop() if len(codes) == 1 else "upstream_error")
