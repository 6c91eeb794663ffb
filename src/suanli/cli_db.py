"""``suanli db``: the database's schema, migrated on purpose.

The gateway and every command migrate the database when they open it (store/db.py), so nothing requires
this; ``db upgrade`` does that alone, so a deployment can migrate once before it starts or replaces
workers, and see the version the schema is then at. ``db version`` reads the version and changes nothing.
The SQLite file and PostgreSQL count their versions apart (store/schema.py, store/schema_pg.py).
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from suanli.cli_admin import Common, emit, group, leaf
from suanli.errors import ConfigError
from suanli.gateway.platform import Settings
from suanli.store import pg
from suanli.store.conn import Conn, SqliteConnection
from suanli.store.db import open_database
from suanli.store.schema import MIGRATIONS
from suanli.store.schema_pg import PG_MIGRATIONS


def upgrade(args: argparse.Namespace, settings: Settings) -> int:
    conn = open_database(settings.database)  # migrates (on PostgreSQL under a lock: once, whoever else starts)
    try:
        return _report(args, settings, schema_version(conn))
    finally:
        conn.close()


def version(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url is not None:
        conn: Conn = _connect_postgres(settings.database_url)
    elif not settings.database_path.exists():
        return _report(args, settings, 0)
    else:
        conn = _connect_sqlite(settings.database_path)
    try:
        return _report(args, settings, schema_version(conn))
    finally:
        conn.close()


def schema_version(conn: Conn) -> int:
    if isinstance(conn, pg.PgConnection):
        return pg.schema_version(conn)
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _connect_postgres(url: str) -> pg.PgConnection:
    """A connection that does not migrate; a URL that cannot be reached is one line, as at start-up."""
    try:
        return pg.connect(url)
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot reach PostgreSQL at {pg.redact(url)}: {first_line}") from None


def _connect_sqlite(path: Path) -> Conn:
    try:  # mode=rw: an existing file only, never a new one
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, factory=SqliteConnection)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the SQLite file {path}: {exc}") from None


def _report(args: argparse.Namespace, settings: Settings, current: int) -> int:
    latest = len(PG_MIGRATIONS if settings.on_postgres else MIGRATIONS)
    text = f"schema at version {current}"
    if current < latest:
        text += f"; this release's is {latest}: run suanli db upgrade"
    elif current > latest:
        text += f", newer than this release's ({latest}): run a newer Suanli"
    data: dict[str, Any] = {
        "store": "postgresql" if settings.on_postgres else "sqlite",
        "version": current,
        "latest": latest,
    }
    return emit(args, data, text)


def add_commands(commands: Any, common: Common) -> None:
    db = group(commands, "db", "the database's schema")
    leaf(db, "upgrade", "migrate the database to this release's schema", upgrade, common)
    leaf(db, "version", "the schema's version, without migrating", version, common)
