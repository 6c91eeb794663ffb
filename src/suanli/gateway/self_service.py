"""An account managing its own keys with one of them: create, list, revoke; never another account's.

A key limited to some models makes keys limited to those models at most: a key never makes a key that can
do more than itself. Writes are jobs of the group-commit writer, as the admin's are (gateway/accounts.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from suanli.errors import BadRequest, Conflict, NotFound
from suanli.gateway.accounts import key_dict, parse_expiry_ms
from suanli.gateway.auth import Caller
from suanli.store.accounts import ApiKey, create_key, list_keys, revoke_key
from suanli.store.conn import Conn
from suanli.store.db import now_ms

ACCOUNT_KEYS_ACTIVE_MAX = 100  # keys an account may hold that are neither revoked nor expired
KEY_NAME_CHARS_MAX = 100


def keys_view(conn: Conn, account_id: str) -> list[dict[str, Any]]:
    """The account's keys, revoked and expired ones too; never a secret."""
    return [key_dict(k) for k in list_keys(conn, account_id)]


def key_request(caller: Caller, body: dict[str, Any]) -> tuple[str, list[str] | None, int | None]:
    """A new key's name, models and expiry from ``POST /v1/keys``, within what the calling key may do."""
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > KEY_NAME_CHARS_MAX or not name.isprintable():
        raise BadRequest(
            f"'name' is a string of at most {KEY_NAME_CHARS_MAX} printable characters.",
            code="invalid_field",
            param="name",
        )
    models = body.get("models")
    if models is not None and (
        not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models)
    ):
        raise BadRequest("'models' is a non-empty array of model names.", code="invalid_field", param="models")
    allowed = caller.key.models
    if allowed is not None:
        if models is None:
            models = list(allowed)
        elif not set(models) <= set(allowed):
            raise BadRequest(
                "A key limited to some models can make keys for those models only.",
                code="invalid_field",
                param="models",
            )
    expires = body.get("expires_at")
    if expires is not None and not isinstance(expires, str):
        raise BadRequest("'expires_at' is an ISO 8601 time.", code="invalid_field", param="expires_at")
    return name, models, parse_expiry_ms(expires, "expires_at")


def create_own_key_job(
    account_id: str, name: str, models: Sequence[str] | None, expires_at_ms: int | None
) -> Callable[[Conn], tuple[ApiKey, str]]:
    def job(conn: Conn) -> tuple[ApiKey, str]:
        now = now_ms()
        active = conn.execute(
            "SELECT COUNT(*) FROM api_keys WHERE account_id = ? AND revoked_at_ms IS NULL "
            "AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
            (account_id, now),
        ).fetchone()[0]
        if int(active) >= ACCOUNT_KEYS_ACTIVE_MAX:
            raise Conflict(
                f"The account holds {ACCOUNT_KEYS_ACTIVE_MAX} active keys, the most it may; revoke one first.",
                code="too_many_keys",
            )
        return create_key(conn, account_id, name=name, models=models, expires_at_ms=expires_at_ms)

    return job


def revoke_own_key_job(account_id: str, key_id: str) -> Callable[[Conn], ApiKey]:
    """Revoke a key of this account; a key of another account (or none) is 404, and nothing is revoked."""

    def job(conn: Conn) -> ApiKey:
        row = conn.execute("SELECT account_id FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None or row[0] != account_id:
            raise NotFound(f"No key '{key_id}' on this account.", code="key_not_found", param="key_id")
        return revoke_key(conn, key_id)

    return job
