"""``suanli prices`` and ``suanli quote``: the price list and quotes from the catalog file, no gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from suanli.cli import main
from tests.pricing.test_locked_quotes import CATALOG


def run(capsys: pytest.CaptureFixture[str], catalog: Path, *args: str, as_json: bool = True) -> tuple[int, Any]:
    status = main([*args, "--catalog", str(catalog), *(["--json"] if as_json else [])])
    out = capsys.readouterr().out
    return status, json.loads(out) if as_json else out


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    return path


def test_prices_lists_each_offer_now_until_when_and_next(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, view = run(capsys, catalog, "prices", "--at", "2026-06-10T11:59:59.999")
    assert status == 0 and view["at"] == "2026-06-10T11:59:59.999+08:00"
    deepseek = next(e for e in view["data"] if e["offer"] == "ds/deepseek-v3.2")
    assert deepseek["current"]["window"] == "peak" and deepseek["next"]["window"] == "off-peak"
    assert deepseek["current"]["until"] == "2026-06-10T12:00:00+08:00"
    status, text = run(capsys, catalog, "prices", "--model", "glm-5", "--at", "2026-06-10T10:00", as_json=False)
    assert status == 0 and "zp/glm-5" in text and ">32000 in: 6 in; batch 50%" in text and "ds/" not in text


def test_quote_answers_now_and_cheapest_today(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("quote", "deepseek-v3.2", "--input-tokens", "1000", "--output-tokens", "1000")
    status, view = run(capsys, catalog, *args, "--at", "2026-06-10T10:30:00+08:00")
    entry = view["data"][0]
    assert status == 0 and entry["now"]["max_cost"] == "0.005" and entry["cheapest_today"]["max_cost"] == "0.0025"
    assert entry["cheapest_today"]["at"] == "2026-06-10T12:00:00+08:00"
    status, text = run(capsys, catalog, *args, "--at", "2026-06-10T10:30", as_json=False)
    assert status == 0 and "AT MOST ¥ NOW" in text and "off-peak" in text


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["quote", "nope", "--input-tokens", "1", "--output-tokens", "1"], "model_not_found"),
        (["quote", "plain", "--input-tokens", "-1", "--output-tokens", "1"], "invalid_request"),
        (["prices", "--at", "lunchtime"], "invalid_field"),
        (["prices", "--model", "nope"], "model_not_found"),
    ],
)
def test_bad_input_gets_a_clear_error(
    catalog: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: str
) -> None:
    status, out = run(capsys, catalog, *args)
    assert status == 2 and out["error"]["code"] == code
