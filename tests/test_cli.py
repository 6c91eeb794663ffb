"""The command line, as a script would use it: every administration command with --json."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.cli import build_parser, main


def run(capsys: pytest.CaptureFixture[str], database: Path, *args: str) -> tuple[int, dict[str, object]]:
    status = main([*args, "--database", str(database), "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out)


def test_account_key_wallet_balance_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.db"
    status, created = run(capsys, db, "account", "create", "acme", "--tier", "household")
    assert status == 0 and created["account"]["tier"] == "household"  # type: ignore[index]
    status, topped = run(capsys, db, "wallet", "topup", "acme", "12.5", "--idempotency-key", "pay-1")
    assert status == 0 and topped["wallet"]["available"] == "12.5"  # type: ignore[index]
    # The same payment again applies once.
    run(capsys, db, "wallet", "topup", "acme", "12.5", "--idempotency-key", "pay-1")
    status, balance = run(capsys, db, "balance", "acme")
    assert balance["wallet"]["available_nano"] == 12_500_000_000  # type: ignore[index]
    status, key = run(capsys, db, "key", "create", "acme", "--models", "glm-5,coder", "--name", "ci")
    assert status == 0 and str(key["key"]).startswith("sk-") and key["models"] == ["glm-5", "coder"]
    status, listed = run(capsys, db, "key", "list", "acme")
    assert [k["id"] for k in listed["data"]] == [key["id"]]  # type: ignore[index, union-attr]
    assert "key" not in listed["data"][0]  # type: ignore[index, operator]
    status, revoked = run(capsys, db, "key", "revoke", str(key["id"]))
    assert status == 0 and revoked["revoked_at_ms"]
    status, usage = run(capsys, db, "usage", "acme")
    assert status == 0 and usage["data"] == []
    assert run(capsys, db, "ledger", "verify")[1] == {"ok": True}
    status, accounts = run(capsys, db, "account", "list")
    assert [a["name"] for a in accounts["data"]] == ["acme"]  # type: ignore[index, union-attr]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["account", "create", "x", "--tier", "household"], None),
        (["account", "create", "x", "--tier", "household"], "already_exists"),
        (["wallet", "topup", "x", "abc"], "invalid_request"),
        (["wallet", "topup", "x", "-5"], "invalid_request"),
        (["wallet", "topup", "x", "0.0000000001"], "invalid_request"),
        (["wallet", "topup", "nobody", "5"], "account_not_found"),
        (["key", "revoke", "key_nope"], "key_not_found"),
        (["key", "create", "x", "--expires", "yesterday"], "invalid_request"),
        (["balance", "nobody"], "account_not_found"),
        (["usage", "x", "--limit", "0"], "invalid_request"),
    ],
)
def test_bad_input_gets_a_clear_error(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], args: list[str], code: str | None
) -> None:
    db = tmp_path_factory.getbasetemp() / "cli-errors.db"
    status, out = run(capsys, db, *args)
    if code is None:
        assert status == 0
    else:
        assert status == 2 and out["error"]["code"] == code  # type: ignore[index]


def command_parsers(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[str, argparse.ArgumentParser]:
    """Every leaf command of the CLI, as 'account create' -> its parser."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(command_parsers(sub, (*prefix, name)))
    return found or {" ".join(prefix): parser}


def test_every_command_has_json() -> None:
    for name, parser in command_parsers(build_parser()).items():
        assert any("--json" in action.option_strings for action in parser._actions), name


def test_an_unknown_durability_setting_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUANLI_DURABILITY", "sometimes")
    status, out = run(capsys, tmp_path / "s.db", "account", "list")
    assert status == 2 and "SUANLI_DURABILITY" in out["error"]["message"]  # type: ignore[index]


def test_serve_refuses_a_bad_catalog_with_one_clear_line(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[operators.x]\nbase_url = "http://127.0.0.1:1/v1"\napi_key = "sk-in-the-file"\n')
    env = {**os.environ, "SUANLI_CATALOG": str(catalog), "SUANLI_DATABASE": str(tmp_path / "s.db")}
    done = subprocess.run(
        [sys.executable, "-m", "suanli.cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "credentials never go in the catalog" in done.stderr and "Traceback" not in done.stderr
