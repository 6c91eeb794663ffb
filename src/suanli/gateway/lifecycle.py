"""One request's money: quote every offer it may be routed to, reserve once, settle exactly once.

Every endpoint that calls an upstream goes through ``admit`` before it and ``settle`` after it; there is
no other billing code. Admission is one writer job (``economy.funding.reserve_job``): for a pay-as-you-go
account, one pending transfer from the wallet to the platform's escrow, for the most the call can cost
on the dearest offer it may be sent to, so a failover never needs a second reservation; for an account
with plans, budgets or a contract, a reservation on each source in its funding order. The settlement, in
one durable step with the usage event, posts what the call cost at the prices quoted for the offer that
served it (never more than reserved), pays the operator, and releases the rest. Failed attempts cost the
customer nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import orjson

from suanli.catalog import Offer
from suanli.economy.funding import (
    Funding,
    FundingRequest,
    adjust_settlement,
    reserve_job,
    reserve_statement,
    settlement_transfers,
)
from suanli.economy.products import FUNDING_SOURCES
from suanli.errors import BadRequest, invariant
from suanli.gateway.auth import Caller
from suanli.gateway.counting import refuse_early, tokens_at_least
from suanli.gateway.platform import Platform
from suanli.gateway.quoting import input_bound, quote_plan
from suanli.gateway.requests import ChatRequest
from suanli.ledger import Balance
from suanli.ledger import names as ledger_names
from suanli.limits import ROUTE_ATTEMPTS_MAX
from suanli.pricing import Charge, Quote, TokenUsage, charge
from suanli.pricing.prices import Prices
from suanli.store.conn import Conn
from suanli.store.db import now_ms
from suanli.store.deferred import Ordered
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
    funding: Funding  # what was reserved, and where: the wallet, plans, budgets
    offer: Offer  # the offer being tried, then the one that served
    upstream_protocol: str = "openai"  # the protocol spoken to that offer's operator
    attempts: list[Attempt] = field(default_factory=list)
    started_ns: int = field(default_factory=time.perf_counter_ns)
    first_byte_ns: int | None = None
    settling: bool = False  # its settlement is being written
    settled: bool = False  # its settlement committed

    @property
    def open(self) -> bool:
        """Neither settled nor being settled: whoever ends the call must settle it."""
        return not (self.settled or self.settling)

    @property
    def quote(self) -> Quote:
        return self.quotes[self.offer.id]

    @property
    def reserved_nano(self) -> int:
        """What the wallet reserved (nothing when plans fund the whole call)."""
        return self.funding.wallet.amount if self.funding.wallet is not None else 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a settled call cost: the list price of its usage at its quote, less what no balance could pay."""

    cost_nano: int
    prices: Prices  # the per-token prices charged
    balance: Balance | None
    usage: TokenUsage
    uncharged_nano: int = 0


def _quotes(platform: Platform, plan: Sequence[Offer], request: ChatRequest, prompt_tokens: int) -> dict[str, Quote]:
    """Lock every planned offer's prices now (its price version, window and load) and bound the cost."""
    return quote_plan(platform.price_clock, platform.health, plan, request, prompt_tokens=prompt_tokens, t_ms=now_ms())


def _fitting(plan: Sequence[Offer], request: ChatRequest, prompt_tokens: int) -> list[Offer]:
    image = request.image
    if image is not None:
        plan = [o for o in plan if o.tokens_per_image(image.size, image.quality) is not None]
        if not plan:
            raise BadRequest(
                f"No operator of '{request.model}' makes {image.size} images at quality {image.quality or 'auto'}.",
                code="unsupported_image_options",
                param="size",
            )
    fitting = [o for o in plan if input_bound(prompt_tokens, o.input_margin_percent) <= o.context_window_tokens]
    if not fitting:
        raise BadRequest(
            f"The prompt (messages and tool definitions) takes about {prompt_tokens} tokens; the largest context "
            "window on offer is "
            f"{max(o.context_window_tokens for o in plan)}.",
            code="context_length_exceeded",
            param="messages",
        )
    return fitting[:ROUTE_ATTEMPTS_MAX]


async def _count(platform: Platform, caller: Caller, request: ChatRequest, plan: Sequence[Offer]) -> int:
    """The prompt count (gateway/counting.py): a large prompt is first bounded by its length, refused on
    that bound if it can't fit or be paid for, and then counted off the event loop."""
    if platform.counter.is_large(request.body_bytes, request.messages):
        account = caller.account
        wallet = None if account.has_plans else platform.ledger.balance(ledger_names.wallet(account.id))
        t_ms = now_ms()
        prices = {offer.id: platform.price_clock.prices(offer, t_ms) for offer in plan}
        refuse_early(plan, tokens_at_least(request.messages), wallet, prices)
    window_max = max((offer.context_window_tokens for offer in plan), default=None)
    return await platform.counter.count(request.body, request.messages, request.body_bytes, above=window_max)


