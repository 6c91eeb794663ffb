"""``suanli db upgrade`` and ``suanli db version`` on a fresh PostgreSQL database and on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanli.cli import main
from suanli.store import pg
from suanli.store.schema import MIGRATIONS
from suanli.store.schema_pg import PG_MIGRATIONS


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out.strip(), err.strip()


def test_upgrade_migrates_a_fresh_postgresql_database(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    latest = len(PG_MIGRATIONS)
    assert run(capsys, "db", "version", "--database", pg_url) == (
        0,
        f"schema at version 0; this release's is {latest}: run suanli db upgrade",
        "",
    )
    assert run(capsys, "db", "upgrade", "--database", pg_url) == (0, f"schema at version {latest}", "")
    status, out, _ = run(capsys, "db", "version", "--database", pg_url, "--json")
    assert status == 0 and json.loads(out) == {"store": "postgresql", "version": latest, "latest": latest}
    conn = pg.connect(pg_url)
    try:
        assert conn.execute("SELECT count(*) FROM workers").fetchone()[0] == 0  # the tables are there
    finally:
        conn.close()


def test_upgrade_migrates_a_sqlite_file_and_version_never_makes_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "new" / "suanli.db"
    latest = len(MIGRATIONS)
    status, out, _ = run(capsys, "db", "version", "--database", str(database))
    assert status == 0 and out.startswith("schema at version 0;") and not database.exists()
    assert run(capsys, "db", "upgrade", "--database", str(database)) == (0, f"schema at version {latest}", "")
    status, out, _ = run(capsys, "db", "version", "--database", str(database), "--json")
    assert status == 0 and json.loads(out) == {"store": "sqlite", "version": latest, "latest": latest}


@pytest.mark.parametrize("command", ["upgrade", "version"])
def test_an_unreachable_postgresql_url_is_one_line_and_exit_status_2(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "db", command, "--database", "postgresql://suanli:secret@127.0.0.1:1/none")
    assert status == 2 and out == ""
    assert err.startswith("error: cannot reach PostgreSQL at postgresql://suanli:***@127.0.0.1:1/none")
    assert len(err.splitlines()) == 1 and "secret" not in err
