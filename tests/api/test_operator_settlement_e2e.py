"""Operator settlement end to end: real calls through the gateway, then a run by the admin endpoint and by
``suanli settle-operators``; the second moves nothing, and the operator's statement shows what was settled."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest
from openai import OpenAI

from tests.conftest import Gateway


def test_a_run_settles_real_calls_once_and_the_statement_shows_it(
    gateway: Gateway, unique: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
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


def test_a_bad_month_is_refused(gateway: Gateway) -> None:
    refused = gateway.admin("POST", "/admin/v1/operator-settlements", json={"month": "2026-13"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_month"
