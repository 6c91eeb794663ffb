"""An account's webhooks: registering one (its signing secret shown once), listing, deleting; and the
signature each delivery carries (docs/statements.md, *Alerts and webhooks*).

The secret must be kept to sign with, so it is stored as it is (unlike a key, whose hash suffices); it is
returned only by the request that made it, never listed, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from suanli.economy.alerts import EVENT_TYPES, ensure_settings
from suanli.errors import BadRequest, Conflict, NotFound
from suanli.limits import WEBHOOK_URL_CHARS_MAX, WEBHOOKS_PER_ACCOUNT_MAX
from suanli.store.accounts import find_account
from suanli.store.conn import Conn
from suanli.store.db import now_ms

SIGNATURE_HEADER = "Suanli-Signature"
EVENT_ID_HEADER = "Suanli-Event-Id"
SECRET_PREFIX = "whsec_"
ALL_EVENTS = "*"


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    account_id: str
    url: str
    events: tuple[str, ...]
    created_at_ms: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "webhook",
            "url": self.url,
            "events": list(self.events),
            "created_at_ms": self.created_at_ms,
        }


def sign(secret: str, timestamp_s: int, body: bytes) -> str:
    """The ``Suanli-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``, as Stripe's."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp_s},v1={mac}"


def check_url(url: Any) -> str:
    """An http or https URL with a host; loopback addresses are allowed (a receiver in development)."""
    if not isinstance(url, str) or not 0 < len(url) <= WEBHOOK_URL_CHARS_MAX:
        raise BadRequest(
            f"'url' is an http or https URL of at most {WEBHOOK_URL_CHARS_MAX} characters.",
            code="invalid_url",
            param="url",
        )
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or parts.username
        or any(ch.isspace() or ord(ch) < 32 for ch in url)
    ):
        raise BadRequest(
            "'url' must be an http or https URL with a host and no credentials, e.g. https://example.com/hooks/suanli.",
            code="invalid_url",
            param="url",
        )
    return url


def check_events(events: Any) -> tuple[str, ...]:
    """The event types a webhook takes: all of them (absent or null), or a non-empty list of known ones."""
    if events is None:
        return (ALL_EVENTS,)
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise BadRequest("'events' is a non-empty list of event types.", param="events")
    unknown = [e for e in events if e not in EVENT_TYPES and e != ALL_EVENTS]
    if unknown:
        raise BadRequest(
            f"Unknown event type '{unknown[0]}'; the types are {', '.join(EVENT_TYPES)}.",
            code="unknown_event_type",
            param="events",
        )
    return tuple(dict.fromkeys(events))


def _stored_events(events: Sequence[str]) -> str:
    return "," + ",".join(events) + ","  # the outbox's trigger finds ",type," in it


def create_job(account_ref: str, url: Any, events: Any) -> Callable[[Conn], tuple[Webhook, str]]:
    """Register a webhook; its secret is returned once. The account's alerts are turned on (its default
    settings) if they were not."""
    checked_url, checked_events = check_url(url), check_events(events)

    def job(conn: Conn) -> tuple[Webhook, str]:
        account = find_account(conn, account_ref)
        count = conn.execute(
            "SELECT count(*) FROM webhooks WHERE account_id = ? AND deleted_at_ms IS NULL", (account.id,)
        ).fetchone()[0]
        if count >= WEBHOOKS_PER_ACCOUNT_MAX:
            raise Conflict(
                f"An account has at most {WEBHOOKS_PER_ACCOUNT_MAX} webhooks; delete one first.",
                code="too_many_webhooks",
            )
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        hook = Webhook("wh_" + secrets.token_hex(8), account.id, checked_url, checked_events, now_ms())
        conn.execute(
            "INSERT INTO webhooks (id, account_id, url, events, secret, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (hook.id, account.id, hook.url, _stored_events(hook.events), secret, hook.created_at_ms),
        )
        ensure_settings(conn, account.id)
        return hook, secret

    return job


def _webhook(row: Any) -> Webhook:
    return Webhook(row[0], row[1], row[2], tuple(e for e in row[3].split(",") if e), row[4])


def list_webhooks(conn: Conn, account_id: str) -> list[Webhook]:
    rows = conn.execute(
        "SELECT id, account_id, url, events, created_at_ms FROM webhooks WHERE account_id = ? "
        "AND deleted_at_ms IS NULL ORDER BY created_at_ms, id",
        (account_id,),
    ).fetchall()
    return [_webhook(row) for row in rows]


def delete_job(account_ref: str, webhook_id: str) -> Callable[[Conn], Webhook]:
    """Delete a webhook: its deliveries not yet made are given up (failed, "webhook deleted")."""

    def job(conn: Conn) -> Webhook:
        account = find_account(conn, account_ref)
        now = now_ms()
        row = conn.execute(
            "UPDATE webhooks SET deleted_at_ms = ? WHERE id = ? AND account_id = ? AND deleted_at_ms IS NULL "
            "RETURNING id, account_id, url, events, created_at_ms",
            (now, webhook_id, account.id),
        ).fetchone()
        if row is None:
            raise NotFound(f"No webhook '{webhook_id}' on this account.", code="webhook_not_found", param="webhook")
        conn.execute(
            "UPDATE webhook_deliveries SET state = 'failed', last_error = 'webhook deleted', updated_at_ms = ? "
            "WHERE webhook_id = ? AND state = 'pending'",
            (now, webhook_id),
        )
        return _webhook(row)

    return job
