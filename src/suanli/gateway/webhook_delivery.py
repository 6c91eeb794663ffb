"""Delivering the outbox: each worker's loop claims due deliveries, POSTs them signed, and records the outcome.

At least once: a delivery is claimed by pushing its next attempt ``WEBHOOK_CLAIM_S`` ahead and counting the
attempt, in a transaction of its own (on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so two workers never claim
the same one); it is then sent with no transaction open, and its outcome recorded in another. A worker that
dies while sending leaves the delivery due again once the claim runs out, so it is sent again: a receiver
de-duplicates by the event's id (``Suanli-Event-Id``, the same as the body's ``id``). A 2xx answer is
delivered; anything else (another status, a timeout, a refused connection) is tried again after the next wait
of the schedule, and after the last one the delivery is marked failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import httpx

from suanli import __version__
from suanli.economy.alerts import prepare_job
from suanli.errors import ConfigError
from suanli.gateway.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, sign
from suanli.limits import (
    SETTING_SECONDS_MAX,
    WEBHOOK_CLAIM_S,
    WEBHOOK_DELIVERY_BATCH_MAX,
    WEBHOOK_ERROR_CHARS_MAX,
    WEBHOOK_POLL_S,
    WEBHOOK_RETRY_SCHEDULE_S,
    WEBHOOK_TIMEOUT_S,
)
from suanli.store import cluster
from suanli.store.conn import Conn
from suanli.store.db import now_ms
from suanli.store.writer import Writer

log = logging.getLogger("suanli")
ROUNDS_PER_POLL_MAX = 10  # full batches sent back to back before the loop sleeps again


def _default_schedule() -> tuple[int, ...]:
    return tuple(int(s * 1000) for s in WEBHOOK_RETRY_SCHEDULE_S)


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """The retry schedule and waits (docs/configuration.md); tests shorten them to run in seconds."""

    retry_schedule_ms: tuple[int, ...] = field(default_factory=_default_schedule)
    timeout_s: float = WEBHOOK_TIMEOUT_S
    poll_s: float = WEBHOOK_POLL_S
    claim_ms: int = int(WEBHOOK_CLAIM_S * 1000)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeliverySettings:
        env = os.environ if env is None else env
        schedule = _default_schedule()
        if (text := env.get("SUANLI_WEBHOOK_RETRY_S")) is not None:
            schedule = tuple(int(_seconds("SUANLI_WEBHOOK_RETRY_S", part) * 1000) for part in text.split(","))
        timeout_s = _seconds("SUANLI_WEBHOOK_TIMEOUT_S", env.get("SUANLI_WEBHOOK_TIMEOUT_S", str(WEBHOOK_TIMEOUT_S)))
        poll_s = _seconds("SUANLI_WEBHOOK_POLL_S", env.get("SUANLI_WEBHOOK_POLL_S", str(WEBHOOK_POLL_S)))
        claim_ms = max(int(WEBHOOK_CLAIM_S * 1000), int(timeout_s * 2000))
        return cls(schedule, timeout_s, poll_s, claim_ms)


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= SETTING_SECONDS_MAX:
        raise ConfigError(
            f"{name} must be seconds above 0 and at most {SETTING_SECONDS_MAX:g} (a list, comma-separated)"
        )
    return value


@dataclass(frozen=True, slots=True)
class Claimed:
    event_id: str
    webhook_id: str
    attempt: int  # this attempt's number, from 1
    url: str
    secret: str = field(repr=False)
    body: str


@dataclass(frozen=True, slots=True)
class Outcome:
    claimed: Claimed
    status: int | None  # the receiver's HTTP status, if it answered
    error: str | None  # None: delivered


_CLAIM_SQL = (
    "UPDATE webhook_deliveries SET attempts = webhook_deliveries.attempts + 1, next_at_ms = ?, updated_at_ms = ? "
    "FROM (SELECT d.event_id, d.webhook_id FROM webhook_deliveries d JOIN alert_events e ON e.id = d.event_id "
    "WHERE d.state = 'pending' AND d.next_at_ms <= ? AND e.body IS NOT NULL ORDER BY d.next_at_ms LIMIT ?{lock}) due "
    "WHERE webhook_deliveries.event_id = due.event_id AND webhook_deliveries.webhook_id = due.webhook_id "
    "RETURNING webhook_deliveries.event_id, webhook_deliveries.webhook_id, webhook_deliveries.attempts"
)


def claim_job(now: int, claim_ms: int, limit: int = WEBHOOK_DELIVERY_BATCH_MAX) -> Callable[[Conn], list[Claimed]]:
    """Claim up to ``limit`` due deliveries for this worker (their next attempt moved past the claim)."""

    def job(conn: Conn) -> list[Claimed]:
        lock = " FOR UPDATE OF d SKIP LOCKED" if cluster.on_postgres(conn) else ""
        rows = conn.execute(_CLAIM_SQL.format(lock=lock), (now + claim_ms, now, now, limit)).fetchall()
        claimed = []
        for event_id, webhook_id, attempt in rows:
            found = conn.execute(
                "SELECT w.url, w.secret, e.body FROM webhooks w JOIN alert_events e ON e.id = ? WHERE w.id = ?",
                (event_id, webhook_id),
            ).fetchone()
            if found is not None:
                claimed.append(Claimed(event_id, webhook_id, attempt, found[0], found[1], found[2]))
        return claimed

    return job


def record_job(outcomes: Sequence[Outcome], schedule_ms: Sequence[int], now: int) -> Callable[[Conn], None]:
    """Delivered, due again after the schedule's next wait, or (past its last) failed."""

    def job(conn: Conn) -> None:
        for o in outcomes:
            c = o.claimed
            if o.error is None:
                conn.execute(
                    "UPDATE webhook_deliveries SET state = 'delivered', last_status = ?, last_error = NULL, "
                    "updated_at_ms = ? WHERE event_id = ? AND webhook_id = ? AND state = 'pending'",
                    (o.status, now, c.event_id, c.webhook_id),
                )
                continue
            retries_left = c.attempt <= len(schedule_ms)
            next_at = now + schedule_ms[c.attempt - 1] if retries_left else now
            conn.execute(
                "UPDATE webhook_deliveries SET state = ?, next_at_ms = ?, last_status = ?, last_error = ?, "
                "updated_at_ms = ? WHERE event_id = ? AND webhook_id = ? AND state = 'pending' AND attempts = ?",
                (
                    "pending" if retries_left else "failed",
                    next_at,
                    o.status,
                    o.error[:WEBHOOK_ERROR_CHARS_MAX],
                    now,
                    c.event_id,
                    c.webhook_id,
                    c.attempt,
                ),
            )

    return job


