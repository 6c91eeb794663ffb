"""Console sessions: a browser signs in once with a key, then holds only a random session id in an HttpOnly,
SameSite=Strict cookie; neither the page's scripts nor the cookie keep the key.

A session stands for its key. Every request that comes with the cookie (and no key header) reads the
session's row, one primary-key read on the reader, and then the key itself: so a sign-out, an expiry or
the key's revocation, on any worker, ends the session's access at the next request, with no cache to
invalidate. That read is affordable because console traffic is a person's clicks; a call with a key
header never comes here, so the hot path is what it was.

CSRF: besides SameSite=Strict, every unsafe method with the cookie must send ``x-csrf-token`` equal to
the session's token, which only a page of this origin can read (from the sign-in answer or
``GET /console/session``). An account session may use only an account's endpoints and an admin session
only the admin's (403 ``account_only`` / ``admin_only``): a session never widens what its key may do.

No library: a session is one row (store/sessions.py) and a cookie. A signed-cookie session (Starlette's
``SessionMiddleware``) could not be ended before its expiry and would need a secret shared by every worker.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suanli.errors import Forbidden, Unauthorized
from suanli.gateway.admin_keys import authenticate_admin
from suanli.gateway.auth import Caller, KeyCache
from suanli.limits import CONSOLE_SESSION_KEPT_S
from suanli.store.accounts import find_key_by_hash
from suanli.store.admin_keys import ADMIN_KEY_PREFIX, AdminKey, find_admin_key
from suanli.store.conn import Conn
from suanli.store.db import now_ms
from suanli.store.sessions import (
    ConsoleSession,
    StoredSession,
    delete_expired,
    end_session,
    find_admin_key_by_id,
    find_session,
    insert_session,
)
from suanli.store.writer import Writer

SESSION_COOKIE = "suanli_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECRET_BYTES = 32  # a session id and a CSRF token each carry 256 random bits


@dataclass(frozen=True, slots=True)
class Holder:
    """A live session and what it stands for now: an account key's caller, or an admin key."""

    session: ConsoleSession
    caller: Caller | None = None
    admin_key: AdminKey | None = None


@dataclass(frozen=True, slots=True)
class SignedIn:
    session_id: str  # for the cookie alone: never stored, answered in a body or logged
    holder: Holder


def identify_key(keys: KeyCache, conn: Conn, raw_key: str) -> Caller | AdminKey:
    """The account key or admin key ``raw_key`` is, checked as a call with it would be (401 otherwise)."""
    if raw_key.startswith(ADMIN_KEY_PREFIX):
        return authenticate_admin(conn, raw_key)
    try:
        return keys.authenticate(raw_key)
    except Unauthorized as exc:  # a configured admin key (SUANLI_ADMIN_KEY) may have any shape
        if exc.code != "invalid_api_key" or find_admin_key(conn, raw_key) is None:
            raise
    return authenticate_admin(conn, raw_key)


async def sign_in(writer: Writer, key: Caller | AdminKey, ttl_s: float) -> SignedIn:
    """A new session for ``key`` (already checked), lasting ``ttl_s``."""
    at_ms = now_ms()
    expires_at_ms = at_ms + math.ceil(ttl_s * 1000)
    csrf_token = secrets.token_urlsafe(SECRET_BYTES)
    if isinstance(key, Caller):
        session = ConsoleSession("account", key.key.id, key.account.id, csrf_token, at_ms, expires_at_ms)
        holder = Holder(session, caller=key)
    else:
        holder = Holder(ConsoleSession("admin", key.id, None, csrf_token, at_ms, expires_at_ms), admin_key=key)
    session_id = secrets.token_urlsafe(SECRET_BYTES)
    # Not fsynced: a sign-in lost to a power cut costs a new sign-in, nothing more.
    await writer.run(lambda conn: insert_session(conn, session_id, holder.session), durable=False)
    return SignedIn(session_id, holder)


def live_session(conn: Conn, session_id: str | None) -> StoredSession:
    """The session of the cookie, neither ended nor expired (401 ``no_session`` / ``session_expired``)."""
    stored = find_session(conn, session_id) if session_id else None
    if stored is None or stored.session.ended_at_ms is not None:
        raise Unauthorized("No console session: sign in with a key.", code="no_session")
    if stored.session.expires_at_ms <= now_ms():
        raise Unauthorized("The console session has expired: sign in again.", code="session_expired")
    return stored


