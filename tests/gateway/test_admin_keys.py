"""Admin keys: the start-up rule (configured, generated, created), revocation, the CLI, and older databases."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.cli import main
from suanli.errors import Conflict, NotFound, Unauthorized
from suanli.gateway.admin_keys import admin_key_path, authenticate_admin, ensure_admin_key, start_messages
from suanli.store.accounts import hash_key
from suanli.store.admin_keys import create_admin_key, list_admin_keys, revoke_admin_key
from suanli.store.db import open_database, run_in_transaction
from suanli.store.schema import MIGRATIONS

KEY_A = "sk-admin-configured-a-0123456789abcdef"
KEY_B = "sk-admin-configured-b-fedcba9876543210"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(tmp_path / "suanli.db")
    try:
        yield connection
    finally:
        connection.close()


def works(conn: sqlite3.Connection, raw: str) -> bool:
    try:
        authenticate_admin(conn, raw)
    except Unauthorized:
        return False
    return True


def test_a_first_start_without_a_configured_key_generates_one_into_a_0600_file(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    key_file = admin_key_path(tmp_path / "suanli.db")
    start = ensure_admin_key(conn, None, key_file)
    assert start.generated and start.file == key_file and key_file.read_text() == start.generated + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and works(conn, start.generated)
    message = " ".join(start_messages(start))
    assert str(key_file) in message and start.generated not in message
    again = ensure_admin_key(conn, None, key_file)  # a later start: the key stays, nothing new is made
    assert again.generated is None and again.file is None and works(conn, start.generated)
    assert [k.origin for k in list_admin_keys(conn)] == ["generated"]


def test_configuring_a_key_retires_the_generated_one_and_its_file(conn: sqlite3.Connection, tmp_path: Path) -> None:
    key_file = admin_key_path(tmp_path / "suanli.db")
    generated = ensure_admin_key(conn, None, key_file).generated
    assert generated
    start = ensure_admin_key(conn, KEY_A, key_file)
    assert not works(conn, generated) and works(conn, KEY_A) and not key_file.exists()
    assert [k.origin for k in start.retired] == ["generated"] and start_messages(start)


def test_a_new_configured_key_retires_the_old_one_and_created_keys_stay(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    key_file = admin_key_path(tmp_path / "suanli.db")
    ensure_admin_key(conn, KEY_A, key_file)
    _, created = run_in_transaction(conn, lambda c: create_admin_key(c, "deploy bot"))
    ensure_admin_key(conn, KEY_B, key_file)
    assert not works(conn, KEY_A) and works(conn, KEY_B) and works(conn, created)
    ensure_admin_key(conn, None, key_file)  # the setting removed: nothing changes, nothing is generated
    assert works(conn, KEY_B) and not key_file.exists()
    ensure_admin_key(conn, KEY_A, key_file)  # an old key configured again stays revoked
    assert not works(conn, KEY_A) and not works(conn, KEY_B) and works(conn, created)
    assert ensure_admin_key(conn, KEY_A, key_file).configured_revoked


def test_revoking_refuses_the_key_and_keeps_the_last_one(conn: sqlite3.Connection, tmp_path: Path) -> None:
    ensure_admin_key(conn, KEY_A, admin_key_path(tmp_path / "suanli.db"))
    key, raw = run_in_transaction(conn, lambda c: create_admin_key(c, "ops"))
    assert key.prefix == raw[:13] and key.hash == hash_key(raw) and raw not in str(list_admin_keys(conn))
    run_in_transaction(conn, lambda c: revoke_admin_key(c, key.id))
    with pytest.raises(Unauthorized) as refused:
        authenticate_admin(conn, raw)
    assert refused.value.code == "key_revoked"
    configured = next(k for k in list_admin_keys(conn) if k.origin == "configured")
    with pytest.raises(Conflict):
        run_in_transaction(conn, lambda c: revoke_admin_key(c, configured.id))
    with pytest.raises(NotFound):
        run_in_transaction(conn, lambda c: revoke_admin_key(c, "adm_nope"))
    with pytest.raises(Unauthorized):
        authenticate_admin(conn, None)


def test_a_short_configured_key_shows_a_short_prefix(conn: sqlite3.Connection, tmp_path: Path) -> None:
    ensure_admin_key(conn, "sk-admin-short", admin_key_path(tmp_path / "suanli.db"))
    assert [k.prefix for k in list_admin_keys(conn)] == ["sk-"]


def test_admin_keys_of_an_older_database_count_as_configured(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    before = next(i for i, script in enumerate(MIGRATIONS) if "admin_keys_unnamed" in script)
    old = sqlite3.connect(database)
    for script in MIGRATIONS[:before]:
        old.executescript(script)
    old.execute(f"PRAGMA user_version={before}")
    old.execute("INSERT INTO admin_keys (hash, created_at_ms) VALUES (?, 1)", (hash_key(KEY_A),))
    old.commit()
    old.close()
    conn = open_database(database)
    try:
        assert works(conn, KEY_A)
        ensure_admin_key(conn, KEY_B, admin_key_path(database))
        assert not works(conn, KEY_A) and works(conn, KEY_B)
    finally:
        conn.close()


def cli(capsys: pytest.CaptureFixture[str], database: Path, *args: str) -> tuple[int, dict[str, object]]:
    status = main([*args, "--database", str(database), "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_the_admin_key_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "suanli.db"
    status, created = cli(capsys, database, "admin-key", "create", "deploy bot")
    assert status == 0 and str(created["key"]).startswith("sk-admin-") and created["origin"] == "created"
    status, second = cli(capsys, database, "admin-key", "create", "on-call")
    status, listed = cli(capsys, database, "admin-key", "list")
    data = listed["data"]
    assert isinstance(data, list) and [k["name"] for k in data] == ["deploy bot", "on-call"]
    assert all("key" not in k and "hash" not in k for k in data)
    status, revoked = cli(capsys, database, "admin-key", "revoke", str(created["id"]))
    assert status == 0 and revoked["revoked_at_ms"]
    status, refused = cli(capsys, database, "admin-key", "revoke", str(second["id"]))
    assert status == 2 and refused["error"]["code"] == "last_admin_key"  # type: ignore[index]
    status, missing = cli(capsys, database, "admin-key", "revoke", "adm_nope")
    assert status == 2 and missing["error"]["code"] == "admin_key_not_found"  # type: ignore[index]
    status, bad = cli(capsys, database, "admin-key", "create", "")
    assert status == 2 and bad["error"]["code"] == "invalid_request"  # type: ignore[index]
    main(["admin-key", "list", "--database", str(database)])
    text = capsys.readouterr().out
    assert "deploy bot" in text and "revoked" in text and "active" in text and str(created["key"]) not in text
