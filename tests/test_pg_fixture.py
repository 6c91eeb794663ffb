"""The PostgreSQL fixtures (tests/pg.py): each test's database is empty and its own, and the server keeps
its data when it is taken down and brought back up."""

from __future__ import annotations

import pytest

from tests.pg import PgServer, psql

TABLES = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"


def test_new_databases_are_empty_and_separate(pg_server: PgServer, pg_url: str) -> None:
    other = pg_server.new_database()
    assert other != pg_url
    assert psql(pg_url, TABLES) == psql(other, TABLES) == "0"
    psql(pg_url, "CREATE TABLE t (x int)")
    assert psql(pg_url, TABLES) == "1"
    assert psql(other, TABLES) == "0"


def test_stop_and_start_keep_the_data(pg_server: PgServer, pg_url: str) -> None:
    psql(pg_url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    pg_server.stop()
    try:
        with pytest.raises(RuntimeError, match="connection"):
            psql(pg_url, "SELECT 1")
    finally:
        pg_server.start()
    assert psql(pg_url, "SELECT x FROM kept") == "42"
