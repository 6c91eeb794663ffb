"""One request's money: quote every offer it may be routed to, reserve once, settle exactly once.

Every endpoint that calls an upstream goes through ``admit`` before it and ``settle`` after it; there is
no other billing code. The reservation is one pending transfer from the customer's wallet to the
platform's escrow, for the most the call can cost on the dearest offer it may be sent to, so a failover
never needs a second reservation. The settlement, in one durable step with the usage event, posts what
the call cost at the prices quoted for the offer that served it (never more than reserved), pays that
from escrow to the operator, and releases the rest. Failed attempts cost the customer nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import orjson

from suanli.catalog import Offer
from suanli.economy import contracts
from suanli.economy.contracts import find_contract
from suanli.economy.funding import Funding, FundingRequest, reserve_job, settlement_transfers
from suanli.economy.products import FUNDING_SOURCES
from suanli.errors import BadRequest, InvariantViolation, PaymentRequired
from suanli.gateway.auth import Caller
from suanli.gateway.platform import Platform
from suanli.gateway.quoting import input_bound, quote_plan
from suanli.gateway.requests import ChatRequest
from suanli.ledger import Balance, LedgerRejected, Rejection, Transfer, entries
from suanli.ledger import names as ledger_names
from suanli.limits import INPUT_ESTIMATE_MARGIN_PERCENT, ROUTE_ATTEMPTS_MAX
from suanli.metering import count_messages
from suanli.money import nano_to_cny
from suanli.pricing import Charge, Quote, TokenUsage, charge
from suanli.store.db import now_ms
from suanli.store.usage import Attempt, UsageEvent


@dataclass(slots=True)
class Call:
    """An admitted request: its candidates with their quotes, the reservation, and what happened."""

    request_id: str
    caller: Caller
    request: ChatRequest
    plan: list[Offer]  # the offers it may be sent to, in order, at most ROUTE_ATTEMPTS_MAX
    quotes: dict[str, Quote]  # by offer id, fixed at admission
    prompt_tokens: int  # the local count, used only where the upstream reports no usage
    reservation: Transfer | None  # the wallet's (None when plans fund the whole request)
    offer: Offer  # the offer being tried, then the one that served
    upstream_protocol: str = "openai"  # the protocol spoken to that offer's operator
    attempts: list[Attempt] = field(default_factory=list)
    started_ns: int = field(default_factory=time.perf_counter_ns)
    first_byte_ns: int | None = None
    settled: bool = False
    funding: Funding | None = None  # how plans and budgets fund it, for an account that has them

    @property
    def quote(self) -> Quote:
        return self.quotes[self.offer.id]

    @property
    def reserved_nano(self) -> int:
        return self.reservation.amount if self.reservation is not None else 0


@dataclass(frozen=True, slots=True)
class Settlement:
    charge: Charge
    balance: Balance | None


def _input_bound(prompt_tokens: int) -> int:
    return prompt_tokens + (prompt_tokens * INPUT_ESTIMATE_MARGIN_PERCENT + 99) // 100


def _quotes(platform: Platform, plan: Sequence[Offer], request: ChatRequest, prompt_tokens: int) -> dict[str, Quote]:
    """Lock every planned offer's prices now (its price version, window and load) and bound the cost."""
    return quote_plan(platform.price_clock, platform.health, plan, request, input_max=input_bound(prompt_tokens),
                      t_ms=now_ms())  # fmt: skip


def _fitting(plan: Sequence[Offer], request: ChatRequest, prompt_tokens: int) -> list[Offer]:
    image = request.image
    if image is not None:
        plan = [o for o in plan if o.tokens_per_image(image.size, image.quality) is not None]
        if not plan:
            raise BadRequest(f"No operator of '{request.model}' makes {image.size} images at quality "
                             f"{image.quality or 'auto'}.", code="unsupported_image_options", param="size")  # fmt: skip
    fitting = [o for o in plan if _input_bound(prompt_tokens) <= o.context_window_tokens]
    if not fitting:
        raise BadRequest(
            f"The messages take about {prompt_tokens} tokens; the largest context window on offer is "
            f"{max(o.context_window_tokens for o in plan)}.",
            code="context_length_exceeded", param="messages",
        )  # fmt: skip
    return fitting[:ROUTE_ATTEMPTS_MAX]


async def admit(
    platform: Platform, caller: Caller, request: ChatRequest, request_id: str, plan: Sequence[Offer]
) -> Call:
    """Quote the candidates and reserve the dearest quote; if the wallet can't cover that, reserve for
    the first candidate alone and drop the dearer ones; if not even that, 402 and nothing written."""
    prompt_tokens = count_messages(request.messages)
    candidates = _fitting(plan, request, prompt_tokens)
    quotes = _quotes(platform, candidates, request, prompt_tokens)
    if caller.account.has_plans:
        return await _admit_funded(platform, caller, request, request_id, candidates=candidates, quotes=quotes,
                                   prompt_tokens=prompt_tokens)  # fmt: skip
    memo = orjson.dumps({"key": caller.key.id, "model": request.model}).decode()
    first = quotes[candidates[0].id].reserved_nano
    for amount in sorted({max(q.reserved_nano for q in quotes.values()), first}, reverse=True):
        reservation = entries.reservation(request_id, caller.account.id, amount, memo)
        try:
            await platform.ledger.submit([reservation], request_id)
        except LedgerRejected as exc:
            if exc.rejection not in (Rejection.EXCEEDS_FLOOR, Rejection.ACCOUNT_NOT_FOUND):
                raise
            continue
        covered = [o for o in candidates if quotes[o.id].reserved_nano <= amount]
        platform.calls_in_flight += 1
        return Call(request_id, caller, request, covered, quotes, prompt_tokens, reservation, covered[0])
    raise _refusal(platform, caller, quotes[candidates[0].id])


