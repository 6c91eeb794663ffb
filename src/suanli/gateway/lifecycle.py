"""One request's money: choose the offer, quote and reserve, then settle exactly once.

Every endpoint that calls an upstream goes through ``admit`` before it and ``settle`` after it; there is
no other billing code. A reservation is a pending ledger transfer for the most the call can cost; the
settlement posts what the call actually cost (never more than reserved) and releases the rest, in the
same durable step that records the usage event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from suanli.catalog import Offer
from suanli.errors import BadRequest, Forbidden, NotFound, PaymentRequired
from suanli.gateway.auth import Caller
from suanli.gateway.platform import Platform
from suanli.gateway.requests import ChatRequest
from suanli.ledger import ASSET_CNY, Balance, Kind, LedgerRejected, Rejection, Transfer
from suanli.ledger import names as ledger_names
from suanli.limits import INPUT_ESTIMATE_MARGIN_PERCENT
from suanli.metering import count_messages
from suanli.money import nano_to_cny
from suanli.pricing import Charge, Quote, TokenUsage, charge, quote
from suanli.store.db import now_ms
from suanli.store.usage import UsageEvent


@dataclass(slots=True)
class Call:
    """An admitted request: what was reserved for it, and against which offer."""

    request_id: str
    caller: Caller
    request: ChatRequest
    offer: Offer
    quote: Quote
    prompt_tokens: int  # the local count, used only where the upstream reports no usage
    reservation: Transfer
    started_ns: int = field(default_factory=time.perf_counter_ns)
    first_byte_ns: int | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    charge: Charge
    balance: Balance | None


def choose_offer(platform: Platform, caller: Caller, model: str) -> Offer:
    """The cheapest offer of the model that the caller's tier may buy (routing grows in a later issue)."""
    if caller.key.models is not None and model not in caller.key.models:
        raise Forbidden(f"This API key may not use the model '{model}'.", param="model")
    offers = platform.catalog.offers_for(model)
    if not offers:
        raise NotFound(f"The model '{model}' does not exist.", code="model_not_found", param="model")
    allowed = [offer for offer in offers if caller.account.tier in offer.tiers]
    if not allowed:
        raise Forbidden(
            f"The model '{model}' is not offered to {caller.account.tier} accounts.",
            code="model_not_offered_to_tier",
            param="model",
        )
    return min(allowed, key=lambda o: (o.prices.input_nano + o.prices.output_nano, o.id))


def _input_bound(prompt_tokens: int) -> int:
    return prompt_tokens + (prompt_tokens * INPUT_ESTIMATE_MARGIN_PERCENT + 99) // 100


async def admit(platform: Platform, caller: Caller, request: ChatRequest, request_id: str) -> Call:
    offer = choose_offer(platform, caller, request.model)
    prompt_tokens = count_messages(request.messages)
    input_max = _input_bound(prompt_tokens)
    if input_max > offer.context_window_tokens:
        raise BadRequest(
            f"The messages take about {prompt_tokens} tokens; the model's context window is "
            f"{offer.context_window_tokens}.",
            code="context_length_exceeded",
            param="messages",
        )
    output_max = min(request.max_output_tokens or offer.max_output_tokens, offer.max_output_tokens)
    q = quote(offer, input_max, output_max)
    reservation = Transfer(
        id=f"{request_id}.reserve",
        kind=Kind.PENDING,
        debit_account=ledger_names.wallet(caller.account.id),
        credit_account=ledger_names.sales(offer.operator),
        asset=ASSET_CNY,
        amount=q.reserved_nano,
        memo=orjson.dumps({"key": caller.key.id, "model": request.model, "offer": offer.id}).decode(),
    )
    try:
        await platform.ledger.submit([reservation], request_id)
    except LedgerRejected as exc:
        raise _refusal(platform, caller, q, exc) from None
    return Call(request_id, caller, request, offer, q, prompt_tokens, reservation)


def _refusal(platform: Platform, caller: Caller, q: Quote, exc: LedgerRejected) -> PaymentRequired:
    if exc.rejection not in (Rejection.EXCEEDS_FLOOR, Rejection.ACCOUNT_NOT_FOUND):
        raise exc
    balance = platform.ledger.balance(ledger_names.wallet(caller.account.id))
    available = balance.available if balance else 0
    return PaymentRequired(
        f"Insufficient balance: this request may cost up to ¥{nano_to_cny(q.reserved_nano)} "
        f"({q.input_tokens_max} input and {q.output_tokens_max} output tokens at most) and the account "
        f"has ¥{nano_to_cny(available)} available. Top up, or lower max_tokens. Nothing was charged."
    )


async def settle(
    platform: Platform,
    call: Call,
    usage: TokenUsage,
    *,
    estimated: bool,
    outcome: str,
    http_status: int,
    error_code: str = "",
) -> Settlement:
    """Post what ``usage`` costs at the quoted prices (or void when it costs nothing) and record the
    usage event, in one durable step. A second call for the same request is refused by the ledger."""
    call.settled = True
    result = charge(call.quote, usage)
    pending = call.reservation
    if result.cost_nano > 0:
        resolution = Transfer(f"{call.request_id}.settle", Kind.POST, pending.debit_account,
                              pending.credit_account, ASSET_CNY, result.cost_nano, pending.id)  # fmt: skip
    else:
        resolution = Transfer(f"{call.request_id}.settle", Kind.VOID, pending.debit_account,
                              pending.credit_account, ASSET_CNY, 0, pending.id)  # fmt: skip
    event = usage_event(call, usage, result, estimated=estimated, outcome=outcome,
                        http_status=http_status, error_code=error_code)  # fmt: skip
    balance = await platform.ledger.settle([resolution], event, pending.debit_account)
    return Settlement(result, balance)


def usage_event(
    call: Call,
    usage: TokenUsage,
    result: Charge,
    *,
    estimated: bool,
    outcome: str,
    http_status: int,
    error_code: str,
) -> UsageEvent:
    now_ns = time.perf_counter_ns()
    prices = call.quote.prices
    return UsageEvent(
        request_id=call.request_id, account_id=call.caller.account.id, key_id=call.caller.key.id,
        model=call.request.model, operator=call.offer.operator, offer_id=call.offer.id,
        upstream_model=call.offer.upstream_model, stream=call.request.stream,
        input_tokens=usage.input, cached_input_tokens=usage.cached_input, output_tokens=usage.output,
        reasoning_tokens=usage.reasoning, estimated=estimated,
        price_input_nano=prices.input_nano, price_cached_input_nano=prices.cached_input_nano,
        price_output_nano=prices.output_nano, price_reasoning_nano=prices.reasoning_nano,
        reserved_nano=call.quote.reserved_nano, cost_nano=result.cost_nano,
        uncharged_nano=result.uncharged_nano, outcome=outcome, http_status=http_status,
        error_code=error_code, latency_ms=(now_ns - call.started_ns) // 1_000_000,
        ttft_ms=None if call.first_byte_ns is None else (call.first_byte_ns - call.started_ns) // 1_000_000,
        created_at_ms=now_ms(),
    )  # fmt: skip
