"""What every store function needs of a database connection, whichever database it is.

SQLite's ``sqlite3.Connection`` and PostgreSQL's ``store.pg.PgConnection`` both satisfy ``Conn``: the SQL
in the store, ledger and economy modules is written once, in the subset both databases speak (``?``
placeholders, ``ON CONFLICT``, ``RETURNING``, 64-bit integers), and rows are read by position or by
column name. What differs (opening, migrations, transaction modes, durability, lock errors) lives in
``store.db`` (SQLite) and ``store.pg`` (PostgreSQL). Nothing in ``api/`` or ``gateway/`` names either
driver.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import psycopg

# A unique or foreign-key constraint refused a statement, in either database.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
# The database failed (locked, unreachable, out of space, timed out), in either database.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    owner: str  # the worker whose reservations this connection makes ('' for SQLite's one process)

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...

    def close(self) -> None: ...


class SqliteConnection(sqlite3.Connection):
    """SQLite's connection, with the one attribute the store adds."""

    owner: str = ""
