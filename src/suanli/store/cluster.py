"""What several worker processes on one PostgreSQL database need of each other: leases, locks, notices.

**Leases.** Each worker registers a row in ``workers`` and renews ``expires_at`` (database time) every
``WORKER_LEASE_RENEW_S``; every reservation it makes carries its id (``open_pending.owner``). A worker's
sweep that finds a lease expired records the first sighting, and reclaims it once it has stayed expired a
whole ``WORKER_LEASE_TTL_S`` after that sighting (so a live worker gets one TTL after a database outage to
renew). Reclaiming ends the lease (``ended_at``); the reservations of every ended lease are then resolved
by whichever worker gets to them first (``FOR UPDATE SKIP LOCKED``), as recovery does. A worker whose lease
was ended while it lived learns so at its next renewal and exits.

**Locks.** ``serialize`` takes a transaction-level advisory lock: the jobs the single SQLite writer made
serial for free (opening an allowance window, a grant, a contract's rebate, the first admin key) take it
on the account or name they touch; the cluster sweep takes ``SWEEP_LOCK`` with ``try`` and skips the
round if another worker holds it.

**Notices.** ``notify`` sends ``suanli_invalidate`` at the commit of the transaction that changed a key,
an account, a plan, a product or a price; every worker's listener drops what it cached.

On SQLite (one process) the leases do not exist, ``serialize`` and ``notify`` do nothing: the single writer
already serialises every job, and there is no other process to tell.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanli.limits import WORKER_LEASE_TTL_S
from suanli.store.conn import Conn
from suanli.store.pg import PgConnection

CHANNEL = "suanli_invalidate"
SWEEP_LOCK = "suanli:sweep"
RECLAIM_BATCH = 500  # reservations resolved per transaction when a lease is reclaimed


def on_postgres(conn: Conn) -> bool:
    return isinstance(conn, PgConnection)


def serialize(conn: Conn, name: str) -> None:
    """Hold a lock on ``name`` until the transaction ends (PostgreSQL; SQLite's writer is serial already)."""
    if on_postgres(conn):
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))


def account_lock(account_id: str) -> str:
    """The lock name a job takes before reading and then writing one account's plans or contract."""
    return f"account:{account_id}"


def try_serialize(conn: Conn, name: str) -> bool:
    """Take the lock on ``name`` for the transaction if nobody holds it; False if another worker does."""
    if not on_postgres(conn):
        return True
    return bool(conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0))", (name,)).fetchone()[0])


def notify(conn: Conn, what: str) -> None:
    """Tell every worker that ``what`` (``key:ID``, ``account:ID``, ``products``, ``prices``) changed; sent
    when the transaction commits, not at all if it rolls back."""
    if on_postgres(conn):
        conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, what))


@dataclass(frozen=True, slots=True)
class Lease:
    worker_id: str
    host: str
    pid: int


def register(conn: Conn, lease: Lease) -> None:
    conn.execute(
        "INSERT INTO workers (id, host, pid, expires_at) VALUES (?, ?, ?, now() + make_interval(secs => ?))",
        (lease.worker_id, lease.host, lease.pid, WORKER_LEASE_TTL_S),
    )


def renew(conn: Conn, worker_id: str) -> bool:
    """Extend the lease; False if it was reclaimed (the worker must stop)."""
    row = conn.execute(
        "UPDATE workers SET expires_at = now() + make_interval(secs => ?), seen_expired_at = NULL "
        "WHERE id = ? AND ended_at IS NULL RETURNING 1",
        (WORKER_LEASE_TTL_S, worker_id),
    ).fetchone()
    return row is not None


def end(conn: Conn, worker_id: str) -> None:
    """A worker that stops cleanly ends its own lease (what it left reserved is resolved like a dead one's)."""
    conn.execute("UPDATE workers SET ended_at = now() WHERE id = ? AND ended_at IS NULL", (worker_id,))


def reclaim_expired(conn: Conn) -> list[str]:
    """Record first sightings of expired leases, end those expired for a whole TTL since; their ids."""
    conn.execute(
        "UPDATE workers SET seen_expired_at = now() "
        "WHERE ended_at IS NULL AND expires_at < now() AND seen_expired_at IS NULL"
    )
    rows = conn.execute(
        "UPDATE workers SET ended_at = now() WHERE ended_at IS NULL AND expires_at < now() "
        "AND seen_expired_at < now() - make_interval(secs => ?) RETURNING id",
        (WORKER_LEASE_TTL_S,),
    ).fetchall()
    return [row[0] for row in rows]


def orphaned_reservations(conn: Conn, limit: int = RECLAIM_BATCH) -> list[tuple[str, str]]:
    """(transfer id, request id) of reservations whose owner's lease has ended, locked for this transaction;
    rows another worker is resolving are skipped."""
    rows = conn.execute(
        "SELECT o.transfer_id, o.request_id FROM open_pending o JOIN workers w ON w.id = o.owner "
        "WHERE w.ended_at IS NOT NULL ORDER BY o.created_at_ms LIMIT ? FOR UPDATE OF o SKIP LOCKED",
        (limit,),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def live_workers(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM workers WHERE ended_at IS NULL AND expires_at > now()").fetchone()
    return max(1, int(row[0]))


def clock_skew_s(conn: Conn, local_ms: int) -> float:
    """How far this machine's clock is from the database's (positive: ahead)."""
    row = conn.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()
    return (local_ms - int(row[0])) / 1000