async def send(client: httpx.AsyncClient, c: Claimed, timeout_s: float) -> Outcome:
    """POST one delivery, signed; its answer's body is never read (only its status counts)."""
    body = c.body.encode()
    headers = {
        "content-type": "application/json",
        "user-agent": f"suanli-webhooks/{__version__}",
        SIGNATURE_HEADER: sign(c.secret, int(time.time()), body),
        EVENT_ID_HEADER: c.event_id,
    }
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", c.url, content=body, headers=headers) as response:
                status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(c, None, f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return Outcome(c, None, f"{type(exc).__name__}: {exc}")
    return Outcome(c, status, None if 200 <= status < 300 else f"HTTP {status}")


class WebhookDelivery:
    """The delivery loop's work, one round at a time (``deliver_once``; gateway/platform.py runs it)."""

    def __init__(self, writer: Writer, zone: ZoneInfo, settings: DeliverySettings) -> None:
        self._writer = writer
        self._zone = zone
        self.settings = settings
        timeout = httpx.Timeout(settings.timeout_s)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)

    async def deliver_once(self) -> None:
        await self._writer.run(prepare_job(self._zone))
        for _ in range(ROUNDS_PER_POLL_MAX):
            claimed = await self._writer.run(claim_job(now_ms(), self.settings.claim_ms))
            if not claimed:
                return
            outcomes = await asyncio.gather(*(send(self._client, c, self.settings.timeout_s) for c in claimed))
            for o in outcomes:
                if o.error is not None:
                    log.info(
                        "webhook %s: event %s attempt %d failed: %s",
                        o.claimed.webhook_id,
                        o.claimed.event_id,
                        o.claimed.attempt,
                        o.error,
                    )
            await self._writer.run(record_job(outcomes, self.settings.retry_schedule_ms, now_ms()))
            if len(claimed) < WEBHOOK_DELIVERY_BATCH_MAX:
                return

    async def close(self) -> None:
        await self._client.aclose()
