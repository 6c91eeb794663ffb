"""The economy's CLI against a database, without a gateway: buy, subscribe, transfer, budgets, plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from suanli.cli import main
from tests.conftest import TEST_CATALOG


def run(capsys: pytest.CaptureFixture[str], db: Path, catalog: Path, *args: str) -> tuple[int, Any]:
    status = main([*args, "--database", str(db), "--json"])
    out = capsys.readouterr().out
    return status, orjson.loads(out) if out.strip() else None


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(TEST_CATALOG)
    monkeypatch.setenv("SUANLI_CATALOG", str(catalog))
    monkeypatch.setenv("SIM_URL", "http://127.0.0.1:9")
    return tmp_path / "s.db", catalog


def test_the_cli_buys_subscribes_transfers_and_shows_what_remains(
    capsys: pytest.CaptureFixture[str], env: tuple[Path, Path]
) -> None:
    db, catalog = env
    for name in ("acme", "team"):
        assert run(capsys, db, catalog, "account", "create", name, "--tier", "enterprise")[0] == 0
    assert run(capsys, db, catalog, "wallet", "topup", "acme", "300")[0] == 0
    status, listed = run(capsys, db, catalog, "product", "list")
    assert status == 0 and {"pack-small", "coding-lite"} <= {p["id"] for p in listed["data"]}
    status, bought = run(capsys, db, catalog, "pack", "buy", "acme", "pack-late")
    assert status == 0 and bought["pack"]["available"] == 100_000
    status, sub = run(capsys, db, catalog, "subscribe", "acme", "coding-lite")
    assert status == 0 and sub["charged"] == "49"
    status, up = run(capsys, db, catalog, "subscribe", "acme", "coding-pro")
    assert status == 0 and up["upgraded_from"] == "coding-lite" and 0 < float(up["charged"]) <= 100
    assert run(capsys, db, catalog, "trust", "acme", "team")[0] == 0
    status, moved = run(
        capsys, db, catalog, "tokens", "transfer", bought["pack"]["id"], "team", "25000", "--memo", "Q4"
    )
    assert status == 0 and moved["tokens"] == 25_000
    assert run(capsys, db, catalog, "budget", "set", "acme", "--period", "day", "--cny", "5")[0] == 0
    assert run(capsys, db, catalog, "funding", "acme", "packs", "wallet")[0] == 0
    status, held = run(capsys, db, catalog, "plans", "acme")
    assert status == 0
    assert held["packs"][0]["available"] == 75_000 and held["subscription"]["product"] == "coding-pro"
    assert held["budgets"][0]["limit"] == "5" and held["funding"]["order"] == ["packs", "wallet"]
    assert run(capsys, db, catalog, "plans", "team")[1]["packs"][0]["available"] == 25_000
    assert run(capsys, db, catalog, "ledger", "verify")[0] == 0


def test_the_cli_refuses_clearly(capsys: pytest.CaptureFixture[str], env: tuple[Path, Path]) -> None:
    db, catalog = env
    run(capsys, db, catalog, "account", "create", "poor", "--tier", "household")
    status, refused = run(capsys, db, catalog, "pack", "buy", "poor", "household-pack")
    assert status == 2 and refused["error"]["code"] == "insufficient_balance"
    run(capsys, db, catalog, "account", "create", "firm", "--tier", "enterprise")
    status, refused = run(capsys, db, catalog, "pack", "buy", "firm", "household-pack")
    assert status == 2 and refused["error"]["code"] == "product_not_offered_to_tier"
    status, refused = run(capsys, db, catalog, "budget", "set", "poor", "--period", "day")
    assert status == 2 and "--cny" in refused["error"]["message"]
    status, refused = run(capsys, db, catalog, "unsubscribe", "poor")
    assert status == 2 and refused["error"]["code"] == "no_subscription"
