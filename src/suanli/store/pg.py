"""PostgreSQL behind the same store functions: the connection adapter, migrations, and what differs.

``PgConnection`` wraps a psycopg 3 connection so that the SQL written once for both stores (``store.conn``)
runs unchanged: ``?`` placeholders become ``%s``, ``BEGIN IMMEDIATE`` becomes ``BEGIN``, rows read by
position or by name, booleans are stored as the integers SQLite stores, and sums (``numeric`` in
PostgreSQL) come back as ``int``. Every connection has connect and statement timeouts and TCP keepalives, and
asks the server to end a transaction left idle, so a dead client's row locks go within seconds.

Migrations run under an advisory lock, so N workers starting together migrate once; the version is a
row of ``schema_version``. PostgreSQL's list (``schema_pg.PG_MIGRATIONS``) starts from a baseline equal to
SQLite's migrations at the time it was written; every later change is added to both lists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper, Loader
from psycopg.rows import tuple_row

from suanli.errors import ConfigError, StoreUnavailable
from suanli.limits import (
    STORE_CONNECT_TIMEOUT_S,
    STORE_IDLE_IN_TRANSACTION_S,
    STORE_STATEMENT_TIMEOUT_S,
)
from suanli.store.schema_pg import PG_MIGRATIONS

POSTGRES_VERSION_MIN = 130000  # 13: the oldest release still supported when this was written
MIGRATION_LOCK = 0x5375616E6C69  # "Suanli": the advisory lock N workers take to migrate once
URL_SCHEMES = ("postgresql://", "postgres://")
BATCH_SQL = "SELECT suanli_batch(?::jsonb, ?, ?, ?::jsonb)"  # a writer's batch of hot-path jobs (store/deferred.py)


def is_postgres(target: object) -> bool:
    return str(target).startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@lru_cache(maxsize=4096)
def translate(sql: str, with_parameters: bool) -> str:
    """The same statement in PostgreSQL's spelling (placeholders only when parameters are given: psycopg
    reads ``%`` as a placeholder only then)."""
    if sql.startswith("BEGIN IMMEDIATE"):
        return "BEGIN"
    return sql.replace("%", "%%").replace("?", "%s") if with_parameters else sql


class Row(tuple[Any, ...]):
    """A row readable by position and by column name, like ``sqlite3.Row``."""

    __slots__ = ()
    _index: dict[str, int] = {}  # noqa: RUF012 (set per class by _row_class)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {name: i for i, name in enumerate(names)}})


def _rows(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(column.name for column in description))


class _BoolAsInteger(Dumper):
    """SQLite stores booleans as 0/1 in INTEGER columns; so does this schema."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _NumericAsInt(Loader):
    """A sum of bigints is ``numeric`` in PostgreSQL; money here is integers, so it comes back an int."""

    def load(self, data: Any) -> Any:
        text = bytes(data)
        if b"." in text or b"e" in text.lower() or b"N" in text:
            from decimal import Decimal  # noqa: PLC0415 (never on the money paths)

            return Decimal(text.decode())
        return int(text)


