"""Opening the database: the embedded SQLite file by default, PostgreSQL for a ``postgresql://`` URL.

SQLite: WAL mode lets readers (the CLI, key look-ups, usage queries) run beside the one writer;
``synchronous=FULL`` makes each commit durable (one fsync per group commit, see ``writer.py``).
PostgreSQL: see ``store.pg``. Either way the caller gets a ``Conn`` and writes the same SQL.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from suanli.limits import SQLITE_BUSY_TIMEOUT_MS
from suanli.store import pg
from suanli.store.conn import Conn, SqliteConnection
from suanli.store.schema import MIGRATIONS

T = TypeVar("T")
# The database holds every account's money and its keys' hashes: its owner alone reads it. SQLite gives the
# -wal and -shm files it creates beside it the database file's own mode.
DATABASE_FILE_MODE = 0o600


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def connect(path: str | Path) -> SqliteConnection:
    """A connection in autocommit mode (transactions are explicit) with the platform's pragmas."""
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=False,
        timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        factory=SqliteConnection,
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return conn


def migrate(conn: SqliteConnection) -> int:
    """Apply the migrations not yet applied; returns the schema version now in force."""
    with transaction(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        return len(MIGRATIONS)


def statements(script: str) -> Iterator[str]:
    """A migration's statements, one by one: split at each ``;`` that ends a whole statement (a trigger's body
    holds several)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def open_database(target: str | Path) -> Conn:
    """The database at ``target`` (a file path, or a PostgreSQL URL), migrated to the current schema."""
    if pg.is_postgres(target):
        return pg.open_database(str(target))
    path = target
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, DATABASE_FILE_MODE))  # created 0600; an existing one is kept
    conn = connect(path)
    migrate(conn)
    return conn


@contextmanager
def transaction(conn: Conn) -> Iterator[Conn]:
    """BEGIN IMMEDIATE ... COMMIT (PostgreSQL: BEGIN), rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def run_in_transaction(conn: Conn, job: Callable[[Conn], T]) -> T:
    with transaction(conn):
        return job(conn)
