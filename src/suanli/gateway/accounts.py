"""Account administration, shared by the admin HTTP API and the CLI.

Each operation is a job: a function of a database connection, run inside one transaction, either by the
server's group-commit writer or directly by the CLI. Money moves only through ledger transfers.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from suanli.economy.contracts import find_contract
from suanli.economy.market import IDEMPOTENCY_KEY_CHARS_MAX
from suanli.errors import BadRequest, Conflict, NotFound
from suanli.gateway.routing import parse_preferences
from suanli.instants import parse_iso_ms
from suanli.ledger import ASSET_CNY, Balance, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account, read_balance
from suanli.money import nano_to_cny
from suanli.store.accounts import (
    Account,
    ApiKey,
    create_account,
    create_key,
    find_account,
    list_accounts,
    revoke_key,
    set_routing,
)
from suanli.store.conn import Conn
from suanli.store.db import now_ms
from suanli.store.usage import UsageEvent, usage_events
from suanli.store.usage_queries import recent_topups

TOPUP_NANO_MAX = 10**9 * 10**9  # one billion CNY in one top-up
USAGE_ROWS_MAX = 10_000


def parse_expiry_ms(text: str | None, name: str) -> int | None:
    """An ISO 8601 time (UTC when it names no zone) as epoch milliseconds, at most ``INSTANT_HORIZON_DAYS``
    ahead; None when not given."""
    return None if text is None else parse_iso_ms(text, name, now_ms())


def create_account_job(name: str, tier: str) -> Callable[[Conn], Account]:
    def job(conn: Conn) -> Account:
        account = create_account(conn, name, tier)
        open_account(conn, ledger_names.wallet(account.id), ASSET_CNY, ledger_names.WALLET_FLOOR_NANO)
        return account

    return job


def create_key_job(
    account: str, name: str, models: Sequence[str] | None, expires_at_ms: int | None
) -> Callable[[Conn], tuple[ApiKey, str]]:
    def job(conn: Conn) -> tuple[ApiKey, str]:
        owner = find_account(conn, account)
        return create_key(conn, owner.id, name=name, models=models, expires_at_ms=expires_at_ms)

    return job


def set_routing_job(account: str, provider: Any) -> Callable[[Conn], Account]:
    """Set an account's default routing preferences ("provider" object, routing.md) or clear them (None)."""
    if provider is not None:
        parse_preferences({"provider": provider}, "")  # refuse what a request would refuse
        if not provider:
            provider = None

    def job(conn: Conn) -> Account:
        owner = find_account(conn, account)
        set_routing(conn, owner.id, provider)
        return find_account(conn, owner.id)

    return job


def revoke_key_job(key_id: str) -> Callable[[Conn], ApiKey]:
    return lambda conn: revoke_key(conn, key_id)


def topup_job(account: str, amount_nano: int, topup_id: str | None = None) -> Callable[[Conn], tuple[Account, Balance]]:
    """Credit a wallet from outside money. ``topup_id`` (an ``Idempotency-Key``) makes a retried top-up apply
    once; it is the account's own: another account may use the same key, and reusing it on this account for
    another amount is refused (409)."""
    if not 0 < amount_nano <= TOPUP_NANO_MAX:
        raise BadRequest("a top-up must be more than 0 and at most 1,000,000,000 CNY", param="amount")
    if topup_id is not None and not 0 < len(topup_id) <= IDEMPOTENCY_KEY_CHARS_MAX:
        raise BadRequest(f"An Idempotency-Key is 1 to {IDEMPOTENCY_KEY_CHARS_MAX} characters.", param="Idempotency-Key")

    def job(conn: Conn) -> tuple[Account, Balance]:
        owner = find_account(conn, account)
        wallet = ledger_names.wallet(owner.id)
        transfer_id = _topup_transfer_id(conn, owner.id, topup_id, amount_nano)
        open_account(conn, ledger_names.TOPUP_SOURCE, ASSET_CNY, None)
        open_account(conn, wallet, ASSET_CNY, ledger_names.WALLET_FLOOR_NANO)
        apply_entry(
            conn,
            [
                Transfer(
                    transfer_id, Kind.POSTED, ledger_names.TOPUP_SOURCE, wallet, ASSET_CNY, amount_nano, memo="top-up"
                )
            ],
        )
        return owner, _balance(conn, owner)

    return job


def _topup_transfer_id(conn: Conn, account_id: str, topup_id: str | None, amount_nano: int) -> str:
    """The top-up's ledger transfer id: random, or derived from the account and its key, so that a retry finds
    the transfer it made (and applies nothing again) and a reuse for another amount is told so."""
    if topup_id is None:
        return f"topup.{secrets.token_hex(12)}"
    scoped = "topup." + hashlib.sha256(f"{account_id}\n{topup_id}".encode()).hexdigest()[:32]
    wallet = ledger_names.wallet(account_id)
    for transfer_id in (scoped, f"topup.{topup_id}"):  # the second: as top-ups were named before keys were scoped
        row = conn.execute("SELECT credit_account, amount FROM transfers WHERE id = ?", (transfer_id,)).fetchone()
        if row is None or (transfer_id != scoped and row[0] != wallet):
            continue
        if tuple(row) != (wallet, amount_nano):
            raise Conflict(
                "That Idempotency-Key already topped up this account with another amount.",
                code="idempotency_conflict",
                param="Idempotency-Key",
            )
        return transfer_id
    return scoped


