"""One gateway per database file: the owner holds an exclusive lock on ``<database>.owner`` for its life.

Start-up recovery resolves every reservation left open, on the assumption that the process that made it is
dead. A second gateway on the same file would void the first one's live reservations, and the first one's
settlements would then fail. So a gateway takes the lock before recovery and holds it until it exits; a
second one refuses to start, naming the holder. The lock is ``flock``: the kernel releases it when the
holder exits, however it exits (kill -9 included), so a new gateway takes over as soon as the old one is
gone, with no lease to time out. SQLite's file is local to one machine, so a local lock is enough; many
gateways on many machines share a PostgreSQL database instead, with leases (docs/architecture.md).

The CLI's administration commands do not take the lock: they write through SQLite's own locking, and
they never resolve reservations.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from suanli.errors import ConfigError

OWNER_FILE_SUFFIX = ".owner"
OWNER_FILE_MODE = 0o600


class DatabaseOwner:
    """The lock a serving gateway holds on its database; ``release`` (or the process's end) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, database_path: Path) -> DatabaseOwner:
        """Take the lock, or raise ``ConfigError`` naming the gateway that holds it."""
        path = database_path.with_name(database_path.name + OWNER_FILE_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, OWNER_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"another gateway serves {database_path} ({holder}); stop it first (docs/reliability.md: "
                "restarting without losing a call)"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        """Free the lock now (idempotent); the file stays, empty of meaning once unlocked."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