def current(conn: Conn, session_id: str | None) -> Holder:
    """The cookie's live session with its key looked up again: a revoked or expired key is refused (401)."""
    stored = live_session(conn, session_id)
    if stored.session.kind == "admin":
        return Holder(stored.session, admin_key=_live_admin_key(conn, stored.session.key_id))
    return Holder(stored.session, caller=_live_caller(conn, stored.key_hash))


def _live_admin_key(conn: Conn, key_id: str) -> AdminKey:
    key = find_admin_key_by_id(conn, key_id)
    if key is None:
        raise Unauthorized("The admin key of this session no longer exists: sign in again.")
    if key.revoked_at_ms is not None:
        raise Unauthorized("The admin key has been revoked.", code="key_revoked")
    return key


def _live_caller(conn: Conn, key_hash: bytes | None) -> Caller:
    found = find_key_by_hash(conn, key_hash) if key_hash is not None else None
    if found is None:
        raise Unauthorized("The API key of this session no longer exists: sign in again.")
    key, account = found
    if key.revoked_at_ms is not None:
        raise Unauthorized("The API key has been revoked.", code="key_revoked")
    if key.expires_at_ms is not None and key.expires_at_ms <= now_ms():
        raise Unauthorized("The API key has expired.", code="key_expired")
    return Caller(key, account)


def check_csrf(session: ConsoleSession, method: str, csrf_token: str | None) -> None:
    """An unsafe method with the cookie must carry the session's CSRF token (403 otherwise)."""
    if method in SAFE_METHODS:
        return
    if csrf_token is None or not hmac.compare_digest(csrf_token.encode(), session.csrf_token.encode()):
        message = f"A write with the session cookie needs its CSRF token in '{CSRF_HEADER}'."
        raise Forbidden(message, code="csrf_token_invalid")


def account_caller(conn: Conn, session_id: str, method: str, csrf_token: str | None) -> Caller:
    """The account a request with the cookie acts for; an admin session is refused (403 ``account_only``)."""
    holder = current(conn, session_id)
    check_csrf(holder.session, method, csrf_token)
    if holder.caller is None:
        raise Forbidden("This is an account's endpoint; sign in with the account's key.", code="account_only")
    return holder.caller


def admin_key_for(conn: Conn, session_id: str, method: str, csrf_token: str | None) -> AdminKey:
    """The admin key a request with the cookie acts with; an account session is refused (403 ``admin_only``)."""
    holder = current(conn, session_id)
    check_csrf(holder.session, method, csrf_token)
    if holder.admin_key is None:
        raise Forbidden("This endpoint is the platform administrator's; sign in with an admin key.", code="admin_only")
    return holder.admin_key


async def sign_out(writer: Writer, conn: Conn, session_id: str | None, csrf_token: str | None) -> None:
    """End the cookie's session (its key need not be valid still: a revoked key's session can sign out)."""
    stored = live_session(conn, session_id)
    check_csrf(stored.session, "DELETE", csrf_token)
    ended_ms = now_ms()
    await writer.run(lambda c: end_session(c, str(session_id), ended_ms))


def session_view(holder: Holder) -> dict[str, Any]:
    """The answer of ``/console/session``: who the session is, never its id nor the key."""
    session, caller, admin_key = holder.session, holder.caller, holder.admin_key
    account: dict[str, str] | None
    key: dict[str, str] | None
    if caller is not None:
        account = {"id": caller.account.id, "name": caller.account.name, "tier": caller.account.tier}
        key = {"id": caller.key.id, "name": caller.key.name, "prefix": caller.key.prefix}
    else:
        account = None
        key = {"id": session.key_id, "name": admin_key.name, "prefix": admin_key.prefix} if admin_key else None
    return {
        "object": "console_session",
        "kind": session.kind,
        "account": account,
        "key": key,
        "csrf_token": session.csrf_token,
        "expires_at_ms": session.expires_at_ms,
        "language": None,
    }


def delete_expired_job(at_ms: int) -> Callable[[Conn], int]:
    """The sweep's job: delete the sessions expired ``CONSOLE_SESSION_KEPT_S`` before ``at_ms``. Until then
    a returning page is told its session expired (401 ``session_expired``), not that it has none."""
    return lambda conn: delete_expired(conn, at_ms - CONSOLE_SESSION_KEPT_S * 1000)
