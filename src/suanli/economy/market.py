"""Buying, subscribing, sharing: the economy's operations, as writer jobs for the API and the CLI.

Money moves only through ledger transfers: a purchase is a posted transfer from the wallet to the
platform's plan account (a 402 if the wallet can't cover it), a pack's tokens are issued to it by a
posted transfer of its product's asset, a token transfer moves them from one pack to a new pack of the
receiving account (same product, same expiry), and expiry forfeits exactly what is left.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.economy import alerts, names, windows
from suanli.economy import store as econ
from suanli.economy.contracts import CREDIT_LIMIT_NANO_MAX, Contract, Tier, save_contract
from suanli.economy.products import FUNDING_SOURCES, Product
from suanli.errors import BadRequest, Conflict, Forbidden, NotFound, PaymentRequired
from suanli.ledger import ASSET_CNY, Balance, Kind, LedgerRejected, Rejection, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, apply_if_covered, open_account, read_balance, set_floor
from suanli.limits import AMOUNT_NANO_MAX, TOKENS_AMOUNT_MAX
from suanli.money import nano_to_cny
from suanli.store import cluster
from suanli.store.accounts import Account, find_account
from suanli.store.conn import Conn
from suanli.store.db import now_ms

TRANSFER_MEMO_CHARS_MAX = 200
IDEMPOTENCY_KEY_CHARS_MAX = 200
BUDGET_PERIODS = ("day", "week", "month")
BUDGET_UNITS = ("cny", "tokens")


def _product(products: Mapping[str, Product], product_id: str, kind: str, account: Account) -> Product:
    product = products.get(product_id)
    if product is None or product.kind != kind:
        raise NotFound(
            f"No {kind} product '{product_id}'; `GET /v1/products` lists them.",
            code="product_not_found",
            param="product",
        )
    if product.retired:
        raise BadRequest(
            f"The product '{product_id}' is retired and no longer sold.", code="product_retired", param="product"
        )
    if account.tier not in product.tiers:
        raise Forbidden(
            f"The product '{product_id}' is not sold to {account.tier} accounts.",
            code="product_not_offered_to_tier",
            param="product",
        )
    return product


def _pay(conn: Conn, account_id: str, transfer_id: str, amount: int, what: str) -> None:
    wallet = ledger_names.wallet(account_id)
    open_account(conn, names.PLANS, ASSET_CNY, None)
    transfer = Transfer(transfer_id, Kind.POSTED, wallet, names.PLANS, ASSET_CNY, amount, memo=what)
    if not apply_if_covered(conn, [transfer]):  # refused: nothing written, so a renewal can lapse instead
        balance = read_balance(conn, wallet)
        raise PaymentRequired(
            f"{what} costs ¥{nano_to_cny(amount)} and the account has "
            f"¥{nano_to_cny(balance.available if balance else 0)} available. Nothing was "
            "charged."
        )


def buy_pack_job(
    account_ref: str, product_id: str, products: Mapping[str, Product], idempotency_key: str | None = None
) -> Callable[[Conn], tuple[econ.Pack, Balance | None]]:
    """Buy a pack from the wallet. With ``idempotency_key``, a retried purchase returns the pack the first
    one bought and charges nothing again (the pack's id is derived from the account and the key)."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_CHARS_MAX:
        raise BadRequest(f"An Idempotency-Key is 1 to {IDEMPOTENCY_KEY_CHARS_MAX} characters.", param="Idempotency-Key")

    def job(conn: Conn) -> tuple[econ.Pack, Balance | None]:
        account = find_account(conn, account_ref)
        cluster.serialize(conn, cluster.account_lock(account.id))  # a retried purchase waits for the first
        pack_id = None
        if idempotency_key is not None:
            pack_id = "pack_" + hashlib.sha256(f"{account.id}\n{idempotency_key}".encode()).hexdigest()[:16]
            if _bought_before(conn, pack_id, product_id):
                return econ.find_pack(conn, pack_id), read_balance(conn, ledger_names.wallet(account.id))
        product = _product(products, product_id, "pack", account)
        pack = econ.create_pack(
            conn,
            account.id,
            product.id,
            tokens=product.tokens,
            pack_id=pack_id,
            expires_at_ms=now_ms() + product.valid_days * econ.DAY_MS,
            origin="purchase",
        )
        _pay(conn, account.id, f"{pack.id}.buy", product.price_nano, f"The pack {product.id}")
        _issue(conn, pack, product)
        return pack, read_balance(conn, ledger_names.wallet(account.id))

    return job


def _bought_before(conn: Conn, pack_id: str, product_id: str) -> bool:
    """Whether the purchase of this idempotency key's pack was made; a conflict if it bought another product."""
    bought = conn.execute("SELECT product_id FROM packs WHERE id = ?", (pack_id,)).fetchone()
    if bought is not None and bought[0] != product_id:
        raise Conflict(
            "That Idempotency-Key already bought another product.", code="idempotency_conflict", param="Idempotency-Key"
        )
    return bought is not None


def _issue(conn: Conn, pack: econ.Pack, product: Product) -> None:
    """Credit a bought pack with its product's tokens, issued by the product."""
    _post_tokens(
        conn,
        f"{pack.id}.issue",
        names.issue(product.id),
        names.pack(pack.id),
        product_id=product.id,
        tokens=product.tokens,
        memo="purchase",
        opens=names.issue(product.id),
    )


def _post_tokens(
    conn: Conn, transfer_id: str, debit: str, credit: str, *, product_id: str, tokens: int, memo: str, opens: str
) -> None:
    """Post ``tokens`` of a product's asset between a pack and the product's own account ``opens`` (its
    issue or its forfeits), opened first if it is new."""
    asset = names.pack_asset(product_id)
    open_account(conn, opens, asset, None)
    apply_entry(conn, [Transfer(transfer_id, Kind.POSTED, debit, credit, asset, tokens, memo=memo)])


def subscribe_job(
    account_ref: str, product_id: str, products: Mapping[str, Product], zone: ZoneInfo, at_ms: int | None = None
) -> Callable[[Conn], dict[str, Any]]:
    """Subscribe; or, mid-cycle, upgrade to a dearer plan for the remaining share of the month's price
    difference, with the higher allowances at once (a cheaper plan is refused until the cycle ends)."""

    def job(conn: Conn) -> dict[str, Any]:
        account = find_account(conn, account_ref)
        cluster.serialize(conn, cluster.account_lock(account.id))  # two subscribes at once: one, then the other
        product = _product(products, product_id, "subscription", account)
        now = now_ms() if at_ms is None else at_ms
        current = econ.current_subscription(conn, account.id)
        if current is not None and current.period_end_ms <= now:
            econ.end_subscription(conn, current.id, current.period_end_ms)  # lapsed: a new one starts now
            current = None
        if current is None:
            start, end = windows.billing_month(now, now, zone)
            sub = econ.Subscription("sub_" + secrets.token_hex(8), account.id, product.id, now, start, end, now, None)
            _pay(conn, account.id, f"{sub.id}.fee.{start}", product.price_nano, f"The plan {product.id}")
            econ.insert_subscription(conn, sub)
            return {
                "subscription": sub.id,
                "product": product.id,
                "charged": nano_to_cny(product.price_nano),
                "period_end_ms": end,
            }
        return _upgrade(conn, account, current, products[current.product_id], product, now=now)

    return job


def _upgrade(
    conn: Conn, account: Account, sub: econ.Subscription, old: Product, new: Product, *, now: int
) -> dict[str, Any]:
    if new.id == old.id:
        raise Conflict(f"The account already subscribes to {new.id}.", code="already_subscribed", param="product")
    if new.price_nano < old.price_nano:
        raise BadRequest(
            f"{new.id} costs less than {old.id}: a downgrade takes effect when the cycle ends "
            f"(cancel, then subscribe after {_iso_day(sub.period_end_ms)}).",
            code="downgrade_mid_cycle",
            param="product",
        )
    remaining = Fraction(sub.period_end_ms - now, sub.period_end_ms - sub.period_start_ms)
    charge = -(-(new.price_nano - old.price_nano) * remaining.numerator // remaining.denominator)
    if charge:
        _pay(conn, account.id, f"{sub.id}.upgrade.{new.id}.{now}", charge, f"The upgrade to {new.id}")
    conn.execute("UPDATE subscriptions SET product_id = ? WHERE id = ?", (new.id, sub.id))
    for window, unit, start, _, amount in econ.windows_of(conn, sub.id, now):
        target = next((a.amount for a in new.allowances if a.window == window and a.unit == unit), amount)
        if target > amount:  # the open window gets the new plan's allowance at once
            account_id = names.allowance(sub.id, window, unit, start)
            econ.top_up_window(conn, account_id, names.allowance_asset(unit), target - amount, f".up.{new.id}")
            conn.execute(
                "UPDATE allowance_windows SET amount = ? WHERE subscription_id = ? AND window_name = ? AND "
                "unit = ? AND start_ms = ?",
                (target, sub.id, window, unit, start),
            )
    return {
        "subscription": sub.id,
        "product": new.id,
        "upgraded_from": old.id,
        "charged": nano_to_cny(charge),
        "period_end_ms": sub.period_end_ms,
    }


def _iso_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def cancel_job(account_ref: str) -> Callable[[Conn], dict[str, Any]]:
    """End the subscription now (no refund: the month was paid for)."""

    def job(conn: Conn) -> dict[str, Any]:
        account = find_account(conn, account_ref)
        sub = econ.current_subscription(conn, account.id)
        if sub is None:
            raise NotFound("The account has no subscription.", code="no_subscription")
        econ.end_subscription(conn, sub.id, now_ms())
        return {"subscription": sub.id, "ended": True}

    return job


def renew_if_due(
    conn: Conn, sub: econ.Subscription, product: Product, now: int, zone: ZoneInfo
) -> econ.Subscription | None:
    """The subscription in force at ``now``: as it is, or renewed for the month that holds ``now`` from
    the wallet; None if its month ended and the wallet can't pay the next (it is ended then)."""
    if now < sub.period_end_ms:
        return sub
    start, end = windows.billing_month(sub.anchor_ms, now, zone)
    try:
        _pay(conn, sub.account_id, f"{sub.id}.fee.{start}", product.price_nano, f"The plan {product.id}")
    except PaymentRequired:
        econ.end_subscription(conn, sub.id, sub.period_end_ms)
        alerts.renewal_failed(conn, sub, start, product.price_nano, now)  # in the lapse's transaction
        return None
    econ.set_period(conn, sub.id, start, end)
    return replace(sub, period_start_ms=start, period_end_ms=end)


def renew_due_job(
    products: Mapping[str, Product], zone: ZoneInfo, at_ms: int | None = None
) -> Callable[[Conn], list[dict[str, Any]]]:
    """Renew every subscription whose month has ended, from its wallet; end those the wallet can't pay
    for (the gateway runs this with the expiry sweep, and a request renews its own subscription too)."""

    def job(conn: Conn) -> list[dict[str, Any]]:
        now = now_ms() if at_ms is None else at_ms
        done = []
        for sub in econ.due_subscriptions(conn, now):
            product = products.get(sub.product_id)
            if product is None:
                continue  # a product this process does not know yet: the next sweep, after a reload
            renewed = renew_if_due(conn, sub, product, now, zone) is not None
            done.append({"subscription": sub.id, "account_id": sub.account_id, "renewed": renewed})
        return done

    return job


def _move_tokens(conn: Conn, pack: econ.Pack, move: Transfer) -> None:
    """Post the move out of ``pack``; a 400 ``insufficient_tokens`` if the pack has fewer available."""
    try:
        apply_entry(conn, [move])
    except LedgerRejected as exc:
        if exc.rejection is not Rejection.EXCEEDS_FLOOR:
            raise
        available, _ = econ.pack_remaining(conn, pack)
        raise BadRequest(
            f"The pack has {available} tokens available, fewer than {move.amount}.",
            code="insufficient_tokens",
            param="tokens",
        ) from None


def transfer_tokens_job(
    pack_id: str, to_ref: str, tokens: object, *, memo: str, made_by: str, owner_id: str | None
) -> Callable[[Conn], dict[str, Any]]:
    """Move ``tokens`` of a pack to a new pack of another account (``tokens`` as the client sent it: it is
    checked here). ``owner_id`` is the caller's account when a customer asks (it must own the pack and
    trust the receiver); None for the admin."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 < tokens <= TOKENS_AMOUNT_MAX:
        raise BadRequest(f"'tokens' must be a whole number from 1 to {TOKENS_AMOUNT_MAX}.", param="tokens")
    count = tokens
    if not isinstance(memo, str) or len(memo) > TRANSFER_MEMO_CHARS_MAX:
        raise BadRequest(f"'memo' is a string of at most {TRANSFER_MEMO_CHARS_MAX} characters.", param="memo")

    def job(conn: Conn) -> dict[str, Any]:
        pack = _pack_of(conn, pack_id, owner_id)
        receiver = _receiver(conn, pack, to_ref, owner_id)
        if pack.expires_at_ms <= now_ms() or pack.forfeited_at_ms is not None:
            raise BadRequest(f"The pack '{pack_id}' has expired.", code="pack_expired", param="pack")
        asset = names.pack_asset(pack.product_id)
        new_pack = econ.create_pack(
            conn,
            receiver.id,
            pack.product_id,
            tokens=count,
            expires_at_ms=pack.expires_at_ms,
            origin=f"transfer from {pack.id}",
        )
        move = Transfer(
            f"{new_pack.id}.from.{pack.id}",
            Kind.POSTED,
            names.pack(pack.id),
            names.pack(new_pack.id),
            asset,
            count,
            memo=memo or f"by {made_by}",
        )
        _move_tokens(conn, pack, move)
        transfer_id = econ.record_token_transfer(conn, pack.id, new_pack.id, tokens=count, memo=memo, made_by=made_by)
        return {
            "transfer": transfer_id,
            "from_pack": pack.id,
            "to_pack": new_pack.id,
            "to_account": receiver.name,
            "tokens": count,
            "expires_at_ms": pack.expires_at_ms,
        }

    return job


def _pack_of(conn: Conn, pack_id: str, owner_id: str | None) -> econ.Pack:
    """The pack to move tokens from; to a customer, another account's pack is as absent as a pack that is not."""
    if owner_id is None:
        return econ.find_pack(conn, pack_id)
    row = conn.execute("SELECT 1 FROM packs WHERE id = ? AND account_id = ?", (pack_id, owner_id)).fetchone()
    if row is None:
        raise NotFound(f"No pack '{pack_id}' on this account.", code="pack_not_found", param="pack")
    return econ.find_pack(conn, pack_id)


def _receiver(conn: Conn, pack: econ.Pack, to_ref: str, owner_id: str | None) -> Account:
    """The account that receives the tokens. To a customer, an account it does not trust is as absent as one
    that does not exist, in the same words: the answer must not tell which names are taken."""
    untrusted = NotFound(
        f"No account '{to_ref}' that this account may transfer tokens to; an administrator adds "
        "trust with `suanli trust`.",
        code="account_not_found",
        param="to",
    )
    try:
        receiver = find_account(conn, to_ref)
    except NotFound:
        if owner_id is None:
            raise
        raise untrusted from None
    if receiver.id == pack.account_id:
        raise BadRequest("The pack already belongs to that account.", param="to")
    if owner_id is not None and not econ.trusts(conn, pack.account_id, receiver.id):
        raise untrusted
    return receiver


def expire_packs_job(at_ms: int | None = None) -> Callable[[Conn], list[dict[str, Any]]]:
    """Forfeit what is left of every expired pack, by a ledger transfer (the pack row stays). Tokens still
    reserved by a call in flight are forfeited when it settles and the next sweep runs."""

    def job(conn: Conn) -> list[dict[str, Any]]:
        now = now_ms() if at_ms is None else at_ms
        forfeited = []
        for pack in econ.expired_unforfeited(conn, now):
            available, reserved = econ.pack_remaining(conn, pack)
            if available > 0:
                forfeits = names.forfeit(pack.product_id)
                _post_tokens(
                    conn,
                    f"{pack.id}.forfeit.{now}",
                    names.pack(pack.id),
                    forfeits,
                    product_id=pack.product_id,
                    tokens=available,
                    memo="expired",
                    opens=forfeits,
                )
                forfeited.append({"pack": pack.id, "account_id": pack.account_id, "tokens": available})
            if reserved == 0:
                econ.mark_forfeited(conn, pack.id, now)
        return forfeited

    return job


def set_budget_job(
    account_ref: str, key_id: str | None, period: str, unit: str, amount: int
) -> Callable[[Conn], econ.Budget]:
    if period not in BUDGET_PERIODS:
        raise BadRequest(f"'period' must be one of {', '.join(BUDGET_PERIODS)}.", param="period")
    if unit not in BUDGET_UNITS:
        raise BadRequest(f"'unit' must be one of {', '.join(BUDGET_UNITS)}.", param="unit")
    amount_max = AMOUNT_NANO_MAX if unit == "cny" else TOKENS_AMOUNT_MAX
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= amount_max:
        shown = "1,000,000,000 CNY" if unit == "cny" else f"{TOKENS_AMOUNT_MAX} tokens"
        raise BadRequest(f"'amount' must be more than zero and at most {shown}.", param="amount")

    def job(conn: Conn) -> econ.Budget:
        account = find_account(conn, account_ref)
        if key_id is not None:
            row = conn.execute("SELECT account_id FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None or row[0] != account.id:
                raise NotFound(f"No key '{key_id}' on this account.", code="key_not_found", param="key")
        budget = econ.Budget("bdg_" + secrets.token_hex(8), account.id, key_id, period, unit, amount, now_ms())
        econ.insert_budget(conn, budget)
        return budget

    return job


def set_funding_job(account_ref: str, order: Sequence[str], fallthrough: bool) -> Callable[[Conn], Any]:
    if not order or len(set(order)) != len(order) or not set(order) <= set(FUNDING_SOURCES):
        raise BadRequest(f"'order' lists each of {', '.join(FUNDING_SOURCES)} at most once.", param="order")
    if not isinstance(fallthrough, bool):
        raise BadRequest("'fallthrough' must be true or false.", param="fallthrough")

    def job(conn: Conn) -> dict[str, Any]:
        account = find_account(conn, account_ref)
        funding = {"order": list(order), "fallthrough": fallthrough}
        conn.execute("UPDATE accounts SET funding = ? WHERE id = ?", (orjson.dumps(funding).decode(), account.id))
        return funding

    return job


def trust_job(account_ref: str, other_ref: str) -> Callable[[Conn], dict[str, str]]:
    def job(conn: Conn) -> dict[str, str]:
        account, other = find_account(conn, account_ref), find_account(conn, other_ref)
        econ.add_trust(conn, account.id, other.id)
        return {"account": account.name, "trusts": other.name}

    return job


def set_contract_job(
    account_ref: str, credit_limit_nano: int, tiers: tuple[Tier, ...]
) -> Callable[[Conn], dict[str, Any]]:
    """Put an enterprise account on a contract: postpaid to ``credit_limit_nano``, graduated tiers."""
    if isinstance(credit_limit_nano, bool) or not 0 <= credit_limit_nano <= CREDIT_LIMIT_NANO_MAX:
        raise BadRequest("'credit_limit' must be from 0 to 1,000,000,000 CNY.", param="credit_limit")

    def job(conn: Conn) -> dict[str, Any]:
        account = find_account(conn, account_ref)
        if account.tier != "enterprise":
            raise Forbidden("Contracts are for enterprise accounts.", code="contract_not_for_tier", param="account")
        try:
            set_floor(conn, ledger_names.wallet(account.id), -credit_limit_nano)
        except LedgerRejected:
            balance = read_balance(conn, ledger_names.wallet(account.id))
            owed = -(balance.available if balance else 0)
            raise BadRequest(
                f"The account owes ¥{nano_to_cny(owed)}, more than that credit limit.",
                code="credit_limit_below_debt",
                param="credit_limit",
            ) from None
        contract = Contract(account.id, credit_limit_nano, tiers)
        save_contract(conn, contract)
        econ.mark_has_plans(conn, account.id)
        return {"account": account.name, **contract.public()}

    return job
