"""The PostgreSQL adapter speaks the store's SQL: placeholders, transactions, rows by name, integers back as
integers, booleans as 0/1, NUL refused at the door; and a bad URL is one line (store/pg.py)."""

from __future__ import annotations

import pytest

from suanli.errors import ConfigError, StoreUnavailable
from suanli.store import pg
from suanli.store.db import open_database, transaction
from tests.pg import shared_server


def test_the_stores_sql_is_translated_once_for_psycopg() -> None:
    assert pg.translate("SELECT * FROM t WHERE a = ? AND b LIKE 'x%'", True) == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%'"
    )
    assert pg.translate("SELECT 'x%'", False) == "SELECT 'x%'"  # no parameters: psycopg reads no placeholder
    assert pg.translate("BEGIN IMMEDIATE", False) == "BEGIN"


def test_rows_read_by_position_and_name_sums_come_back_as_integers_and_booleans_as_0_or_1() -> None:
    conn = open_database(shared_server().new_database())
    try:
        with transaction(conn):
            conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, flag BIGINT NOT NULL)")
            conn.execute("INSERT INTO t VALUES (?, ?, ?)", ("a", 2**62, True))
            conn.execute("INSERT INTO t VALUES (?, ?, ?)", ("b", 2**62, False))
        row = conn.execute("SELECT id, n, flag FROM t WHERE id = ?", ("a",)).fetchone()
        assert row == ("a", 2**62, 1) and row["n"] == 2**62 and row.keys() == ["id", "n", "flag"]
        total = conn.execute("SELECT sum(n) FROM t").fetchone()[0]  # numeric in PostgreSQL
        assert total == 2**63 and isinstance(total, int)
    finally:
        conn.close()


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        open_database("postgresql://suanli:secret@127.0.0.1:9/suanli")
    assert "secret" not in str(refused.value) and "***" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_servers_read_that_outlasts_its_limit_is_a_503_not_a_hang_nor_a_500() -> None:
    conn = open_database(shared_server().new_database())
    try:
        pg.limit_reads(conn, 0.2)
        with pytest.raises(StoreUnavailable):
            conn.execute("SELECT pg_sleep(2)")
        assert conn.execute("SELECT 1").fetchone()[0] == 1  # the connection serves on
    finally:
        conn.close()
