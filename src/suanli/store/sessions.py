"""Console sessions as rows: only the SHA-256 of a session's random id is stored, never the id itself, so
that whoever reads the database cannot take over a browser's session (the same rule as keys' hashes).

A row names the key the session stands for (an account's API key or an admin key) by its id; the key
itself is looked up again at every request, so revoking it ends the session's access at once. Rows are
ended (``ended_at_ms``) at sign-out and deleted by the sweep once past their expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from suanli.store.accounts import hash_key
from suanli.store.admin_keys import AdminKey
from suanli.store.conn import Conn

KINDS = ("account", "admin")


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    kind: str  # "account" or "admin"
    key_id: str  # an api_keys id, or an admin_keys id
    account_id: str | None  # the account of an account session
    csrf_token: str
    created_at_ms: int
    expires_at_ms: int
    ended_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as read back, with the stored hash of its account key (None for an admin session, or
    when the key is gone) to look the key up again."""

    session: ConsoleSession
    key_hash: bytes | None


def insert_session(conn: Conn, session_id: str, session: ConsoleSession) -> None:
    conn.execute(
        "INSERT INTO console_sessions (id_hash, kind, key_id, account_id, csrf_token, created_at_ms, expires_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            hash_key(session_id),
            session.kind,
            session.key_id,
            session.account_id,
            session.csrf_token,
            session.created_at_ms,
            session.expires_at_ms,
        ),
    )


def find_session(conn: Conn, session_id: str) -> StoredSession | None:
    """The session whose id is ``session_id`` (ended and expired ones too); None if there is none."""
    row = conn.execute(
        "SELECT s.*, k.hash AS key_hash FROM console_sessions s "
        "LEFT JOIN api_keys k ON s.kind = 'account' AND k.id = s.key_id WHERE s.id_hash = ?",
        (hash_key(session_id),),
    ).fetchone()
    if row is None:
        return None
    return StoredSession(_session(row), row["key_hash"])


def _session(row: Any) -> ConsoleSession:
    names = ("kind", "key_id", "account_id", "csrf_token", "created_at_ms", "expires_at_ms", "ended_at_ms")
    return ConsoleSession(*(row[name] for name in names))


def find_admin_key_by_id(conn: Conn, key_id: str) -> AdminKey | None:
    """An admin session's key, revoked or not."""
    row = conn.execute("SELECT * FROM admin_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        return None
    fields = (row["id"], row["name"], row["prefix"], row["origin"], row["created_at_ms"], row["revoked_at_ms"])
    return AdminKey(*fields, hash=row["hash"])


def end_session(conn: Conn, session_id: str, at_ms: int) -> None:
    """Mark a session ended (sign-out); ending it again keeps the first time."""
    conn.execute(
        "UPDATE console_sessions SET ended_at_ms = ? WHERE id_hash = ? AND ended_at_ms IS NULL",
        (at_ms, hash_key(session_id)),
    )


def delete_expired(conn: Conn, at_ms: int) -> int:
    """Delete the sessions expired by ``at_ms`` (ended ones go then too); returns how many."""
    return int(conn.execute("DELETE FROM console_sessions WHERE expires_at_ms <= ?", (at_ms,)).rowcount)
