"""Accounts and API keys. A key is shown once, stored only as its SHA-256 hash.

Keys carry 192 bits of randomness, so a fast hash is the right one (a slow password hash protects
guessable secrets; these are not). Look-up is by hash; the found hash is compared again in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from suanli.catalog import TIERS
from suanli.errors import BadRequest, Conflict, NotFound
from suanli.store.conn import Conn
from suanli.store.db import now_ms

KEY_PREFIX = "sk-"
KEY_RANDOM_BYTES = 24  # 192 bits, written as 48 hex digits
KEY_SHOWN_PREFIX_CHARS = 10
ACCOUNT_NAME_CHARS_MAX = 64


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    tier: str
    created_at_ms: int
    routing: Mapping[str, Any] | None = None  # default "provider" preferences for its requests
    funding: Mapping[str, Any] | None = None  # {"order": [...], "fallthrough": bool}; None: the default
    has_plans: bool = False  # it has bought a pack or a plan, or set a budget: requests look them up


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    account_id: str
    prefix: str  # the first characters, to recognise a key in lists; never enough to use it
    name: str
    models: tuple[str, ...] | None  # None: every model
    created_at_ms: int
    expires_at_ms: int | None
    revoked_at_ms: int | None
    hash: bytes


def hash_key(raw_key: str) -> bytes:
    return hashlib.sha256(raw_key.encode()).digest()


def keys_match(stored_hash: bytes, raw_key: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_key(raw_key))


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_hex(KEY_RANDOM_BYTES)


def _routing(text: str | None) -> Mapping[str, Any] | None:
    return orjson.loads(text) if text else None


def _account(row: Any, prefix: str = "") -> Account:
    """An account from a row of ``accounts``, or from columns named ``prefix`` + its column (a join)."""
    return Account(
        row[prefix + "id"],
        row[prefix + "name"],
        row[prefix + "tier"],
        row[prefix + "created_at_ms"],
        _routing(row[prefix + "routing"]),
        _routing(row[prefix + "funding"]),
        bool(row[prefix + "has_plans"]),
    )


def set_routing(conn: Conn, account_id: str, routing: Mapping[str, Any] | None) -> None:
    """Store an account's default routing preferences (validated by the caller), or clear them."""
    text = orjson.dumps(routing).decode() if routing else None
    conn.execute("UPDATE accounts SET routing = ? WHERE id = ?", (text, account_id))


def create_account(conn: Conn, name: str, tier: str) -> Account:
    if not name or len(name) > ACCOUNT_NAME_CHARS_MAX or not name.isprintable():
        raise BadRequest(f"an account name is 1 to {ACCOUNT_NAME_CHARS_MAX} printable characters", param="name")
    if tier not in TIERS:
        raise BadRequest(f"tier must be one of: {', '.join(TIERS)}", param="tier")
    if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
        raise Conflict(f"an account named {name!r} already exists")
    account = Account("acct_" + secrets.token_hex(8), name, tier, now_ms())
    conn.execute(
        "INSERT INTO accounts (id, name, tier, created_at_ms) VALUES (?, ?, ?, ?)",
        (account.id, account.name, account.tier, account.created_at_ms),
    )
    return account


def find_account(conn: Conn, id_or_name: str) -> Account:
    row = conn.execute("SELECT * FROM accounts WHERE id = ? OR name = ?", (id_or_name, id_or_name)).fetchone()
    if row is None:
        raise NotFound(f"no account {id_or_name!r}", code="account_not_found")
    return _account(row)


def list_accounts(conn: Conn) -> list[Account]:
    return [_account(row) for row in conn.execute("SELECT * FROM accounts ORDER BY created_at_ms, id")]


def _api_key(row: Any) -> ApiKey:
    models = tuple(orjson.loads(row["models"])) if row["models"] else None
    return ApiKey(
        row["id"],
        row["account_id"],
        row["prefix"],
        row["name"],
        models,
        row["created_at_ms"],
        row["expires_at_ms"],
        row["revoked_at_ms"],
        row["hash"],
    )


def create_key(
    conn: Conn,
    account_id: str,
    *,
    name: str = "",
    models: Sequence[str] | None = None,
    expires_at_ms: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with the raw secret, which is not kept anywhere."""
    if expires_at_ms is not None and expires_at_ms <= now_ms():
        raise BadRequest("a key's expiry must be in the future", param="expires_at")
    raw = new_raw_key()
    key = ApiKey(
        "key_" + secrets.token_hex(8),
        account_id,
        raw[:KEY_SHOWN_PREFIX_CHARS],
        name,
        tuple(models) if models else None,
        now_ms(),
        expires_at_ms,
        None,
        hash_key(raw),
    )
    conn.execute(
        "INSERT INTO api_keys (id, account_id, hash, prefix, name, models, created_at_ms, expires_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key.id,
            key.account_id,
            key.hash,
            key.prefix,
            key.name,
            orjson.dumps(list(key.models)).decode() if key.models else None,
            key.created_at_ms,
            key.expires_at_ms,
        ),
    )
    return key, raw


def find_key_by_hash(conn: Conn, key_hash: bytes) -> tuple[ApiKey, Account] | None:
    row = conn.execute(
        "SELECT k.*, a.name AS account_name, a.tier AS account_tier, a.created_at_ms AS account_created_at_ms, "
        "a.routing AS account_routing, a.funding AS account_funding, a.has_plans AS account_has_plans "
        "FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = ?",
        (key_hash,),
    ).fetchone()
    if row is None:
        return None
    return _api_key(row), _account(row, "account_")


def list_keys(conn: Conn, account_id: str) -> list[ApiKey]:
    rows = conn.execute("SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at_ms, id", (account_id,))
    return [_api_key(row) for row in rows]


def revoke_key(conn: Conn, key_id: str) -> ApiKey:
    row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"no key {key_id!r}", code="key_not_found")
    if row["revoked_at_ms"] is None:
        conn.execute("UPDATE api_keys SET revoked_at_ms = ? WHERE id = ?", (now_ms(), key_id))
    updated = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return _api_key(updated)
