"""A worker's lease on a shared PostgreSQL database, and its ear for what other workers changed.

One thread per worker, with a connection of its own: it registers the lease, renews it every
``WORKER_LEASE_RENEW_S`` and, between renewals, listens on ``suanli_invalidate`` and hands each notice to the
event loop (``on_notice``). The loop never waits on it. If the database cannot be reached the thread
reconnects with backoff; a worker that has not renewed for half a TTL stops admitting (``healthy`` is
False: admissions get 503 and ``/healthz`` says why), since another worker may soon reclaim its
reservations. A lease found reclaimed means the others already resolved this worker's reservations: the
worker stops (SIGTERM to itself; the process manager starts a new one, under a new lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable

from suanli.limits import CLOCK_SKEW_WARN_S, STORE_RETRY_BACKOFF_MAX_S, WORKER_LEASE_RENEW_S, WORKER_LEASE_TTL_S
from suanli.store import cluster, pg
from suanli.store.conn import STORE_ERRORS
from suanli.store.db import now_ms

log = logging.getLogger("suanli.lease")
CLOCK_CHECK_S = 60.0  # how often a worker compares its clock with the database's, after the start


class LeaseKeeper:
    def __init__(self, url: str, on_notice: Callable[[str], None]) -> None:
        self.worker_id = f"wrk_{secrets.token_hex(8)}"
        self._url = url
        self._on_notice = on_notice
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suanli-lease", daemon=True)
        self._renewed_at = time.monotonic()
        self._conn: pg.PgConnection | None = None
        self.lost = False  # the lease was reclaimed by another worker
        self.clock_skew_s = 0.0
        self._clock_checked_at = time.monotonic()
        self.live_workers = 1  # leases current at the last renewal, this one included

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Register the lease (on the caller's thread: a worker that cannot is not started), then keep it."""
        self._loop = loop
        self._conn = self._connect()
        cluster.register(self._conn, cluster.Lease(self.worker_id, socket.gethostname(), os.getpid()))
        self._renewed_at = time.monotonic()
        self._check_clock(self._conn)
        self._thread.start()

    def healthy(self) -> bool:
        """Renewed within half a TTL, and not reclaimed: the worker may admit calls."""
        return not self.lost and time.monotonic() - self._renewed_at < WORKER_LEASE_TTL_S / 2

    def stop(self) -> None:
        """Stop renewing and end the lease (the worker settled what it had in flight before)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=WORKER_LEASE_RENEW_S * 2)
        try:
            conn = self._connect()
            try:
                cluster.end(conn, self.worker_id)
            finally:
                conn.close()
        except STORE_ERRORS:
            log.warning("could not end the lease %s; the other workers will reclaim it", self.worker_id)

    def _connect(self) -> pg.PgConnection:
        conn = pg.connect(self._url)
        conn.execute(f"LISTEN {cluster.CHANNEL}")
        return conn

    def _run(self) -> None:
        delay_s = WORKER_LEASE_RENEW_S / 4
        while not self._stop.is_set():
            try:
                self._serve()
            except STORE_ERRORS as exc:
                log.warning("lost the database (%s); reconnecting", str(exc).strip().splitlines()[:1])
                self._drop()
                self._stop.wait(delay_s)
                delay_s = min(delay_s * 2, STORE_RETRY_BACKOFF_MAX_S)
                continue
            delay_s = WORKER_LEASE_RENEW_S / 4
        self._drop()

    def _serve(self) -> None:
        """Listen until the next renewal is due, renew, repeat; raises if the connection fails."""
        if self._conn is None:
            self._conn = self._connect()
            self._deliver("*")  # notices may have been missed while disconnected: drop every cache entry
        while not self._stop.is_set():
            due = self._renewed_at + WORKER_LEASE_RENEW_S
            for notice in self._conn.raw.notifies(timeout=max(0.0, due - time.monotonic())):
                self._deliver(notice.payload)
            if self._stop.is_set():
                return
            if not cluster.renew(self._conn, self.worker_id):
                self._lose()
                return
            self._renewed_at = time.monotonic()
            self.live_workers = cluster.live_workers(self._conn)
            if self._renewed_at >= self._clock_checked_at + CLOCK_CHECK_S:
                self._check_clock(self._conn)

    def _check_clock(self, conn: pg.PgConnection) -> None:
        """Compare this machine's clock with the database's (at start, then every ``CLOCK_CHECK_S``): warn
        when it drifts more than ``CLOCK_SKEW_WARN_S`` off, and say when it is back."""
        was_off = abs(self.clock_skew_s) > CLOCK_SKEW_WARN_S
        self.clock_skew_s = cluster.clock_skew_s(conn, now_ms())
        self._clock_checked_at = time.monotonic()
        if abs(self.clock_skew_s) > CLOCK_SKEW_WARN_S:
            log.warning(
                "this machine's clock is %.1f s off the database's; leases use the database's, but request times,"
                " windows and pack expiry use this one",
                self.clock_skew_s,
            )
        elif was_off:
            log.warning("this machine's clock is back within %.1f s of the database's", CLOCK_SKEW_WARN_S)

    def _deliver(self, payload: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_notice, payload)

    def _lose(self) -> None:
        self.lost = True
        self._stop.set()
        log.error("lease %s was reclaimed by another worker; this worker stops", self.worker_id)
        os.kill(os.getpid(), signal.SIGTERM)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*STORE_ERRORS):
                self._conn.close()
            self._conn = None