class PgConnection:
    """A psycopg connection that speaks the store's SQL (see ``store.conn.Conn``)."""

    def __init__(self, raw: psycopg.Connection[Any], url: str, *, heals: bool = False) -> None:
        self.raw = raw
        self.url = url
        self.owner = ""  # the worker's lease id, on a serving worker's writer connection
        self.heals = heals  # a reader: a statement outside a transaction reconnects once if the store lost it
        self.statement_timeout_s = STORE_STATEMENT_TIMEOUT_S

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        try:
            return self._execute(sql, parameters)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self.heals and isinstance(exc, psycopg.errors.QueryCanceled):  # a reader's statement timed out
                raise StoreUnavailable("The store did not answer in time; nothing was charged.") from exc
            if not self.heals or not self.broken:
                raise
            self._reopen(exc)
            return self._execute(sql, parameters)

    def _execute(self, sql: str, parameters: Sequence[Any]) -> psycopg.Cursor[Any]:
        if parameters:
            return self.raw.execute(translate(sql, True), parameters)
        return self.raw.execute(translate(sql, False))

    def _reopen(self, cause: Exception) -> None:
        """Open the connection again (a database restart, a dropped socket); 503 if the store is down."""
        with contextlib.suppress(psycopg.Error):
            self.raw.close()
        try:
            self.raw = connect(self.url, statement_timeout_s=self.statement_timeout_s).raw
        except psycopg.Error:
            raise StoreUnavailable("The store is unreachable; nothing was reserved or charged.") from cause

    def execute_plain(self, sql: str, parameters: Sequence[Any]) -> psycopg.Cursor[Any]:
        """A statement whose rows are plain tuples (no column names to look up): the hot path's."""
        cursor = self.raw.cursor(row_factory=tuple_row)
        return cursor.execute(translate(sql, True), parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(translate(sql, True), list(seq_of_parameters))

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.info.transaction_status == pq.TransactionStatus.UNKNOWN

    def close(self) -> None:
        self.raw.close()


def connect(url: str, *, statement_timeout_s: float = STORE_STATEMENT_TIMEOUT_S) -> PgConnection:
    """An autocommit connection (transactions are explicit, as with SQLite) with the platform's timeouts."""
    options = (
        f"-c statement_timeout={int(statement_timeout_s * 1000)} "
        f"-c idle_in_transaction_session_timeout={STORE_IDLE_IN_TRANSACTION_S * 1000} "
        "-c TimeZone=UTC"
    )
    raw = psycopg.connect(
        url,
        autocommit=True,
        row_factory=_rows,
        connect_timeout=STORE_CONNECT_TIMEOUT_S,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        options=options,
        application_name="suanli",
    )
    raw.adapters.register_dumper(bool, _BoolAsInteger)
    raw.adapters.register_loader("numeric", _NumericAsInt)
    if raw.info.server_version < POSTGRES_VERSION_MIN:
        raw.close()
        raise ConfigError(f"PostgreSQL {raw.info.server_version // 10000} is too old: Suanli needs 13 or later")
    conn = PgConnection(raw, url)
    conn.statement_timeout_s = statement_timeout_s
    return conn


def open_database(url: str, *, statement_timeout_s: float = STORE_STATEMENT_TIMEOUT_S) -> PgConnection:
    """Connect and migrate; a URL that cannot be reached or parsed is a configuration error."""
    try:
        conn = connect(url, statement_timeout_s=statement_timeout_s)
        conn.heals = True
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach PostgreSQL at {redact(url)}: {first_line}") from None
    migrate(conn)
    return conn


def limit_reads(conn: object, seconds: float) -> None:
    """From now on, a statement on this (PostgreSQL) connection not answered within ``seconds`` fails, and
    so on every connection it reopens; other connections are left as they are."""
    if isinstance(conn, PgConnection):
        conn.execute(f"SET statement_timeout = {int(seconds * 1000)}")
        conn.statement_timeout_s = seconds


def schema_version(conn: PgConnection) -> int:
    exists = conn.execute("SELECT to_regclass('schema_version')").fetchone()
    row = None if exists is None or exists[0] is None else conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: PgConnection) -> int:
    """Apply what is not yet applied, once however many workers start together."""
    conn.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK,))
    try:
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        version = schema_version(conn)
        if version == 0:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        for number, script in enumerate(PG_MIGRATIONS[version:], start=version + 1):
            conn.raw.execute(script.encode())  # several statements, no parameters: one round trip
            conn.execute("UPDATE schema_version SET version = ?", (number,))
        conn.execute("COMMIT")
        return len(PG_MIGRATIONS)
    except BaseException:
        if conn.in_transaction and not conn.raw.closed:
            conn.execute("ROLLBACK")
        raise
    finally:
        if not conn.raw.closed:
            conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK,))


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or a serialisation failure: the whole batch may be tried again (every job is idempotent)."""
    return isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def is_connection_lost(exc: BaseException) -> bool:
    """The database is unreachable or not answering (a statement timeout counts): not a deadlock or a
    serialisation failure, which abort one transaction of a database that is up."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not is_retryable(exc)
