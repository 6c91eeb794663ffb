"""Admin keys: several, each named and revocable, stored only as its SHA-256 hash (as API keys are).

Each key has an origin. ``configured``: the value of ``SUANLI_ADMIN_KEY``. ``generated``: made at a first
start with none configured. ``created``: made since, by ``suanli admin-key create`` or the admin API.
Which configured and generated keys stay valid is decided at start-up (gateway/admin_keys.py); a created
key lasts until it is revoked. A revoked key stays listed and is refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from suanli.errors import BadRequest, Conflict, NotFound
from suanli.store.accounts import KEY_PREFIX, hash_key, keys_match, new_raw_key
from suanli.store.conn import Conn
from suanli.store.db import now_ms

ADMIN_KEY_PREFIX = "sk-admin-"
ADMIN_KEY_SHOWN_PREFIX_CHARS = 13  # "sk-admin-" and 4 hex digits: enough to tell keys apart in a list
ADMIN_KEY_NAME_CHARS_MAX = 64
RETIRED_ORIGINS = ("configured", "generated")  # the origins a new SUANLI_ADMIN_KEY retires


@dataclass(frozen=True, slots=True)
class AdminKey:
    id: str
    name: str
    prefix: str  # the first characters, to recognise a key in lists; never enough to use it
    origin: str  # "configured", "generated" or "created"
    created_at_ms: int
    revoked_at_ms: int | None
    hash: bytes


def _admin_key(row: Any) -> AdminKey:
    fields = (row["id"], row["name"], row["prefix"], row["origin"], row["created_at_ms"], row["revoked_at_ms"])
    return AdminKey(*fields, hash=row["hash"])


def new_admin_raw_key() -> str:
    return ADMIN_KEY_PREFIX + new_raw_key().removeprefix(KEY_PREFIX)


def shown_prefix(raw_key: str) -> str:
    """The prefix kept in the clear: at most a quarter of the key, so a short configured key is not given away."""
    return raw_key[: min(ADMIN_KEY_SHOWN_PREFIX_CHARS, len(raw_key) // 4)]


def insert_admin_key(conn: Conn, raw_key: str, name: str, origin: str) -> AdminKey:
    key_id = "adm_" + secrets.token_hex(8)
    key = AdminKey(key_id, name, shown_prefix(raw_key), origin, now_ms(), None, hash_key(raw_key))
    conn.execute(
        "INSERT INTO admin_keys (id, hash, prefix, name, origin, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (key.id, key.hash, key.prefix, key.name, key.origin, key.created_at_ms),
    )
    return key


def create_admin_key(conn: Conn, name: str) -> tuple[AdminKey, str]:
    """A new admin key; returns it with the raw secret, which is not kept anywhere."""
    if not name or len(name) > ADMIN_KEY_NAME_CHARS_MAX or not name.isprintable():
        raise BadRequest(f"an admin key's name is 1 to {ADMIN_KEY_NAME_CHARS_MAX} printable characters", param="name")
    raw = new_admin_raw_key()
    return insert_admin_key(conn, raw, name, "created"), raw


def find_admin_key(conn: Conn, raw_key: str) -> AdminKey | None:
    """The admin key with this secret, revoked or not; None if there is none."""
    row = conn.execute("SELECT * FROM admin_keys WHERE hash = ?", (hash_key(raw_key),)).fetchone()
    if row is None or not keys_match(row["hash"], raw_key):
        return None
    return _admin_key(row)


def list_admin_keys(conn: Conn) -> list[AdminKey]:
    return [_admin_key(row) for row in conn.execute("SELECT * FROM admin_keys ORDER BY created_at_ms, id")]


def has_active_admin_key(conn: Conn) -> bool:
    return conn.execute("SELECT 1 FROM admin_keys WHERE revoked_at_ms IS NULL LIMIT 1").fetchone() is not None


def revoke_admin_key(conn: Conn, key_id: str) -> AdminKey:
    """Revoke a key (again is a no-op). The last active key is kept: without it nobody could administer
    the platform over HTTP (the CLI, which works on the database, can still create another)."""
    row = conn.execute("SELECT * FROM admin_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"no admin key {key_id!r}", code="admin_key_not_found")
    if row["revoked_at_ms"] is None:
        others = conn.execute("SELECT count(*) FROM admin_keys WHERE revoked_at_ms IS NULL AND id != ?", (key_id,))
        if others.fetchone()[0] == 0:
            raise Conflict("this is the last active admin key; create another first", code="last_admin_key")
        conn.execute("UPDATE admin_keys SET revoked_at_ms = ? WHERE id = ?", (now_ms(), key_id))
    return _admin_key(conn.execute("SELECT * FROM admin_keys WHERE id = ?", (key_id,)).fetchone())


def retire_admin_keys(conn: Conn, keep_raw_key: str) -> list[AdminKey]:
    """Revoke the active configured and generated keys but ``keep_raw_key``; returns those revoked."""
    rows = conn.execute(
        "SELECT * FROM admin_keys WHERE revoked_at_ms IS NULL AND origin IN (?, ?) AND hash != ?",
        (*RETIRED_ORIGINS, hash_key(keep_raw_key)),
    ).fetchall()
    at_ms = now_ms()
    conn.executemany("UPDATE admin_keys SET revoked_at_ms = ? WHERE id = ?", [(at_ms, row["id"]) for row in rows])
    return [_admin_key(row) for row in rows]
