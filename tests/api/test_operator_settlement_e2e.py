"""Operator settlement end to end: real calls through the gateway, then a run by the admin endpoint and by
``suanli settle-operators``; the second moves nothing, and the operator's statement shows what was settled
(JSON, CSV, and PDFs in English and Chinese from the endpoint and ``suanli operator-statement --pdf``)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from openai import OpenAI

from suanli.money import nano_to_cny
from tests.conftest import Gateway
from tests.economy.test_statements import pdf_text


def test_a_run_settles_real_calls_once_and_the_statement_shows_it(
    gateway: Gateway,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.account(unique, topup_cny="10"))
    for _ in range(3):
        client.chat.completions.create(model="deepseek-v3.2", messages=[{"role": "user", "content": "hi"}])
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    first = gateway.admin("POST", "/admin/v1/operator-settlements", json={"month": month})
    assert first.status_code == 201, first.text
    alpha = next(row for row in first.json()["data"] if row["operator"] == "alpha")
    assert alpha["gross_nano"] > 0 and alpha["commission_nano"] == alpha["gross_nano"] * 500 // 10_000
    assert alpha["net_nano"] + alpha["commission_nano"] == alpha["gross_nano"]
    for key, value in gateway.env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert gateway.cli("settle-operators", "--month", month, "--json") == 0
    again = orjson.loads(capsys.readouterr().out)
    assert again["run_id"] is None and again["data"] == []  # nothing new: nothing moved
    listed = gateway.admin("GET", "/admin/v1/operator-settlements", params={"month": month, "operator": "alpha"})
    assert alpha["run_id"] in [row["run_id"] for row in listed.json()["data"]]
    statement = gateway.admin("GET", "/admin/v1/operators/alpha/statement", params={"month": month}).json()
    assert statement["settled"]["net_nano"] == statement["net_nano"] and statement["unsettled_net_nano"] == 0
    assert statement["reconciliation"]["difference_nano"] == 0
    assert any(line["model"] == "deepseek-v3.2" and line["tokens"]["output"] > 0 for line in statement["served"])
    csv = gateway.admin("GET", "/admin/v1/operators/alpha/statement", params={"month": month, "format": "csv"})
    assert csv.text.startswith("section,model,offer") and "\ntotal," in csv.text
    assert_the_pdfs(gateway, month, statement, tmp_path)


def assert_the_pdfs(gateway: Gateway, month: str, statement: dict[str, Any], tmp_path: Path) -> None:
    """The endpoint's PDFs (English, Chinese) and the CLI's hold the operator, the period and the amounts."""
    net, run_id = re.escape(nano_to_cny(statement["net_nano"])), statement["runs"][0]["run_id"]
    params = {"month": month, "format": "pdf"}
    english = gateway.admin("GET", "/admin/v1/operators/alpha/statement", params=params)
    assert english.status_code == 200 and english.headers["content-type"] == "application/pdf"
    assert f"operator-statement-alpha-{month}.pdf" in english.headers["content-disposition"]
    chinese = gateway.admin("GET", "/admin/v1/operators/alpha/statement", params={**params, "lang": "zh-CN"})
    cli_pdf = tmp_path / "cli.pdf"
    assert gateway.cli("operator-statement", "alpha", "--month", month, "--pdf", "--output", str(cli_pdf)) == 0
    (tmp_path / "en.pdf").write_bytes(english.content)
    (tmp_path / "zh.pdf").write_bytes(chinese.content)
    for name, heading, net_label in (
        ("en.pdf", "Operator settlement statement", "Net"),
        ("zh.pdf", "运营方结算单", "净额"),
    ):
        pages, text = pdf_text(tmp_path / name)
        assert pages == 1 and "■" not in text and f"Suanli 算力 — {heading}" in text
        assert "alpha" in text and month in text and run_id in text and "deepseek-v3.2" in text
        assert re.search(rf"{net_label}\s+{net}\b", text), text
    assert "Operator: alpha" in pdf_text(cli_pdf)[1]


def test_a_bad_month_is_refused(gateway: Gateway) -> None:
    refused = gateway.admin("POST", "/admin/v1/operator-settlements", json={"month": "2026-13"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_month"
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    path = "/admin/v1/operators/alpha/statement"
    refused = gateway.admin("GET", path, params={"month": month, "format": "docx"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_format"
    refused = gateway.admin("GET", path, params={"month": month, "format": "pdf", "lang": "fr"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "lang"
