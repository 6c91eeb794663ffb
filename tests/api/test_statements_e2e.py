"""Statements end to end: real calls through the gateway with the openai SDK, then the account's
statement over HTTP as JSON, CSV and PDF, the admin's, and the CLI's."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import openai

from suanli.store.db import now_ms


def test_a_statement_of_real_calls_reconciles_in_every_format(gateway: Any) -> None:
    key = gateway.account("stmt-e2e", topup_cny="10")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    for _ in range(2):
        client.chat.completions.create(model="glm-5", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    headers = {"authorization": f"Bearer {key}"}
    params = {"from": str(now_ms() - 3_600_000), "to": str(now_ms() + 60_000)}
    body = httpx.get(f"{gateway.url}/v1/statements", params=params, headers=headers).json()
    money = body["money"]
    assert money["opening_nano"] == 0 and money["totals"]["topups_nano"] == 10 * 10**9
    assert money["usage"]["calls"] == 2 and body["final"] is False
    assert money["opening_nano"] + sum(money["totals"].values()) == money["closing_nano"]
    # The range runs to a minute from now and nothing moves the wallet in between, so its closing is the
    # wallet's posted balance now, and nothing is left reserved.
    wallet = gateway.admin("GET", "/admin/v1/accounts/stmt-e2e").json()["wallet"]
    assert money["closing_nano"] == wallet["balance_nano"] and 0 < wallet["balance_nano"] < 10 * 10**9
    assert money["pending"]["reserved_nano"] == wallet["reserved_nano"] == 0
    text = httpx.get(f"{gateway.url}/v1/statements", params={**params, "format": "csv"}, headers=headers).text
    rows = list(csv.DictReader(io.StringIO(text)))
    moved = sum(
        int(r["amount_nano"])
        for r in rows
        if r["section"] == "money" and r["line"] not in ("opening", "closing", "pending")
    )
    assert moved == money["closing_nano"] - money["opening_nano"]
    pdf = httpx.get(
        f"{gateway.url}/v1/statements",
        params={**params, "lang": "zh-CN"},
        headers={**headers, "accept": "application/pdf"},
    )
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    admin = gateway.admin("GET", "/admin/v1/accounts/stmt-e2e/statements", params=params).json()
    assert admin["money"]["closing_nano"] == money["closing_nano"]
    bad = httpx.get(f"{gateway.url}/v1/statements", params={"month": "2026-13"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "month"
