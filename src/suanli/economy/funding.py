"""Funding one request: budgets first, then the account's sources in its order (subscription allowance →
packs → wallet by default), reserved in one writer job; settled by returning what wasn't used.

**Reserve** (``reserve_job``, on the writer's connection, so no other request interleaves):
1. every budget on the account or the key reserves the request's most (CNY at the dearest quote, or
   tokens); a budget that can't cover it refuses the request (429, reset at the period's end);
2. the subscription, if its product covers the model, reserves one request (or the most tokens) in each
   allowance window; if any window is spent, the request is refused (429, reset at that window's end)
   unless the account opted to fall through to its other sources;
3. packs that cover the model, soonest-expiring first: each reserves what is left of the request's most
   draw at its product's weights, as far as its tokens go; the share of the request a pack reserved is
   taken off what the next source must cover;
4. the wallet reserves the share left at the quoted price (the dearest candidate's; if it can't, the
   first candidate's; if not even that, 402).
A refusal rolls back everything the job reserved. Every reservation is a pending ledger transfer, so
start-up recovery resolves them like any other.

**Settle** (``settlement_transfers``, pure): walking the legs in the same order with the actual usage,
each pack posts what the usage draws for the share still uncovered (never more than it reserved), the
wallet posts its share of the cost (never more than it reserved), the rest is voided back to where it
came from; the platform's plan account pays the operator for the part funded by plans, so the operator
is paid the full cost at the quoted prices whatever funded it. Fractions are exact (``Fraction`` of
integers); every amount charged is rounded down to a whole token or nano-CNY (the customer's favour),
every amount reserved up. A share the reservations did not cover (an operator that counted more than
the bound) is charged from the same sources' available balances in the same transaction
(``charge_overruns``); only what they cannot pay is absorbed by the platform, and recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fractions import Fraction
from functools import partial
from typing import Any, cast
from zoneinfo import ZoneInfo

import orjson

from suanli.economy import contracts, names, windows
from suanli.economy import store as econ
from suanli.economy.contracts import Contract
from suanli.economy.market import renew_if_due
from suanli.economy.products import FUNDING_SOURCES, Allowance, Product, Weights
from suanli.errors import PaymentRequired, RateLimited
from suanli.ledger import ASSET_CNY, Kind, LedgerRejected, Rejection, Transfer, entries, postgres
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, apply_if_covered, read_balance
from suanli.money import nano_to_cny
from suanli.pricing import TokenUsage
from suanli.store import cluster
from suanli.store.conn import Conn
from suanli.store.deferred import FALLBACK, Deferred
from suanli.store.usage import UsageEvent

DEFAULT_ORDER = FUNDING_SOURCES


@dataclass(frozen=True, slots=True)
class Limit:
    """One allowance or budget window as a response's rate-limit headers report it."""

    name: str  # "5h", "week", "month", or "budget:day" ...
    unit: str  # requests | tokens | cny
    limit: int
    remaining: int
    reset_ms: int


@dataclass(frozen=True, slots=True)
class Leg:
    source: str  # budget | allowance | pack | wallet
    reservation: Transfer
    unit: str = ""  # allowance/budget: requests | tokens | cny
    weights: Weights | None = None  # a pack's
    max_draw: int = 0  # a pack: the request's most draw at its weights


@dataclass(slots=True)
class Funding:
    legs: list[Leg] = field(default_factory=list)
    wallet: Transfer | None = None
    wallet_share: Fraction = Fraction(1)  # the share of the request the wallet reserved for
    covered_offers: tuple[str, ...] = ()  # offer ids whose quote the wallet's reservation covers
    limits: list[Limit] = field(default_factory=list)

    @property
    def plan_funded(self) -> bool:
        return any(leg.source in ("allowance", "pack") for leg in self.legs)


