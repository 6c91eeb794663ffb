"""Admin keys as a service: which keys a start leaves valid, and the jobs the CLI and the admin API run.

At each start (``ensure_admin_key``):

- with ``SUANLI_ADMIN_KEY`` set, that key is the one configured key: it is registered if new, and every
  other configured key and the generated one are revoked. Restarting with a new value is how the key is
  rotated; keys created with ``suanli admin-key create`` stay until revoked. A configured key that was
  revoked stays revoked (revocation is final): the start says so, and the setting must change.
- without it, nothing changes while any admin key is active. When none is (a first start), one is
  generated and written once to ``admin-key`` beside the database, readable only by its owner; the log
  says where, never what. The demo prints it too, on its own terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suanli.errors import Unauthorized
from suanli.store import cluster
from suanli.store.admin_keys import (
    AdminKey,
    create_admin_key,
    find_admin_key,
    has_active_admin_key,
    insert_admin_key,
    list_admin_keys,
    new_admin_raw_key,
    retire_admin_keys,
    revoke_admin_key,
)
from suanli.store.conn import Conn
from suanli.store.db import transaction
from suanli.store.key_file import write_key_file

ADMIN_KEY_FILE_NAME = "admin-key"
CONFIGURED_NAME = "SUANLI_ADMIN_KEY"
GENERATED_NAME = "generated at first start"


@dataclass(frozen=True, slots=True)
class AdminKeyStart:
    """What a start did to the admin keys, for the start-up log (which never shows a key)."""

    generated: str | None = None  # the key this start made, for the demo's terminal only
    file: Path | None = None  # where that key was written
    retired: list[AdminKey] = field(default_factory=list)  # configured and generated keys no longer valid
    configured_revoked: bool = False  # SUANLI_ADMIN_KEY names a revoked key: it does not work


def admin_key_path(database_path: Path) -> Path:
    """Where the generated first admin key is written: beside the database, like the demo's key."""
    return database_path.parent / ADMIN_KEY_FILE_NAME


def ensure_admin_key(conn: Conn, configured: str | None, key_file: Path) -> AdminKeyStart:
    """Apply the start-up rule of the module's docstring, in one transaction."""
    with transaction(conn):
        cluster.serialize(conn, "admin-keys")  # workers starting together: the first makes it, the rest see it
        if configured:
            return _configure(conn, configured, key_file)
        if has_active_admin_key(conn):
            return AdminKeyStart()
        raw = new_admin_raw_key()
        insert_admin_key(conn, raw, GENERATED_NAME, "generated")
        write_key_file(key_file, raw)  # before the commit: a key nobody can read must not be the only one
        return AdminKeyStart(generated=raw, file=key_file)


def _configure(conn: Conn, configured: str, key_file: Path) -> AdminKeyStart:
    found = find_admin_key(conn, configured)
    retired = retire_admin_keys(conn, keep_raw_key=configured)
    if found is None:
        insert_admin_key(conn, configured, CONFIGURED_NAME, "configured")
    if any(key.origin == "generated" for key in retired):
        key_file.unlink(missing_ok=True)  # it holds a key that no longer works
    return AdminKeyStart(retired=retired, configured_revoked=found is not None and found.revoked_at_ms is not None)


def start_messages(start: AdminKeyStart) -> list[str]:
    """The start-up log's lines about admin keys: where a generated key is, never the key."""
    messages = []
    if start.file is not None:
        messages.append(
            f"created the first admin key and wrote it to {start.file} (readable only by its owner); "
            "it is shown nowhere else: keep it safe, then delete the file"
        )
    if start.retired:
        ids = ", ".join(key.id for key in start.retired)
        messages.append(f"retired the admin keys SUANLI_ADMIN_KEY replaces: {ids}")
    if start.configured_revoked:
        messages.append("SUANLI_ADMIN_KEY is an admin key that was revoked: it is refused; configure another")
    return messages


def authenticate_admin(conn: Conn, raw_key: str | None) -> AdminKey:
    """The active admin key ``raw_key`` is, or 401. Looked up at each call, not cached: admin calls are
    few, and a key revoked from anywhere (the CLI included) is refused at once."""
    key = find_admin_key(conn, raw_key) if raw_key else None
    if key is None:
        raise Unauthorized("This needs an admin key: 'Authorization: Bearer sk-admin-...'.")
    if key.revoked_at_ms is not None:
        raise Unauthorized("The admin key has been revoked.", code="key_revoked")
    return key


def admin_key_dict(key: AdminKey) -> dict[str, Any]:
    fields = ("id", "name", "prefix", "origin", "created_at_ms", "revoked_at_ms")
    return {name: getattr(key, name) for name in fields}


def admin_keys_view(conn: Conn) -> dict[str, Any]:
    """Every admin key, revoked ones too, never a secret."""
    return {"data": [admin_key_dict(key) for key in list_admin_keys(conn)]}


def create_admin_key_job(name: str) -> Callable[[Conn], tuple[AdminKey, str]]:
    return lambda conn: create_admin_key(conn, name)


def revoke_admin_key_job(key_id: str) -> Callable[[Conn], AdminKey]:
    return lambda conn: revoke_admin_key(conn, key_id)
