"""The simulator on a real socket in a background thread, for the simulator's own test modules.

The socket is made with IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
protocol says TCP, and without it every answer's body waits ~40 ms behind its headers. Clients need
TCP_NODELAY too (``no_delay_client``): httpx writes a POST's headers and body separately.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx
import uvicorn

from suanli.providers.simulator import SimProfile, build_server

SERVER_START_TIMEOUT_S = 5.0
THREAD_JOIN_TIMEOUT_S = 10.0


def no_delay_client(base_url: str = "") -> httpx.Client:
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(base_url=base_url, transport=transport)


@contextmanager
def running_simulator(profiles: Mapping[str, SimProfile]) -> Iterator[str]:
    """Serve ``profiles`` for the duration of the block; yields the base URL."""
    sock = bound_socket()
    with serving(build_server("127.0.0.1", sock.getsockname()[1], profiles), sock) as url:
        yield url


def bound_socket() -> socket.socket:
    """A TCP socket on a free loopback port, with TCP_NODELAY's prerequisite (IPPROTO_TCP) set."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(server: uvicorn.Server, sock: socket.socket) -> Iterator[str]:
    """Run a uvicorn server on ``sock`` in a background thread for the block; yields its base URL."""
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(THREAD_JOIN_TIMEOUT_S)
        sock.close()
    assert not thread.is_alive()
