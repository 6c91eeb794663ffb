"""The demo's API key, kept beside the database so a restarted demo prints the same key.

Keys are stored only as their hashes, so the platform cannot show a key twice. The demo is the one place
that wants to: whoever pasted its key into a client should not have to paste a new one after each
restart, nor collect a pile of unused keys on the demo account. So the demo writes the key it made to a
file only its owner can read (mode 0600) and, on the next start, reuses it if that key still exists,
belongs to the demo account and is neither revoked nor expired; otherwise it makes a new one and
replaces the file.
"""

from __future__ import annotations

from pathlib import Path

from suanli.store.accounts import KEY_PREFIX, create_key, find_key_by_hash, hash_key
from suanli.store.conn import Conn
from suanli.store.db import now_ms, run_in_transaction
from suanli.store.key_file import write_key_file

DEMO_KEY_FILE_NAME = "demo-key"
DEMO_KEY_NAME = "demo"
KEY_FILE_BYTES_MAX = 256  # a key is 51 characters; anything much longer is not a file we wrote


def demo_key_path(database_path: Path) -> Path:
    """Where the demo keeps its key: beside the database, so each data directory has its own."""
    return database_path.parent / DEMO_KEY_FILE_NAME


def demo_key(conn: Conn, account_id: str, path: Path) -> str:
    """The kept key if it still works for ``account_id``; else a new key of that account, kept in ``path``."""
    kept = _read_key(path)
    if kept is not None and _usable(conn, kept, account_id):
        return kept
    _, raw = run_in_transaction(conn, lambda c: create_key(c, account_id, name=DEMO_KEY_NAME))
    write_key_file(path, raw)
    return raw


def _usable(conn: Conn, raw: str, account_id: str) -> bool:
    found = find_key_by_hash(conn, hash_key(raw))
    if found is None:
        return False
    key, _ = found
    expired = key.expires_at_ms is not None and key.expires_at_ms <= now_ms()
    return key.account_id == account_id and key.revoked_at_ms is None and not expired


def _read_key(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            text = handle.read(KEY_FILE_BYTES_MAX + 1).decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    if len(text) > KEY_FILE_BYTES_MAX or not text.startswith(KEY_PREFIX):
        return None
    return text
