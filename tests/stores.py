"""Which store the tests run on: SQLite by default, PostgreSQL with ``SUANLI_TEST_STORE=postgres``.

``scripts/test`` runs the whole suite on SQLite, then the ledger, economy, recovery and API tests again on
PostgreSQL (a throwaway server started by ``scripts/postgres``); neither run is ever skipped.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from suanli.store import pg
from suanli.store.conn import Conn, SqliteConnection
from tests.pg import shared_server

STORE = os.environ.get("SUANLI_TEST_STORE", "sqlite")
ON_POSTGRES = STORE == "postgres"
# The PostgreSQL run repeats the SQLite run's property tests to show the two stores keep the same rules; a
# third of the examples does that (each costs several round trips there), and the SQLite run keeps them all.
PG_EXAMPLES_SHARE = 3


def examples(n: int) -> int:
    """A property test's examples on this run's store: ``n`` on SQLite, a third on PostgreSQL (at least 10)."""
    return max(n // PG_EXAMPLES_SHARE, 10) if ON_POSTGRES else n


def fresh_database(directory: Path, name: str = "suanli.db") -> str:
    """An empty database for one test: a file in ``directory``, or a new PostgreSQL database."""
    if ON_POSTGRES:
        return shared_server().new_database()
    return str(directory / name)


def database_env(database: str, directory: Path) -> dict[str, str]:
    """The environment that points a gateway (or the CLI) at ``database``."""
    if database.startswith("postgresql://"):
        return {"SUANLI_DATABASE_URL": database, "SUANLI_DATABASE": str(directory / "unused.db")}
    return {"SUANLI_DATABASE": database}


def inspect(database: str | Path) -> Conn:
    """A plain connection to look at (or change) what a gateway wrote: autocommit, rows compare equal to
    tuples."""
    if str(database).startswith("postgresql://"):
        return pg.connect(str(database))
    return sqlite3.connect(database, factory=SqliteConnection, isolation_level=None)  # autocommit, as PostgreSQL's
