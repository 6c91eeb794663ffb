"""The schema's migrations: a database made by an earlier release opens, keeps its rows, and gains the
latest shape (here: the allowance windows' column no longer named with a word SQL reserves)."""

from __future__ import annotations

from pathlib import Path

from suanli.store.db import connect, open_database
from suanli.store.schema import MIGRATIONS

RESERVED_WORDS = ("window", "order", "user", "group", "limit", "offset")


def test_an_older_database_keeps_its_windows_under_the_new_column_name(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    for migration in MIGRATIONS[:-1]:  # the release before the rename
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) - 1}")
    conn.execute("PRAGMA foreign_keys=OFF")  # a window row alone: its subscription's own rows don't matter here
    conn.execute("INSERT INTO allowance_windows VALUES ('s', '5h', 'requests', 0, 1, 80)")
    conn.close()
    migrated = open_database(path)
    try:
        row = migrated.execute("SELECT window_name, amount FROM allowance_windows").fetchone()
        assert tuple(row) == ("5h", 80)
    finally:
        migrated.close()


def test_no_column_is_named_with_a_word_postgresql_reserves(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "new.db")
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {c[1] for t in tables for c in conn.execute(f"PRAGMA table_info({t})")}
    finally:
        conn.close()
    assert not columns & set(RESERVED_WORDS)