async def admit(
    platform: Platform, caller: Caller, request: ChatRequest, request_id: str, plan: Sequence[Offer]
) -> Call:
    """Quote the candidates and reserve, in one writer job: for the dearest quote, or if the wallet can't
    cover that, for the first candidate alone, dropping the dearer ones; if not even that, 402 and nothing
    written. An account with plans is funded from them in its order first (economy/funding.py)."""
    platform.admitting()
    prompt_tokens = await _count(platform, caller, request, plan)
    candidates = _fitting(plan, request, prompt_tokens)
    quotes = _quotes(platform, candidates, request, prompt_tokens)
    account = caller.account
    settings = account.funding or {}
    spec = FundingRequest(
        request_id=request_id,
        account_id=account.id,
        key_id=caller.key.id,
        model=request.model,
        now_ms=now_ms(),
        quotes=[(o.id, quotes[o.id].reserved_nano) for o in candidates],
        input_max=max(q.input_tokens_max for q in quotes.values()),
        output_max=max(q.output_tokens_max for q in quotes.values()),
        order=tuple(settings.get("order") or FUNDING_SOURCES),
        fallthrough=bool(settings.get("fallthrough")),
        memo=orjson.dumps({"key": caller.key.id, "model": request.model, "account": account.id}).decode(),
        plans=account.has_plans,
        cached=True,
    )
    job: Callable[[Conn], Funding] = partial(reserve_job, req=spec, products=platform.products, zone=platform.zone)
    if platform.settings.on_postgres:  # one statement, or a job in account order (store/deferred.py)
        wallet = ledger_names.wallet(account.id)
        job = Ordered(job, wallet) if spec.plans else reserve_statement(spec, platform.products, platform.zone)
    funding = await platform.writer.run(job, durable=False, shed=True)  # an admission may be shed, never a settlement
    covered = [o for o in candidates if funding.wallet is None or o.id in funding.covered_offers]
    platform.calls_in_flight += 1
    return Call(request_id, caller, request, covered, quotes, prompt_tokens, funding, covered[0])


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
    step. The call is marked settled only once that step committed; while it runs, a second settlement of
    the call is not started (and the ledger would refuse it). A failed step leaves the call unsettled, for
    its caller to report and the sweep to resolve."""
    invariant(not call.settling and not call.settled, "a call is settled once")
    call.settling = True
    alone = platform.calls_in_flight == 1  # the only call in flight: its settlement needn't wait for a batch
    result = charge(call.quote, usage)
    event = usage_event(
        call, usage, result, estimated=estimated, outcome=outcome, http_status=http_status, error_code=error_code
    )
    try:
        settlement = await _write(platform, call, usage, result, event, alone=alone)
    except asyncio.CancelledError:
        # Cancelled while awaiting the writer: the job is queued and commits without us. The call stays
        # "settling", so nobody settles it again; if the write failed after all, the sweep resolves it.
        raise
    except BaseException:
        call.settling = False
        raise
    finally:
        platform.calls_in_flight -= 1
    call.settling, call.settled = False, True
    return settlement


async def _write(
    platform: Platform, call: Call, usage: TokenUsage, result: Charge, event: UsageEvent, *, alone: bool
) -> Settlement:
    """The settlement's transfers, its usage event and any adjustment, in one writer job; then metrics."""
    settled = settlement_transfers(call.request_id, call.funding, usage, result.list_nano, call.offer.operator)
    account = call.caller.account
    if account.has_plans:
        event = replace(event, funding=orjson.dumps(settled.summary).decode())
    adjust = None
    if settled.overruns or (account.has_plans and settled.wallet_nano):  # the contract is read in the step
        adjust = partial(adjust_settlement, settled=settled, contract=None, zone=platform.zone, lookup_contract=True)
    wallet = ledger_names.wallet(account.id)
    lock = account.id if call.funding.legs else None  # its plans or budgets: serial per account (scaling.md)
    balance, event = await platform.ledger.settle(
        settled.transfers, event, call.attempts, wallet, alone=alone, adjust=adjust, lock_account=lock
    )
    platform.metrics.observe(event, call.attempts)
    if call.first_byte_ns is not None and usage.output + usage.reasoning:
        # A stream's generation runs from its first byte; a whole answer's is hidden inside the wait for it.
        since_ns = call.first_byte_ns if call.request.stream else call.started_ns
        seconds = (time.perf_counter_ns() - since_ns) / 1e9
        platform.health.of(call.offer).record_throughput(usage.output + usage.reasoning, seconds)
    return Settlement(event.cost_nano, result.prices, balance, usage, event.uncharged_nano)


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
        request_id=call.request_id,
        account_id=call.caller.account.id,
        key_id=call.caller.key.id,
        model=call.offer.model,
        operator=call.offer.operator,
        offer_id=call.offer.id,
        upstream_model=call.offer.upstream_model,
        stream=call.request.stream,
        input_tokens=usage.input,
        cached_input_tokens=usage.cached_input,
        output_tokens=usage.output,
        reasoning_tokens=usage.reasoning,
        estimated=estimated,
        price_input_nano=prices.input_nano,
        price_cached_input_nano=prices.cached_input_nano,
        price_output_nano=prices.output_nano,
        price_reasoning_nano=prices.reasoning_nano,
        reserved_nano=call.reserved_nano,
        cost_nano=result.list_nano,
        uncharged_nano=0,
        outcome=outcome,
        http_status=http_status,
        error_code=error_code,
        latency_ms=(now_ns - call.started_ns) // 1_000_000,
        ttft_ms=None if call.first_byte_ns is None else (call.first_byte_ns - call.started_ns) // 1_000_000,
        created_at_ms=now_ms(),
        attempts=len(call.attempts),
        cache_write_tokens=usage.cache_write,
        price_cache_write_nano=prices.cache_write_nano,
        price_window=call.quote.locked.window_name,
    )
