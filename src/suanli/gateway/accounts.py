"""Account administration, shared by the admin HTTP API and the CLI.

Each operation is a job: a function of a database connection, run inside one transaction, either by the
server's group-commit writer or directly by the CLI. Money moves only through ledger transfers.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from suanli.errors import BadRequest, NotFound
from suanli.gateway.routing import parse_preferences
from suanli.ledger import ASSET_CNY, Balance, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account, read_balance
from suanli.money import nano_to_cny
from suanli.store.accounts import Account, ApiKey, create_account, create_key, find_account, revoke_key, set_routing
from suanli.store.usage import UsageEvent, usage_events

TOPUP_NANO_MAX = 10**9 * 10**9  # one billion CNY in one top-up
USAGE_ROWS_MAX = 10_000


def parse_expiry_ms(text: str | None, name: str) -> int | None:
    """An ISO 8601 time (UTC when it names no zone) as epoch milliseconds; None when not given."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 time, not {text!r}.", param=name) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def create_account_job(name: str, tier: str) -> Callable[[sqlite3.Connection], Account]:
    def job(conn: sqlite3.Connection) -> Account:
        account = create_account(conn, name, tier)
        open_account(conn, ledger_names.wallet(account.id), ASSET_CNY, ledger_names.WALLET_FLOOR_NANO)
        return account

    return job


def create_key_job(
    account: str, name: str, models: Sequence[str] | None, expires_at_ms: int | None
) -> Callable[[sqlite3.Connection], tuple[ApiKey, str]]:
    def job(conn: sqlite3.Connection) -> tuple[ApiKey, str]:
        owner = find_account(conn, account)
        return create_key(conn, owner.id, name=name, models=models, expires_at_ms=expires_at_ms)

    return job


def set_routing_job(account: str, provider: Any) -> Callable[[sqlite3.Connection], Account]:
    """Set an account's default routing preferences ("provider" object, routing.md) or clear them (None)."""
    if provider is not None:
        parse_preferences({"provider": provider}, "")  # refuse what a request would refuse
        if not provider:
            provider = None

    def job(conn: sqlite3.Connection) -> Account:
        owner = find_account(conn, account)
        set_routing(conn, owner.id, provider)
        return find_account(conn, owner.id)

    return job


def revoke_key_job(key_id: str) -> Callable[[sqlite3.Connection], ApiKey]:
    return lambda conn: revoke_key(conn, key_id)


def topup_job(
    account: str, amount_nano: int, topup_id: str | None = None
) -> Callable[[sqlite3.Connection], tuple[Account, Balance]]:
    """Credit a wallet from outside money. ``topup_id`` makes a retried top-up apply once."""
    if not 0 < amount_nano <= TOPUP_NANO_MAX:
        raise BadRequest("a top-up must be more than 0 and at most 1,000,000,000 CNY", param="amount")
    transfer_id = f"topup.{topup_id or secrets.token_hex(12)}"

    def job(conn: sqlite3.Connection) -> tuple[Account, Balance]:
        owner = find_account(conn, account)
        wallet = ledger_names.wallet(owner.id)
        open_account(conn, ledger_names.TOPUP_SOURCE, ASSET_CNY, None)
        open_account(conn, wallet, ASSET_CNY, ledger_names.WALLET_FLOOR_NANO)
        apply_entry(conn, [Transfer(transfer_id, Kind.POSTED, ledger_names.TOPUP_SOURCE, wallet,
                                    ASSET_CNY, amount_nano, memo="top-up")])  # fmt: skip
        return owner, _balance(conn, owner)

    return job


def _balance(conn: sqlite3.Connection, account: Account) -> Balance:
    balance = read_balance(conn, ledger_names.wallet(account.id))
    if balance is None:
        raise NotFound(f"account {account.name!r} has no wallet", code="account_not_found")
    return balance


def account_view(conn: sqlite3.Connection, id_or_name: str) -> dict[str, Any]:
    account = find_account(conn, id_or_name)
    balance = _balance(conn, account)
    return {
        "account": account_dict(account),
        "wallet": balance_dict(balance),
    }


def usage_view(conn: sqlite3.Connection, id_or_name: str, limit: int) -> list[UsageEvent]:
    if not 0 < limit <= USAGE_ROWS_MAX:
        raise BadRequest(f"limit must be from 1 to {USAGE_ROWS_MAX}", param="limit")
    return usage_events(conn, find_account(conn, id_or_name).id, limit)


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
        "id": key.id, "account_id": key.account_id, "prefix": key.prefix, "name": key.name,
        "models": list(key.models) if key.models is not None else None, "created_at_ms": key.created_at_ms,
        "expires_at_ms": key.expires_at_ms, "revoked_at_ms": key.revoked_at_ms,
    }  # fmt: skip


def usage_dict(event: UsageEvent) -> dict[str, Any]:
    return {
        "request_id": event.request_id, "created_at_ms": event.created_at_ms, "key_id": event.key_id,
        "model": event.model, "operator": event.operator, "offer": event.offer_id, "stream": event.stream,
        "input_tokens": event.input_tokens, "cached_input_tokens": event.cached_input_tokens,
        "cache_write_tokens": event.cache_write_tokens, "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "estimated": event.estimated, "cost": nano_to_cny(event.cost_nano), "cost_nano": event.cost_nano,
        "reserved_nano": event.reserved_nano, "uncharged_nano": event.uncharged_nano,
        "outcome": event.outcome, "http_status": event.http_status, "error_code": event.error_code,
        "latency_ms": event.latency_ms, "ttft_ms": event.ttft_ms,
        "funding": orjson.loads(event.funding) if event.funding else None,
        "prices_nano": {"input": event.price_input_nano, "cached_input": event.price_cached_input_nano,
                        "cache_write": event.price_cache_write_nano, "output": event.price_output_nano,
                        "reasoning": event.price_reasoning_nano},
    }  # fmt: skip
