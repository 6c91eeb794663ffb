"""The gateway's own HTTP server: uvicorn, with a bound on every wait a client can impose.

uvicorn bounds some of them itself, and is configured to here: an idle keep-alive connection is closed
after ``CLIENT_KEEPALIVE_TIMEOUT_S``; beyond ``CLIENT_CONNECTIONS_MAX`` connections (or requests in
flight) a request gets 503 at once; after SIGTERM, calls in flight get ``SHUTDOWN_GRACE_S`` and are then
cancelled (each settles for what its client received), so the process ends whatever clients do.

Its httptools protocol bounds nothing before a request's head is complete: a connection that sends
nothing, or sends its head a byte at a time (slowloris), stays open for ever, and uvicorn's keep-alive
timer stops at the first byte. ``BoundedHttpProtocol`` adds what is missing, in the way the simulator's
framing.py steers the same protocol: every request head, a new connection's first included, must arrive
whole within ``CLIENT_HEADER_TIMEOUT_S`` and within ``CLIENT_HEADER_BYTES_MAX`` (else 431), or the
connection is closed. Everything else (parsing, flow control, shutdown) stays uvicorn's.

Each connection takes a file descriptor, and at the common default of 1,024 a few idle clients would make
every new call fail; the process raises its soft limit to the hard one at start (``raise_fd_limit``).

With several workers (``run_workers``), uvicorn's own supervisor binds the socket once and starts the
workers, each a fresh interpreter given the same configuration (so the same protocol and bounds, each
worker counting its own connections), and starts a new worker when one dies. Its workers would run
uvicorn's plain server; ``GatewayWorker`` makes them run ``GatewayServer``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import multiprocess

from suanli.limits import (
    CLIENT_CONNECTIONS_MAX,
    CLIENT_HEADER_BYTES_MAX,
    CLIENT_HEADER_TIMEOUT_S,
    CLIENT_KEEPALIVE_TIMEOUT_S,
    SHUTDOWN_GRACE_S,
)

log = logging.getLogger("suanli.server")
ORPHAN_CHECK_S = 0.5  # how often a worker looks whether its supervisor still lives
FDS_PER_CLIENT_CONNECTION = 2  # its own socket, and at times one to an operator
_HEAD_TOO_LARGE_BODY = (
    b'{"error": {"message": "The request head is too large.", "type": "invalid_request_error", '
    b'"param": null, "code": "headers_too_large"}}'
)
HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n%b\r\n%b" % (
    b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n" % len(_HEAD_TOO_LARGE_BODY),
    _HEAD_TOO_LARGE_BODY,
)


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size bound on every request head."""

    header_timeout_s: float = CLIENT_HEADER_TIMEOUT_S
    header_bytes_max: int = CLIENT_HEADER_BYTES_MAX

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer: asyncio.TimerHandle | None = None
        self._reading_head = True  # before the first request or between two, until a head is complete
        self._head_bytes = 0  # read since the head began

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()  # a new connection's first head is due from the start

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            self._arm_head_timer()  # the next request of a kept-alive connection has begun
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.header_bytes_max and not self.transport.is_closing():
            self._disarm_head_timer()
            self.transport.write(HEAD_TOO_LARGE)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()  # a head that began in the same read as the request before it

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head, self._head_bytes = True, 0

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class GatewayServer(uvicorn.Server):
    """uvicorn's server, dropping at the end of its shutdown the connections its grace did not end.

    A call cancelled when the grace ran out closes its connection, and a close waits to send what is
    buffered: to a client that stopped reading, for ever. Those are aborted, so the process ends."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()


class GatewayWorker(multiprocess.Process):
    """One worker process of uvicorn's supervisor, serving with ``GatewayServer``; it stops (gracefully,
    as on SIGTERM) when the supervisor is gone, killed without the chance to stop its workers."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = GatewayServer(config=self.config)
        return self._server

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # runs in the worker
        supervisor = os.getppid()
        threading.Thread(target=_stop_when_orphaned, args=(supervisor,), name="suanli-orphan", daemon=True).start()
        super().target(sockets)


def _stop_when_orphaned(supervisor: int) -> None:
    """Once the worker's parent is no longer ``supervisor`` (it died; the worker was handed to init), the
    worker ends itself with SIGTERM: it settles its calls in flight and ends its lease, where a worker left
    running would hold the port and its lease with nobody to stop it."""
    while os.getppid() == supervisor:
        time.sleep(ORPHAN_CHECK_S)
    log.warning("the supervisor (pid %d) is gone; this worker stops", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


def run_workers(config: uvicorn.Config) -> int:
    """Serve with ``config.workers`` processes under uvicorn's supervisor until SIGTERM or SIGINT; the exit
    status: 0, or uvicorn's ``STARTUP_FAILURE`` when a worker failed to start (the supervisor then stops,
    as every worker would fail the same way). ``config.app`` must be picklable: each worker unpickles it."""
    sock = config.bind_socket()
    # The supervisor makes its workers with its module's ``Process``, found by name, and takes no parameter
    # for it: the name is pointed at GatewayWorker while the supervisor runs (the workers themselves
    # unpickle GatewayWorker by its own name and need nothing swapped).
    plain = multiprocess.Process
    multiprocess.Process = GatewayWorker  # type: ignore[misc]
    try:
        supervisor = multiprocess.Multiprocess(config, sockets=[sock])
        supervisor.run()
    finally:
        multiprocess.Process = plain  # type: ignore[misc]
        sock.close()
    failed = any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


def server_config(
    app: Callable[..., Any],  # an ASGI application, or (with workers) a picklable factory of one
    host: str,
    port: int,
    log_level: str = "warning",
    *,
    protocol: type[BoundedHttpProtocol] = BoundedHttpProtocol,
    keepalive_timeout_s: int = CLIENT_KEEPALIVE_TIMEOUT_S,
    connections_max: int = CLIENT_CONNECTIONS_MAX,
    shutdown_grace_s: int = SHUTDOWN_GRACE_S,
    workers: int = 1,
) -> uvicorn.Config:
    """uvicorn's configuration for the gateway: its protocol, and every client-facing wait bounded. With
    ``workers`` above 1, ``app`` is a factory each worker calls (``run_workers``); the bounds are each
    worker's (``connections_max`` per worker)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=workers,  # given, so that WEB_CONCURRENCY in the environment changes nothing
        factory=workers > 1,
        loop="uvloop",
        http=protocol,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=keepalive_timeout_s,
        limit_concurrency=connections_max,
        timeout_graceful_shutdown=shutdown_grace_s,
        server_header=False,
        date_header=False,
        proxy_headers=False,  # the gateway does not use client addresses; one layer less per request
    )


def raise_fd_limit(connections_max: int = CLIENT_CONNECTIONS_MAX) -> int:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now in force, and
    warns when it cannot hold ``connections_max`` clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit the kernel caps lower
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    if soft != resource.RLIM_INFINITY and soft < FDS_PER_CLIENT_CONNECTION * connections_max:
        log.warning(
            "open-file limit %d is below what %d client connections may need; raise the hard limit (ulimit -Hn)",
            soft,
            connections_max,
        )
    return soft
