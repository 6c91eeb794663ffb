"""Authenticating API keys: a hash look-up, cached in memory so the hot path never waits on the store.

A cached entry lives ``KEY_CACHE_TTL_S``; a key revoked through this process's admin API is dropped at
once, one revoked from another process (the CLI) is refused within the TTL. Unknown keys are cached too,
so a flood of bad keys costs one look-up per key per TTL.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from suanli.errors import Unauthorized
from suanli.limits import KEY_CACHE_ENTRIES_MAX, KEY_CACHE_TTL_S
from suanli.store.accounts import Account, ApiKey, find_key_by_hash, hash_key, keys_match
from suanli.store.conn import Conn
from suanli.store.db import now_ms


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key and the account it belongs to."""

    key: ApiKey
    account: Account


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


class KeyCache:
    def __init__(self, reader: Conn) -> None:
        self._reader = reader
        self._entries: OrderedDict[bytes, tuple[float, Caller | None]] = OrderedDict()

    def authenticate(self, raw_key: str | None) -> Caller:
        if not raw_key:
            raise Unauthorized("No API key: send it as 'Authorization: Bearer sk-...'.")
        key_hash = hash_key(raw_key)
        caller = self._lookup(key_hash)
        if caller is None or not keys_match(caller.key.hash, raw_key):
            raise Unauthorized("The API key is not valid.")
        if caller.key.revoked_at_ms is not None:
            raise Unauthorized("The API key has been revoked.", code="key_revoked")
        if caller.key.expires_at_ms is not None and caller.key.expires_at_ms <= now_ms():
            raise Unauthorized("The API key has expired.", code="key_expired")
        return caller

    def _lookup(self, key_hash: bytes) -> Caller | None:
        now = time.monotonic()
        entry = self._entries.get(key_hash)
        if entry is not None and entry[0] > now:
            return entry[1]
        found = find_key_by_hash(self._reader, key_hash)
        caller = Caller(*found) if found else None
        self._entries[key_hash] = (now + KEY_CACHE_TTL_S, caller)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > KEY_CACHE_ENTRIES_MAX:
            self._entries.popitem(last=False)
        return caller

    def forget_account(self, account_id: str) -> None:
        """Drop an account's keys from the cache (after the account changed here)."""
        for key_hash, (_, caller) in list(self._entries.items()):
            if caller is not None and caller.account.id == account_id:
                del self._entries[key_hash]

    def forget_all(self) -> None:
        self._entries.clear()

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (after it was revoked here)."""
        for key_hash, (_, caller) in list(self._entries.items()):
            if caller is not None and caller.key.id == key_id:
                del self._entries[key_hash]
