"""Chat completions through the gateway: route, admit, call the operators in turn, relay, settle.

The API layer hands over the raw body and gets back a ``ChatAnswer`` to send: a whole JSON body, or an
event stream whose status and headers are known before its first byte. Failover happens only before the
first byte reaches the client (see ``failover.py``); after it, a broken stream ends with an error event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from suanli.catalog import Offer
from suanli.economy.funding import limit_headers
from suanli.errors import BadRequest, PaymentRequired, SuanliError, UpstreamError, UpstreamTimeout
from suanli.gateway.auth import Caller
from suanli.gateway.failover import first_answer
from suanli.gateway.lifecycle import Call, Settlement, admit, settle
from suanli.gateway.platform import Platform
from suanli.gateway.relay import StreamRelay
from suanli.gateway.requests import ChatRequest, parse_chat_request, parse_embedding_request, parse_image_request
from suanli.gateway.routing import parse_preferences, plan_route
from suanli.ledger import names as ledger_names
from suanli.limits import COUNT_ON_LOOP_BYTES_MAX
from suanli.metering import answer_texts, estimate_usage, reported_count, usage_from_openai
from suanli.money import nano_to_cny
from suanli.pricing import TokenUsage
from suanli.pricing.prices import Prices
from suanli.providers.base import UpstreamResponse
from suanli.store.db import now_ms


@dataclass(slots=True)
class ChatAnswer:
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    status: int = 200
    close: Callable[[], None] | None = None  # a stream's release, for the response's ``finally``


MODEL_KIND_ENDPOINTS = {
    "chat": "/v1/chat/completions or /v1/messages",
    "embedding": "/v1/embeddings",
    "image": "/v1/images/generations",
}
ANSWER_LIST_FIELD = {
    "chat": "choices",
    "embedding": "data",
    "image": "data",
}  # what a well-formed answer of each kind holds
AnswerShaper = Callable[[Call, dict[str, Any], TokenUsage, Settlement, bool], bytes]
RelayMaker = Callable[[Platform, Call, UpstreamResponse], StreamRelay]


UsageReader = Callable[[Call, dict[str, Any]], tuple[TokenUsage, bool]]


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Serving a client from an operator that speaks the client's own protocol: the answer goes back as
    it came, with the cost added; only the usage is read."""

    answer_field: str  # the list a well-formed answer holds
    usage: UsageReader  # the reported usage (False), or a local count of it (True: estimated)
    answer: AnswerShaper
    relay: RelayMaker


@dataclass(frozen=True, slots=True)
class Dialect:
    """How answers are shaped for the protocol the client speaks: from an OpenAI-protocol operator's
    answer (``answer``, ``relay``), and from an operator of the client's own protocol (``passthrough``)."""

    protocol: str
    answer: AnswerShaper
    relay: RelayMaker
    passthrough: Passthrough | None = None

    def native(self, call: Call) -> Passthrough | None:
        return self.passthrough if call.upstream_protocol == self.protocol else None


def refuse_unpayable(platform: Platform, caller: Caller, body_bytes: int | None) -> None:
    """Before a large body is read and parsed (tens of milliseconds of the event loop for megabytes of
    JSON): refuse it with 402 if the caller's wallet, on pay-as-you-go, can't pay for even one input token
    at the cheapest price on offer. A flood of large bodies from an empty wallet then costs the loop
    nothing. (Smaller bodies take the usual path, where the reservation refuses them.)"""
    account = caller.account
    if body_bytes is None or body_bytes <= COUNT_ON_LOOP_BYTES_MAX or account.has_plans:
        return
    balance = platform.ledger.balance(ledger_names.wallet(account.id))
    t_ms = now_ms()
    cheapest = min((_cheapest_input(platform.price_clock.prices(o, t_ms)) for o in platform.catalog.offers), default=0)
    if (balance.available if balance else 0) < cheapest:
        raise PaymentRequired(
            "Insufficient balance: the account's available balance pays for no call. Top up. Nothing was charged."
        )


def _cheapest_input(prices: Prices) -> int:
    return min(prices.input_nano, prices.cached_input_nano, prices.cache_write_nano)


async def chat_completion(platform: Platform, caller: Caller, raw_body: bytes, request_id: str) -> ChatAnswer:
    return await run_chat(platform, caller, parse_chat_request(raw_body), request_id, OPENAI)


async def embeddings(platform: Platform, caller: Caller, raw_body: bytes, request_id: str) -> ChatAnswer:
    return await run_chat(platform, caller, parse_embedding_request(raw_body), request_id, OPENAI)


async def images(platform: Platform, caller: Caller, raw_body: bytes, request_id: str) -> ChatAnswer:
    return await run_chat(platform, caller, parse_image_request(raw_body), request_id, OPENAI)


async def run_chat(
    platform: Platform, caller: Caller, request: ChatRequest, request_id: str, dialect: Dialect
) -> ChatAnswer:
    """The one path of every request to an operator, whatever its protocol: route, admit, call, relay, settle."""
    _check_kind(platform, request)
    prefs = parse_preferences(with_account_routing(request.body, caller), request.model)
    now = now_ms()
    plan = plan_route(
        platform.catalog,
        model=request.model,
        tier=caller.account.tier,
        key_models=caller.key.models,
        prefs=prefs,
        state_of=platform.health.state_of,
        serves=_serves(platform, request),
        price_of=lambda offer: platform.price_clock.prices(offer, now),
        kind=request.kind,
    )
    call = await admit(platform, caller, request, request_id, plan)
    try:
        response = await first_answer(platform, call)
        if request.stream:
            headers = _headers(call)
            headers["x-suanli-reserved"] = nano_to_cny(call.reserved_nano)
            native = dialect.native(call)
            relay = (native.relay if native else dialect.relay)(platform, call, response)
            return ChatAnswer(headers, stream=relay.events(), close=relay.close)
        return await _complete(platform, call, response, dialect)
    except BaseException as exc:
        await _release(platform, call, exc)
        raise


