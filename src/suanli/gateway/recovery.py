"""Start-up recovery: resolve every reservation a previous process left pending.

A reservation still open at start-up belongs to a request that died with its process. If its usage event
was recorded, the reservation is posted for that cost (never more than reserved); otherwise it is voided
and a usage event with outcome ``recovered`` records that the request cost nothing. Either way nothing
stays reserved. Only one gateway serves a database (``store.owner``), so at start-up every open
reservation is a dead process's. While the gateway runs, its sweep resolves the same way any reservation
older than the longest possible call (``RESERVATION_STALE_S``): one whose settlement failed for good.

On PostgreSQL several workers share the database, so start-up resolves nothing: each reservation names
its worker, and the sweep resolves only those of workers whose lease ended (``reclaim_job``, and
store/cluster.py on leases), whoever sweeps first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import orjson

from suanli.errors import invariant
from suanli.ledger import ASSET_CNY, Kind, Transfer, entries
from suanli.ledger.sqlite import apply_entry, open_pending, pending_transfer
from suanli.store import cluster
from suanli.store.conn import Conn
from suanli.store.db import now_ms, transaction
from suanli.store.usage import UsageEvent, insert_usage_event, usage_event

log = logging.getLogger("suanli")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    posted: int
    voided: int


def recover(conn: Conn) -> RecoveryReport:
    """Resolve all open reservations, each in its own transaction (at start-up, before any call)."""
    posted = voided = 0
    for pending, request_id in open_pending(conn):
        with transaction(conn):
            if resolve(conn, pending, request_id):
                posted += 1
            else:
                voided += 1
    invariant(not open_pending(conn), "recovery left a reservation open")
    return RecoveryReport(posted, voided)


def resolve_stale_job(older_than_ms: int) -> Callable[[Conn], RecoveryReport]:
    """A writer job resolving, as recovery does, every reservation made before ``older_than_ms``: older than
    the longest a call can last, so the call that made it can no longer settle it (its settlement failed
    for good, or was lost with a task)."""

    def job(conn: Conn) -> RecoveryReport:
        posted = voided = 0
        for pending, request_id in open_pending(conn, created_before_ms=older_than_ms):
            if resolve(conn, pending, request_id):
                posted += 1
            else:
                voided += 1
        return RecoveryReport(posted, voided)

    return job


def reclaim_job(conn: Conn) -> RecoveryReport:
    """Reclaim the leases expired for a whole TTL, then resolve a batch of the reservations of ended leases
    (rows another worker is resolving are skipped; the next sweep takes the rest)."""
    for worker_id in cluster.reclaim_expired(conn):
        log.warning("reclaimed the lease of worker %s, which stopped renewing it", worker_id)
    posted = voided = 0
    for transfer_id, request_id in cluster.orphaned_reservations(conn):
        pending = pending_transfer(conn, transfer_id)
        invariant(pending is not None, f"an open reservation {transfer_id} has no transfer")
        if pending is not None and resolve(conn, pending, request_id):
            posted += 1
        else:
            voided += 1
    return RecoveryReport(posted, voided)


def once(job: Callable[[Conn], T]) -> Callable[[Conn], T | None]:
    """A sweep job that one worker of a cluster runs per round: the others skip it (None)."""

    def cluster_job(conn: Conn) -> T | None:
        return job(conn) if cluster.try_serialize(conn, cluster.SWEEP_LOCK) else None

    return cluster_job


def resolve(conn: Conn, pending: Transfer, request_id: str) -> bool:
    """Post one open reservation for its recorded usage (True), or void it (False); in the caller's
    transaction."""
    event = usage_event(conn, request_id)
    if not pending.debit_account.startswith("wallet:"):  # a plan or a budget: given back whole
        void = Transfer(
            f"{pending.id}.recovered",
            Kind.VOID,
            pending.debit_account,
            pending.credit_account,
            pending.asset,
            0,
            pending.id,
        )
        apply_entry(conn, [void], request_id)
        if event is None:
            insert_usage_event(conn, _recovered_event(pending, request_id))
        return False
    if event is not None and event.cost_nano > 0:
        amount = min(event.cost_nano, pending.amount)
        apply_entry(conn, entries.settlement(request_id, pending, event.operator, amount), request_id)
        return True
    apply_entry(conn, entries.settlement(request_id, pending, "", 0), request_id)
    if event is None:
        insert_usage_event(conn, _recovered_event(pending, request_id))
    return False


def _recovered_event(pending: Transfer, request_id: str) -> UsageEvent:
    memo = _memo(pending)
    return UsageEvent(
        request_id=request_id,
        account_id=memo.get("account", pending.debit_account.removeprefix("wallet:")),
        key_id=memo.get("key", ""),
        model=memo.get("model", ""),
        operator="",
        offer_id="",
        upstream_model="",
        stream=False,
        input_tokens=0,
        cached_input_tokens=0,
        output_tokens=0,
        reasoning_tokens=0,
        estimated=False,
        price_input_nano=0,
        price_cached_input_nano=0,
        price_output_nano=0,
        price_reasoning_nano=0,
        cost_nano=0,
        reserved_nano=pending.amount if pending.asset == ASSET_CNY else 0,
        uncharged_nano=0,
        outcome="recovered",
        http_status=0,
        error_code="process_died",
        latency_ms=0,
        ttft_ms=None,
        created_at_ms=now_ms(),
        attempts=0,
    )


def _memo(pending: Transfer) -> dict[str, str]:
    try:
        value = orjson.loads(pending.memo) if pending.memo else {}
    except orjson.JSONDecodeError:
        return {}
    return {k: str(v) for k, v in value.items()} if isinstance(value, dict) else {}