@dataclass(frozen=True, slots=True)
class FundingRequest:
    request_id: str
    account_id: str
    key_id: str
    model: str
    now_ms: int
    quotes: Sequence[tuple[str, int]]  # (offer id, reserved nano-CNY) in plan order
    input_max: int
    output_max: int
    order: Sequence[str] = DEFAULT_ORDER
    fallthrough: bool = False  # a spent allowance falls through to packs and wallet
    memo: str = ""
    plans: bool = True  # False: the account has no plans, budgets or contract, so the wallet alone pays
    cached: bool = False  # plans, order and fallthrough come from a cache that another worker may have outdated


def _reserve(conn: Conn, transfer: Transfer, request_id: str) -> bool:
    """Apply a reservation; False, with nothing written, if its account can't cover it."""
    return apply_if_covered(conn, [transfer], request_id)


def _pending(transfer_id: str, debit: str, asset: str, amount: int, memo: str) -> Transfer:
    """A reservation on a limit or a pack, towards the asset's spent account."""
    return Transfer(transfer_id, Kind.PENDING, debit, names.spent(asset), asset, amount, memo=memo)


def _reset_headers(limit: Limit, now_ms: int) -> dict[str, str]:
    seconds = max(1, -(-(limit.reset_ms - now_ms) // 1000))
    return {"retry-after": str(seconds), **limit_headers([limit], now_ms), "x-suanli-reset": _iso(limit.reset_ms)}


def limit_headers(limits: Sequence[Limit], now_ms: int) -> dict[str, str]:
    """Rate-limit headers in both protocols' styles, for the tightest window of each unit."""
    headers: dict[str, str] = {}
    for unit, openai_unit in (("requests", "requests"), ("tokens", "tokens")):
        of_unit = [limit for limit in limits if limit.unit == unit]
        if not of_unit:
            continue
        tightest = min(of_unit, key=lambda limit: (limit.remaining, limit.reset_ms))
        seconds = max(0, -(-(tightest.reset_ms - now_ms) // 1000))
        reset = _iso(tightest.reset_ms)
        headers[f"x-ratelimit-limit-{openai_unit}"] = str(tightest.limit)
        headers[f"x-ratelimit-remaining-{openai_unit}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{openai_unit}"] = f"{seconds}s"
        headers[f"anthropic-ratelimit-{unit}-limit"] = str(tightest.limit)
        headers[f"anthropic-ratelimit-{unit}-remaining"] = str(tightest.remaining)
        headers[f"anthropic-ratelimit-{unit}-reset"] = reset
    return headers


def reserve_job(conn: Conn, req: FundingRequest, products: Mapping[str, Product], zone: ZoneInfo) -> Funding:
    funding = Funding()
    if req.cached and cluster.on_postgres(conn):  # another worker may have changed the account since
        req = _current_terms(conn, req)
    if not req.plans:  # pay-as-you-go: no look-ups, the wallet's reservation alone
        _reserve_wallet(conn, req, funding, Fraction(1))
        return funding
    # Windows are read then opened, grants read then made: on PostgreSQL the account's lock makes that serial.
    cluster.serialize(conn, cluster.account_lock(req.account_id))
    dearest = max(amount for _, amount in req.quotes)
    _reserve_budgets(conn, req, funding, dearest, zone)
    share = Fraction(1)
    for source in req.order:
        if share == 0:
            break
        if source == "subscription":
            if _reserve_allowances(conn, req, funding, products, zone):
                share = Fraction(0)
        elif source == "packs":
            share = _reserve_packs(conn, req, funding, products, share)
        elif source == "wallet":
            _reserve_wallet(conn, req, funding, share)
            share = Fraction(0)
    if share > 0:
        raise PaymentRequired(
            "The account's plans cannot cover this request and its funding order leaves out the wallet. "
            "Nothing was charged.",
            code="not_covered_by_plans",
        )
    return funding


def reserve_statement(req: FundingRequest, products: Mapping[str, Product], zone: ZoneInfo) -> Deferred[Funding]:
    """``reserve_job`` for a pay-as-you-go account as one statement (PostgreSQL, store/deferred.py): the
    wallet's reservation at the dearest quote. Anything else (the account took up plans since it was
    cached, or its wallet can't cover the dearest quote) runs the job itself, in the same batch."""
    dearest = max(amount for _, amount in req.quotes)
    transfer = entries.reservation(req.request_id, req.account_id, dearest, req.memo)

    def finish(row: Any) -> Funding:
        if row[0]:
            return cast(Funding, FALLBACK)
        return Funding(wallet=transfer, covered_offers=tuple(offer for offer, _ in req.quotes))

    job = partial(reserve_job, req=req, products=products, zone=zone)
    statement = postgres.reserve_statement(req.account_id, req.cached, transfer)
    return Deferred(job, statement, finish, ledger_names.wallet(req.account_id))


def _current_terms(conn: Conn, req: FundingRequest) -> FundingRequest:
    """The request with the account's plans flag and funding order as stored now, not as cached."""
    row = conn.execute("SELECT has_plans, funding FROM accounts WHERE id = ?", (req.account_id,)).fetchone()
    if row is None:
        return req
    settings = orjson.loads(row[1]) if row[1] else {}
    order = tuple(settings.get("order") or DEFAULT_ORDER)
    return replace(req, plans=bool(row[0]), order=order, fallthrough=bool(settings.get("fallthrough")))


def _reserve_budgets(conn: Conn, req: FundingRequest, funding: Funding, dearest: int, zone: ZoneInfo) -> None:
    for budget in econ.active_budgets(conn, req.account_id, req.key_id):
        start, end = _budget_period(budget.period, req.now_ms, zone)
        account, asset = names.budget(budget.id, start), names.BUDGET_ASSETS[budget.unit]
        econ.grant(conn, account, asset, budget.amount)
        amount = dearest if budget.unit == "cny" else req.input_max + req.output_max
        transfer = _pending(f"{req.request_id}.budget.{budget.id}", account, asset, amount, req.memo)
        balance = read_balance(conn, account)
        remaining = balance.available if balance else 0
        limit = Limit(f"budget:{budget.period}", budget.unit, budget.amount, remaining, end)
        if not _reserve(conn, transfer, req.request_id):
            scope = "key" if budget.key_id else "account"
            raise RateLimited(
                f"The {scope}'s {budget.period}ly budget is spent until {_iso(end)}: this request may use "
                f"{_amount(budget.unit, amount)} and {_amount(budget.unit, remaining)} is left. Nothing was charged.",
                code="budget_exhausted",
                headers=_reset_headers(limit, req.now_ms),
            )
        funding.legs.append(Leg("budget", transfer, unit=budget.unit))
        funding.limits.append(Limit(limit.name, limit.unit, limit.limit, remaining - amount, end))


def _budget_period(period: str, now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    if period == "day":
        return windows.day(now_ms, zone)
    if period == "week":
        return windows.week(now_ms, zone)
    return windows.calendar_month(now_ms, zone)


def _reserve_allowances(
    conn: Conn, req: FundingRequest, funding: Funding, products: Mapping[str, Product], zone: ZoneInfo
) -> bool:
    """Reserve in every window of the subscription; False if there is none for this model, or a spent
    window falls through."""
    sub = econ.current_subscription(conn, req.account_id)
    product = products.get(sub.product_id) if sub else None
    if sub is None or product is None or not product.covers(req.model):
        return False
    sub = renew_if_due(conn, sub, product, req.now_ms, zone)
    if sub is None:
        return False  # lapsed: the wallet could not pay the next month
    conn.execute("SAVEPOINT allowances")
    legs: list[Leg] = []
    limits: list[Limit] = []
    for allowance in product.allowances:
        account, end = _window(conn, sub, allowance, req.now_ms, zone)
        asset = names.allowance_asset(allowance.unit)
        amount = 1 if allowance.unit == "requests" else req.input_max + req.output_max
        transfer = _pending(
            f"{req.request_id}.allow.{allowance.window}.{allowance.unit}", account, asset, amount, req.memo
        )
        balance = read_balance(conn, account)
        remaining = balance.available if balance else 0
        granted = balance.credits_posted if balance else allowance.amount
        if not _reserve(conn, transfer, req.request_id):
            conn.execute("ROLLBACK TO allowances")
            conn.execute("RELEASE allowances")
            if req.fallthrough:
                return False
            limit = Limit(allowance.window, allowance.unit, granted, remaining, end)
            raise RateLimited(
                f"The {product.title} allowance of {granted} {allowance.unit} per {_window_name(allowance.window)} "
                f"is spent; it resets at {_iso(end)}. Nothing was charged.",
                headers=_reset_headers(limit, req.now_ms),
            )
        legs.append(Leg("allowance", transfer, unit=allowance.unit))
        limits.append(Limit(allowance.window, allowance.unit, granted, remaining - amount, end))
    conn.execute("RELEASE allowances")
    funding.legs.extend(legs)
    funding.limits.extend(limits)
    return True


def _window_name(window: str) -> str:
    return {"5h": "5 hours", "week": "week", "month": "month"}[window]


def _window(conn: Conn, sub: econ.Subscription, allowance: Allowance, now_ms: int, zone: ZoneInfo) -> tuple[str, int]:
    """The ledger account and end of the window of ``allowance`` open at ``now_ms``, opened (and granted)
    if it is new."""
    if allowance.window == "5h":
        last = econ.last_window(conn, sub.id, allowance.window, allowance.unit)
        start, end = windows.rolling(last[1] if last else None, last[0] if last else None, now_ms)
    elif allowance.window == "week":
        start, end = windows.week(now_ms, zone)
    else:
        start, end = sub.period_start_ms, sub.period_end_ms
    account = econ.open_window(
        conn, sub.id, allowance.window, allowance.unit, start_ms=start, end_ms=end, amount=allowance.amount
    )
    return account, end


def _reserve_packs(
    conn: Conn,
    req: FundingRequest,
    funding: Funding,
    products: Mapping[str, Product],
    share: Fraction,
) -> Fraction:
    for pack in econ.usable_packs(conn, req.account_id, req.now_ms):
        product = products.get(pack.product_id)
        if product is None or not product.covers(req.model):
            continue
        available, _ = econ.pack_remaining(conn, pack)
        most = product.weights.draw_max(req.input_max, req.output_max)
        if available <= 0 or most <= 0:
            continue
        amount = min(available, _share(most, share))
        asset = names.pack_asset(product.id)
        transfer = _pending(f"{req.request_id}.pack.{pack.id}", names.pack(pack.id), asset, amount, req.memo)
        if not _reserve(conn, transfer, req.request_id):
            continue
        funding.legs.append(Leg("pack", transfer, weights=product.weights, max_draw=most))
        share -= Fraction(amount, most)
        if share <= 0:
            return Fraction(0)
    return share


def _reserve_wallet(conn: Conn, req: FundingRequest, funding: Funding, share: Fraction) -> None:
    """The wallet's share at the dearest candidate's quote; failing that, at the first's (dropping the
    dearer candidates); failing that, 402 and everything reserved is rolled back."""
    first = req.quotes[0][1]
    prices = sorted({max(amount for _, amount in req.quotes), first}, reverse=True)
    for index, price in enumerate(prices):
        amount = _share(price, share)
        transfer = entries.reservation(req.request_id, req.account_id, amount, req.memo)
        last = index == len(prices) - 1
        try:  # a refused last try fails the job, which undoes it; an earlier one is undone by its savepoint
            covered = apply_if_covered(conn, [transfer], req.request_id) if not last else _apply(conn, transfer, req)
        except LedgerRejected as exc:
            if exc.rejection is not Rejection.ACCOUNT_NOT_FOUND:
                raise
            covered = False
        if covered:
            funding.wallet, funding.wallet_share = transfer, share
            funding.covered_offers = tuple(o for o, q in req.quotes if _share(q, share) <= amount)
            return
    balance = read_balance(conn, ledger_names.wallet(req.account_id))
    part = "this request" if share == 1 else "the wallet's share of this request"
    raise PaymentRequired(
        f"Insufficient balance: {part} may cost up to ¥{nano_to_cny(_share(first, share))} ({req.input_max} input "
        f"and {req.output_max} output tokens at most) and the account has "
        f"¥{nano_to_cny(balance.available if balance else 0)} available. Top up, or lower max_tokens. "
        "Nothing was charged."
    )


def _apply(conn: Conn, transfer: Transfer, req: FundingRequest) -> bool:
    """Apply a reservation with no savepoint of its own: False if refused for the floor (the caller then
    fails the whole job, whose own rollback removes what the refused entry wrote)."""
    try:
        apply_entry(conn, [transfer], req.request_id)
    except LedgerRejected as exc:
        if exc.rejection is Rejection.EXCEEDS_FLOOR:
            return False
        raise
    return True


def _share(amount: int, share: Fraction) -> int:
    """``amount × share``, rounded up to a whole unit (the whole amount, with no fraction arithmetic,
    when the share is all of it: the pay-as-you-go case)."""
    if share == 1:
        return amount
    scaled = amount * share
    return -(-scaled.numerator // scaled.denominator)


def _amount(unit: str, amount: int) -> str:
    return f"¥{nano_to_cny(amount)}" if unit == "cny" else f"{amount} tokens"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Settlement


@dataclass(frozen=True, slots=True)
class Overrun:
    """A source's share of a call that its reservation did not cover: charged in the settling transaction
    from what the source has available above its floor, as far as that goes (``charge_overruns``)."""

    index: int  # the leg's position (the wallet's is len(legs)); names the transfer
    source: str  # pack | allowance | wallet
    debit_account: str
    credit_account: str
    asset: str
    amount: int  # tokens of the asset, or nano-CNY for the wallet
    value_nano: int  # what ``amount`` is worth at the call's prices: what the platform absorbs if it can't be drawn


@dataclass(frozen=True, slots=True)
class Settled:
    transfers: list[Transfer]
    wallet_nano: int  # what the customer's wallet paid within its reservation
    plan_nano: int  # what the platform's plan account paid the operator for the plan-funded part
    summary: list[dict[str, Any]]  # for the usage event: each leg's source and what it gave
    overruns: list[Overrun] = field(default_factory=list)  # beyond the reservations, to charge if covered


def _resolve(request_id: str, leg: Leg, used: int, index: int) -> Transfer:
    pending = leg.reservation
    kind = Kind.POST if used > 0 else Kind.VOID
    return Transfer(
        f"{request_id}.{index}.{kind.value}",
        kind,
        pending.debit_account,
        pending.credit_account,
        pending.asset,
        used,
        pending_id=pending.id,
    )


def _floor_share(amount: int, share: Fraction) -> int:
    """``amount × share`` rounded down: what a source is charged for its share (the customer's favour)."""
    if share == 1:
        return amount
    scaled = amount * share
    return scaled.numerator // scaled.denominator


def settlement_transfers(
    request_id: str, funding: Funding, usage: TokenUsage, cost_nano: int, operator: str
) -> Settled:
    """Resolve every leg for the actual ``usage``, priced ``cost_nano`` at the serving quote's list prices.

    Each leg posts what the usage asks of it up to its reservation and voids the rest; whatever a leg's
    share asks beyond its reservation is an ``Overrun``, charged by ``charge_overruns`` in the same step."""
    settled = Settled([], 0, 0, [], [])
    share, last_plan = _settle_legs(settled, request_id, funding, usage, cost_nano)
    if funding.wallet is None and last_plan is not None and last_plan[2] > 0:
        settled.overruns.append(_plan_overrun(last_plan, usage, cost_nano, share))
    wallet_nano = wallet_wanted = 0
    if funding.wallet is not None:
        wallet_wanted = _floor_share(cost_nano, share)
        wallet_nano = _settle_wallet(
            settled, request_id, funding.wallet, operator, wanted=wallet_wanted, index=len(funding.legs)
        )
    plan_nano = cost_nano - wallet_wanted if funding.plan_funded else 0
    if plan_nano > 0:
        plan_pay = Transfer(
            f"{request_id}.plan_pay", Kind.POSTED, names.PLANS, ledger_names.sales(operator), ASSET_CNY, plan_nano
        )
        settled.transfers.append(plan_pay)
    return replace(settled, wallet_nano=wallet_nano, plan_nano=plan_nano)


def _settle_legs(
    settled: Settled, request_id: str, funding: Funding, usage: TokenUsage, cost_nano: int
) -> tuple[Fraction, tuple[int, Leg, int] | None]:
    """Resolve the plan and budget legs in order, into ``settled``; returns the share of the call they
    leave to the wallet, and the last allowance or pack leg with what it could not give."""
    share = Fraction(1)
    last_plan: tuple[int, Leg, int] | None = None
    for index, leg in enumerate(funding.legs):
        wanted, share_before = _wanted(leg, usage, cost_nano, share), share
        used = min(leg.reservation.amount, wanted)
        if leg.source == "allowance":
            share = Fraction(0)
        elif leg.source == "pack":
            share = _share_left(leg, usage, share)
        if leg.source != "budget":
            last_plan = (index, leg, wanted - used) if share_before > 0 else last_plan
        settled.transfers.append(_resolve(request_id, leg, used, index))
        pending = leg.reservation
        settled.summary.append(
            {"source": leg.source, "account": pending.debit_account, "used": used, "reserved": pending.amount}
        )
    return share, last_plan


def _plan_overrun(last_plan: tuple[int, Leg, int], usage: TokenUsage, cost_nano: int, share: Fraction) -> Overrun:
    """No wallet takes the rest: the last plan source, asked for more than it reserved, draws it itself."""
    index, leg, extra = last_plan
    wanted = _wanted(leg, usage, cost_nano, Fraction(1))
    value = _floor_share(cost_nano, share) if leg.source == "pack" else cost_nano * extra // wanted
    pending = leg.reservation
    return Overrun(index, leg.source, pending.debit_account, pending.credit_account, pending.asset, extra, value)


def _settle_wallet(
    settled: Settled, request_id: str, wallet: Transfer, operator: str, *, wanted: int, index: int
) -> int:
    """The wallet pays its share up to its reservation, into ``settled``; beyond it, an overrun. Returns
    what it paid within the reservation."""
    paid = min(wallet.amount, wanted)
    settled.transfers.extend(entries.settlement(request_id, wallet, operator, paid))
    settled.summary.append({"source": "wallet", "used": paid, "reserved": wallet.amount})
    if wanted > paid:
        sales = ledger_names.sales(operator)
        settled.overruns.append(
            Overrun(index, "wallet", wallet.debit_account, sales, ASSET_CNY, wanted - paid, wanted - paid)
        )
    return paid


def _share_left(leg: Leg, usage: TokenUsage, share: Fraction) -> Fraction:
    """The share of the call a pack leaves to the next source: none if its reservation holds its exact
    draw for the share (it is charged that draw rounded down), else the part its reservation falls short of."""
    draw = leg.weights.draw_exact(usage) if leg.weights else Fraction(0)
    if draw == 0 or leg.reservation.amount >= draw * share:
        return Fraction(0)
    return share - Fraction(leg.reservation.amount) / draw


def _wanted(leg: Leg, usage: TokenUsage, cost_nano: int, share: Fraction) -> int:
    """What the usage asks of one leg: a budget counts the cost (or tokens), an allowance one request (or
    the tokens), a pack its draw for the share of the call still uncovered, rounded down. A pack gives at
    most what it reserved; the share it could not cover passes to the next source."""
    if leg.source == "budget":
        return cost_nano if leg.unit == "cny" else usage.total
    if leg.source == "allowance":
        return (1 if leg.unit == "requests" else usage.total) if usage.total else 0
    draw = leg.weights.draw_exact(usage) if leg.weights else Fraction(0)
    scaled = draw * share
    return scaled.numerator // scaled.denominator


@dataclass(frozen=True, slots=True)
class OverrunResult:
    charged_nano: int  # the wallet's overrun it could pay
    uncharged_nano: int  # the value of every overrun no source could pay: absorbed by the platform, recorded
    summary: list[dict[str, Any]]


def charge_overruns(conn: Conn, request_id: str, overruns: Sequence[Overrun]) -> OverrunResult:
    """On the writer's connection, in the settling transaction: charge each overrun from its source's
    available balance above the floor, as far as it goes. What the wallet can't pay, the platform's
    ``uncharged`` account pays the operator, so the operator is paid the list price of what it served and
    the platform's absorption is a ledger entry, never a silent difference."""
    charged_nano = uncharged_nano = 0
    summary: list[dict[str, Any]] = []
    for overrun in overruns:
        balance = read_balance(conn, overrun.debit_account)
        room = 0 if balance is None else overrun.amount if balance.floor is None else balance.available - balance.floor
        taken = max(0, min(overrun.amount, room))
        entry = []
        if taken:
            over_id = f"{request_id}.over.{overrun.index}"
            entry.append(
                Transfer(over_id, Kind.POSTED, overrun.debit_account, overrun.credit_account, overrun.asset, taken)
            )
        short_nano = overrun.value_nano - overrun.value_nano * taken // overrun.amount
        if overrun.source == "wallet":
            charged_nano += taken
            if short_nano:
                uncharged_id = f"{request_id}.uncharged"
                entry.append(
                    Transfer(
                        uncharged_id, Kind.POSTED, ledger_names.UNCHARGED, overrun.credit_account, ASSET_CNY, short_nano
                    )
                )
        apply_entry(conn, entry, request_id)
        uncharged_nano += short_nano
        summary.append(
            {"source": overrun.source, "overrun": overrun.amount, "charged": taken, "uncharged_nano": short_nano}
        )
    return OverrunResult(charged_nano, uncharged_nano, summary)


def adjust_settlement(
    conn: Conn,
    event: UsageEvent,
    *,
    settled: Settled,
    contract: Contract | None,
    zone: ZoneInfo,
    lookup_contract: bool = False,
) -> UsageEvent:
    """In the settling transaction, after its transfers: charge what the reservations did not cover, then a
    contract's volume rebate on everything the wallet paid (``lookup_contract``: the contract is read here,
    in the transaction, rather than given)."""
    wallet_nano = settled.wallet_nano
    if settled.overruns:
        over = charge_overruns(conn, event.request_id, settled.overruns)
        wallet_nano += over.charged_nano
        legs = orjson.loads(event.funding) if event.funding else []
        funding = orjson.dumps([*legs, *over.summary]).decode() if legs else event.funding
        event = replace(
            event, cost_nano=event.cost_nano - over.uncharged_nano, uncharged_nano=over.uncharged_nano, funding=funding
        )
    if lookup_contract:
        contract = contracts.find_contract(conn, event.account_id)
    if contract is not None and wallet_nano:  # postpaid, with volume tiers: rebated in the same step
        event = contracts.rebate(conn, event, paid_nano=wallet_nano, contract=contract, zone=zone)
    return event