def _balance(conn: Conn, account: Account) -> Balance:
    balance = read_balance(conn, ledger_names.wallet(account.id))
    if balance is None:
        raise NotFound(f"account {account.name!r} has no wallet", code="account_not_found")
    return balance


def accounts_view(conn: Conn) -> dict[str, Any]:
    """Every account with its wallet, read in two queries whatever their number."""
    rows = conn.execute(
        "SELECT id, asset, floor, debits_pending, debits_posted, credits_pending, credits_posted "
        "FROM ledger_accounts WHERE id LIKE 'wallet:%'"
    )
    wallets = {row[0]: Balance(*row) for row in rows}
    return {
        "object": "list",
        "data": [
            {**account_dict(a), "wallet": balance_dict(wallets[ledger_names.wallet(a.id)])} for a in list_accounts(conn)
        ],
    }


def account_view(conn: Conn, id_or_name: str) -> dict[str, Any]:
    account = find_account(conn, id_or_name)
    balance = _balance(conn, account)
    return {
        "account": account_dict(account),
        "wallet": balance_dict(balance),
    }


def usage_view(conn: Conn, id_or_name: str, limit: int) -> list[UsageEvent]:
    if not 0 < limit <= USAGE_ROWS_MAX:
        raise BadRequest(f"limit must be from 1 to {USAGE_ROWS_MAX}", param="limit")
    return usage_events(conn, find_account(conn, id_or_name).id, limit)


def topups_view(conn: Conn, limit: int) -> list[dict[str, Any]]:
    """The latest top-ups of every account, newest first, with the account's name."""
    topups = recent_topups(conn, limit)
    names = {t.account_id: _account_name(conn, t.account_id) for t in topups}
    return [
        {
            "account": t.account_id,
            "account_name": names[t.account_id],
            "amount": nano_to_cny(t.amount_nano),
            "amount_nano": t.amount_nano,
            "at_ms": t.at_ms,
            "transfer": t.transfer_id,
        }
        for t in topups
    ]


def _account_name(conn: Conn, account_id: str) -> str | None:
    row = conn.execute("SELECT name FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return None if row is None else str(row[0])


def contracts_view(conn: Conn) -> list[dict[str, Any]]:
    """Every enterprise contract: its account, credit limit and volume tiers."""
    rows = conn.execute(
        "SELECT c.account_id, a.name FROM contracts c JOIN accounts a ON a.id = c.account_id ORDER BY a.name"
    ).fetchall()
    contracts = [(find_contract(conn, str(r[0])), str(r[1])) for r in rows]
    return [{"account": c.account_id, "account_name": name, **c.public()} for c, name in contracts if c is not None]


def account_dict(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "tier": account.tier,
        "created_at_ms": account.created_at_ms,
        "routing": dict(account.routing) if account.routing else None,
    }


def balance_dict(balance: Balance) -> dict[str, Any]:
    """Amounts as exact decimal strings in CNY, and as integers in nano-CNY for programs."""
    return {
        "currency": "CNY",
        "balance": nano_to_cny(balance.posted),
        "reserved": nano_to_cny(balance.debits_pending),
        "available": nano_to_cny(balance.available),
        "balance_nano": balance.posted,
        "reserved_nano": balance.debits_pending,
        "available_nano": balance.available,
    }


def key_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "account_id": key.account_id,
        "prefix": key.prefix,
        "name": key.name,
        "models": list(key.models) if key.models is not None else None,
        "created_at_ms": key.created_at_ms,
        "expires_at_ms": key.expires_at_ms,
        "revoked_at_ms": key.revoked_at_ms,
    }


def usage_dict(event: UsageEvent) -> dict[str, Any]:
    return {
        "request_id": event.request_id,
        "created_at_ms": event.created_at_ms,
        "key_id": event.key_id,
        "model": event.model,
        "operator": event.operator,
        "offer": event.offer_id,
        "stream": event.stream,
        "input_tokens": event.input_tokens,
        "cached_input_tokens": event.cached_input_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "estimated": event.estimated,
        "cost": nano_to_cny(event.cost_nano),
        "cost_nano": event.cost_nano,
        "reserved_nano": event.reserved_nano,
        "uncharged_nano": event.uncharged_nano,
        "outcome": event.outcome,
        "http_status": event.http_status,
        "error_code": event.error_code,
        "latency_ms": event.latency_ms,
        "ttft_ms": event.ttft_ms,
        "funding": orjson.loads(event.funding) if event.funding else None,
        "price_window": event.price_window or None,
        "prices_nano": {
            "input": event.price_input_nano,
            "cached_input": event.price_cached_input_nano,
            "cache_write": event.price_cache_write_nano,
            "output": event.price_output_nano,
            "reasoning": event.price_reasoning_nano,
        },
    }