def _serves(platform: Platform, request: ChatRequest) -> Callable[[Offer], bool] | None:
    """Operators that speak the client's protocol, or OpenAI's (translated for other clients): an OpenAI
    client is never sent to an Anthropic-only operator."""
    if request.protocol != "openai":
        return None  # every operator speaks OpenAI's protocol or the client's own
    operators = platform.catalog.operators
    return lambda offer: "openai" in operators[offer.operator].endpoints


def _check_kind(platform: Platform, request: ChatRequest) -> None:
    model = platform.catalog.models.get(request.model)
    if model is not None and model.kind != request.kind:
        endpoint = MODEL_KIND_ENDPOINTS[model.kind]
        raise BadRequest(
            f"'{request.model}' is an {model.kind} model; call {endpoint}.", code="wrong_model_kind", param="model"
        )


def with_account_routing(body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """The request's routing fields over the account's defaults, field by field."""
    default = caller.account.routing
    if not default:
        return body
    provider = body.get("provider")
    merged = {**default, **provider} if isinstance(provider, dict) else (provider if provider is not None else default)
    return {"provider": merged, "models": body.get("models")}


def _headers(call: Call) -> dict[str, str]:
    headers = {
        "x-suanli-operator": call.offer.operator,
        "x-suanli-offer": call.offer.id,
        "x-suanli-attempts": str(len(call.attempts)),
        "x-suanli-price-window": call.quote.locked.window_name,  # the time-of-day price the call was locked at
    }
    asked = call.request.max_output_tokens
    if call.request.kind == "chat" and asked is not None and asked > call.offer.max_output_tokens:
        headers["x-suanli-max-tokens-clamped"] = str(call.offer.max_output_tokens)  # what the operator was sent
    if call.funding is not None and call.funding.limits:  # what remains of the plan, for tools to show
        headers.update(limit_headers(call.funding.limits, now_ms()))
    return headers


async def _complete(platform: Platform, call: Call, response: UpstreamResponse, dialect: Dialect) -> ChatAnswer:
    health = platform.health.of(call.offer)
    try:
        raw = await response.read()
    finally:
        health.finish()
    health.record_ttft((time.perf_counter_ns() - call.started_ns) / 1e6)  # the whole answer is the first token
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    native = dialect.native(call)
    field = native.answer_field if native else ANSWER_LIST_FIELD[call.request.kind]
    if not isinstance(data, dict) or not isinstance(data.get(field), list):
        raise UpstreamError(
            f"Operator {call.offer.operator} sent an answer that is not a {call.request.kind} answer.",
            code="upstream_bad_response",
        )
    usage, estimated = native.usage(call, data) if native else _usage_of(call, data)
    settlement = await settle(
        platform, call, usage, estimated=estimated, outcome="ok_estimated" if estimated else "ok", http_status=200
    )
    body = (native.answer if native else dialect.answer)(call, data, usage, settlement, estimated)
    headers = _headers(call)
    headers["x-suanli-cost"] = nano_to_cny(settlement.cost_nano)
    if settlement.balance is not None:
        headers["x-suanli-balance"] = nano_to_cny(settlement.balance.available)
    return ChatAnswer(headers, body=body)


def _usage_of(call: Call, data: dict[str, Any]) -> tuple[TokenUsage, bool]:
    image = call.request.image
    if image is not None:
        # Images are charged at the rate the offer declares for what was delivered; the prompt as reported.
        per_image = call.offer.tokens_per_image(image.size, image.quality) or 0
        reported = data.get("usage")
        prompt = reported_count(reported.get("input_tokens")) if isinstance(reported, dict) else None
        prompt = call.prompt_tokens if prompt is None else prompt
        return TokenUsage(input=prompt, output=min(len(data["data"]), image.count) * per_image), False
    reported = data.get("usage")
    usage = usage_from_openai(reported) if isinstance(reported, dict) else None
    if usage is not None:
        return usage, False
    return estimate_usage(call.prompt_tokens, answer_texts(data)), True


def _openai_answer(
    call: Call, data: dict[str, Any], tokens: TokenUsage, settlement: Settlement, estimated: bool
) -> bytes:
    """The operator's answer as it came, with the cost, the serving operator and the attempts added."""
    usage = data.get("usage")
    if estimated or not isinstance(usage, dict):  # give the client the shape it expects, from the local count
        usage = data["usage"] = {
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": tokens.output,
            "total_tokens": call.prompt_tokens + tokens.output,
        }
    usage["cost"] = nano_to_cny(settlement.cost_nano)
    if estimated:
        usage["estimated"] = True
    data["provider"] = call.offer.operator
    data["attempts"] = len(call.attempts)
    return orjson.dumps(data)


OPENAI = Dialect("openai", answer=_openai_answer, relay=StreamRelay)


async def _release(platform: Platform, call: Call, exc: BaseException) -> None:
    """The call failed before the client got an answer: release the reservation, record why."""
    if not call.open:
        return
    if isinstance(exc, SuanliError):
        outcome = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_error"
        status, code = exc.status, exc.code
    else:
        outcome, status, code = "internal_error", 500, type(exc).__name__
    job = settle(platform, call, TokenUsage(), estimated=False, outcome=outcome, http_status=status, error_code=code)
    if isinstance(exc, asyncio.CancelledError):
        platform.spawn(job)
    else:
        await job
