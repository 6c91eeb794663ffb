"""The schema's migrations: a database made by an earlier release opens, keeps its rows, and gains the
latest shape (here: the allowance windows' column no longer named with a word SQL reserves)."""

from __future__ import annotations

from pathlib import Path

from suanli.gateway.accounts import usage_dict
from suanli.store.db import connect, open_database
from suanli.store.schema import MIGRATIONS, PRICE_WINDOW_MIGRATION
from suanli.store.usage import usage_event

RESERVED_WORDS = ("window", "order", "user", "group", "limit", "offset")


def test_an_older_database_keeps_its_windows_under_the_new_column_name(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    rename = next(i for i, m in enumerate(MIGRATIONS) if "RENAME COLUMN window TO window_name" in m)
    for migration in MIGRATIONS[:rename]:  # the release before the rename
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version={rename}")
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


def test_usage_events_written_before_the_price_window_column_read_it_as_none(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    added = MIGRATIONS.index(PRICE_WINDOW_MIGRATION)
    for migration in MIGRATIONS[:added]:
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version={added}")
    columns = [c[1] for c in conn.execute("PRAGMA table_info(usage_events)") if c[1] not in ("price_window",)]
    values = {c: 0 for c in columns} | {
        "request_id": "req_old",
        "account_id": "a",
        "key_id": "k",
        "model": "m",
        "operator": "o",
        "offer_id": "o/m",
        "upstream_model": "m",
        "outcome": "ok",
        "error_code": "",
        "ttft_ms": None,
        "funding": None,
    }
    conn.execute(
        f"INSERT INTO usage_events ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
        tuple(values.values()),
    )
    conn.commit()
    conn.close()
    migrated = open_database(path)
    try:
        event = usage_event(migrated, "req_old")
        assert event is not None and event.price_window is None
        assert usage_dict(event)["price_window"] is None
    finally:
        migrated.close()
