"""`suanli price set` and `suanli price history`: a later price stored with notice, read back with the catalog's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from suanli.cli import main
from suanli.limits import PRICE_CHANGE_NOTICE_S
from suanli.store.db import open_database
from tests.conftest import TEST_CATALOG


def run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, Any]:
    status = main([*args, "--database", str(db), "--json"])
    return status, orjson.loads(capsys.readouterr().out)


def set_price(capsys: pytest.CaptureFixture[str], db: Path, start: datetime, price: str, *args: str) -> tuple[int, Any]:
    """``suanli price set alpha/multi`` from ``start`` at ``price`` (a JSON object of prices)."""
    return run(
        capsys, db, "price", "set", "alpha/multi", "--effective-from", start.isoformat(), "--price", price, *args
    )


def test_a_price_set_from_the_cli_is_in_the_history_and_the_price_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(TEST_CATALOG)
    monkeypatch.setenv("SUANLI_CATALOG", str(catalog))
    monkeypatch.setenv("SIM_URL", "http://127.0.0.1:9")
    db = tmp_path / "s.db"
    open_database(db).close()
    start = datetime.now(UTC) + timedelta(seconds=PRICE_CHANGE_NOTICE_S + 600)
    status, done = set_price(capsys, db, start, '{"input": "0.5", "output": "1"}', "--set-by", "alpha")
    assert status == 0 and done["offer"] == "alpha/multi"
    status, history = run(capsys, db, "price", "history", "alpha/multi")
    assert status == 0 and [v["prices"]["cny_per_mtok"]["input"] for v in history["data"]] == ["1", "0.5"]
    status, listed = run(capsys, db, "prices", "--model", "multi", "--at", (start + timedelta(seconds=1)).isoformat())
    (alpha,) = [e for e in listed["data"] if e["offer"] == "alpha/multi"]
    assert status == 0 and alpha["current"]["prices"]["cny_per_mtok"]["input"] == "0.5"
    status, refused = set_price(capsys, db, start, '{"input": "0.4", "output": "1"}')
    assert status == 2 and refused["error"]["code"] == "price_change_too_soon"  # not after the latest version
