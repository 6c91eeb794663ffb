"""A real PostgreSQL for the tests: one server per session, an empty database per test.

The server is the project's own throwaway one (``scripts/postgres``: Debian's package, a data directory in
a temporary directory, 127.0.0.1 only, user ``suanli`` with trust authentication). Databases are made and
queried with PostgreSQL's own programs, so these fixtures need no Python driver. Nothing here skips: when
PostgreSQL cannot be installed or started, the fixture fails with what the script said.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "postgres"
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it

_names = itertools.count()


def pg_bin() -> Path:
    """The bin directory of the newest PostgreSQL installed, as the script picks it."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: _version(p.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL under /usr/lib/postgresql (scripts/postgres ensure installs it)")
    return found[-1].parent


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def run(*command: str | Path) -> str:
    """Run a command and return its stdout; a failure raises with its stderr, so a test errors loudly."""
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} exited with {done.returncode}:\n{done.stderr}")
    return done.stdout


def psql(url: str, sql: str) -> str:
    """Run SQL through psql on the database at ``url``; return its unaligned rows, one a line."""
    return run(pg_bin() / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-d", url, "-c", sql).strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """A running server: ``url`` is its ``suanli`` database; ``stop``/``start`` take it down and back up
    with its data; ``new_database`` makes an empty database and returns its URL."""

    def __init__(self, directory: Path, port: int) -> None:
        self.dir = directory
        self.port = port

    @property
    def url(self) -> str:
        return self.database_url("suanli")

    def database_url(self, name: str) -> str:
        return f"postgresql://suanli@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        printed = run(SCRIPT, "start", self.dir, str(self.port)).splitlines()
        if not printed or printed[-1] != self.url:
            raise RuntimeError(f"scripts/postgres start printed {printed!r}, not {self.url}")

    def stop(self) -> None:
        run(SCRIPT, "stop", self.dir)

    def new_database(self) -> str:
        name = f"test_{os.getpid()}_{next(_names)}"
        run(pg_bin() / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "suanli", name)
        return self.database_url(name)


def start_server(directory: Path) -> PgServer:
    """Start a server in ``directory`` on a free port (another try on another port if one was taken)."""
    failure: RuntimeError | None = None
    for _ in range(START_ATTEMPTS):
        server = PgServer(directory, free_port())
        try:
            server.start()
            return server
        except RuntimeError as exc:
            failure = exc
    raise RuntimeError(f"PostgreSQL did not start in {directory}") from failure


_shared: list[PgServer] = []


def shared_server() -> PgServer:
    """The test session's one server, started at first use (also from code that is not a fixture, such as
    a property test's examples); stopped and its directory removed when the session ends."""
    if not _shared:
        run(SCRIPT, "ensure")
        directory = Path(tempfile.mkdtemp(prefix="suanli-pg-"))
        directory.chmod(0o755)  # as root, the server runs as postgres, who must enter it
        server = start_server(directory)
        _shared.append(server)
        atexit.register(_remove, server)
    return _shared[0]


def _remove(server: PgServer) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session", name="pg_server")
def postgres_server() -> Iterator[PgServer]:
    """The session's server (see ``shared_server``)."""
    yield shared_server()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """An empty database of its own for one test."""
    return pg_server.new_database()