async def _admit_funded(
    platform: Platform, caller: Caller, request: ChatRequest, request_id: str, *, candidates: list[Offer],
    quotes: dict[str, Quote], prompt_tokens: int,
) -> Call:  # fmt: skip
    """Admission for an account with plans or budgets: one writer job reserves from every source."""
    settings = caller.account.funding or {}
    spec = FundingRequest(
        request_id=request_id, account_id=caller.account.id, key_id=caller.key.id, model=request.model,
        now_ms=now_ms(), quotes=[(o.id, quotes[o.id].reserved_nano) for o in candidates],
        input_max=max(q.input_tokens_max for q in quotes.values()),
        output_max=max(q.output_tokens_max for q in quotes.values()),
        order=tuple(settings.get("order") or FUNDING_SOURCES), fallthrough=bool(settings.get("fallthrough")),
        memo=orjson.dumps({"key": caller.key.id, "model": request.model, "account": caller.account.id}).decode(),
    )  # fmt: skip
    funding = await platform.writer.run(partial(reserve_job, req=spec, products=platform.products, zone=platform.zone),
                                        durable=False)  # fmt: skip
    covered = [o for o in candidates if funding.wallet is None or o.id in funding.covered_offers]
    platform.calls_in_flight += 1
    call = Call(request_id, caller, request, covered, quotes, prompt_tokens, funding.wallet, covered[0])
    call.funding = funding
    return call


def _refusal(platform: Platform, caller: Caller, q: Quote) -> PaymentRequired:
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
    """Charge ``usage`` at the serving offer's quoted prices and record the usage event, in one durable
    step. A second call for the same request is refused by the ledger."""
    call.settled = True
    alone = platform.calls_in_flight == 1  # the only call in flight: its settlement needn't wait for a batch
    platform.calls_in_flight -= 1
    result = charge(call.quote, usage)
    event = usage_event(call, usage, result, estimated=estimated, outcome=outcome,
                        http_status=http_status, error_code=error_code)  # fmt: skip
    if call.funding is not None:
        settled = settlement_transfers(call.request_id, call.funding, usage, result.cost_nano, call.offer.operator)
        transfers = settled.transfers
        event = replace(event, funding=orjson.dumps(settled.summary).decode())
    elif call.reservation is not None:
        transfers = entries.settlement(call.request_id, call.reservation, call.offer.operator, result.cost_nano)
    else:
        raise InvariantViolation("a call without plans must hold a wallet reservation")
    wallet = ledger_names.wallet(call.caller.account.id)
    contract = find_contract(platform.reader, call.caller.account.id) if call.caller.account.has_plans else None
    if contract is not None:  # postpaid, with volume tiers: the rebate is settled in the same transaction
        job = partial(contracts.settle_job, transfers=transfers, event=event, attempts=call.attempts,
                      contract=contract, zone=platform.zone)  # fmt: skip
        balance = await platform.writer.run(job, alone=alone)
    else:
        balance = await platform.ledger.settle(transfers, event, call.attempts, wallet, alone=alone)
    platform.metrics.observe(event, call.attempts)
    if call.first_byte_ns is not None and usage.output + usage.reasoning:
        # A stream's generation runs from its first byte; a whole answer's is hidden inside the wait for it.
        since_ns = call.first_byte_ns if call.request.stream else call.started_ns
        seconds = (time.perf_counter_ns() - since_ns) / 1e9
        platform.health.of(call.offer).record_throughput(usage.output + usage.reasoning, seconds)
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
    prices = result.prices  # the per-token prices charged: the locked tier the usage's input reached
    return UsageEvent(
        request_id=call.request_id, account_id=call.caller.account.id, key_id=call.caller.key.id,
        model=call.offer.model, operator=call.offer.operator, offer_id=call.offer.id,
        upstream_model=call.offer.upstream_model, stream=call.request.stream,
        input_tokens=usage.input, cached_input_tokens=usage.cached_input, output_tokens=usage.output,
        reasoning_tokens=usage.reasoning, estimated=estimated,
        price_input_nano=prices.input_nano, price_cached_input_nano=prices.cached_input_nano,
        price_output_nano=prices.output_nano, price_reasoning_nano=prices.reasoning_nano,
        reserved_nano=call.reserved_nano, cost_nano=result.cost_nano,
        uncharged_nano=result.uncharged_nano, outcome=outcome, http_status=http_status,
        error_code=error_code, latency_ms=(now_ns - call.started_ns) // 1_000_000,
        ttft_ms=None if call.first_byte_ns is None else (call.first_byte_ns - call.started_ns) // 1_000_000,
        created_at_ms=now_ms(), attempts=len(call.attempts), cache_write_tokens=usage.cache_write,
        price_cache_write_nano=prices.cache_write_nano,
    )  # fmt: skip
