"""Exports end to end: real calls through the openai SDK, then the usage and transfers exports (CSV and JSON
Lines) checked against the usage list and the wallet; another account's rows never appear; the admin's
filter by account; bad input; and 20,000 events that stream in many chunks and equal the list."""

from __future__ import annotations

import csv
import io
import secrets
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openai
import orjson
import pytest

from suanli.gateway.exports import TRANSFER_COLUMNS, usage_chunks
from suanli.gateway.usage_reports import CSV_COLUMNS
from suanli.metering.periods import iso
from suanli.store.db import open_database, transaction
from suanli.store.usage import USAGE_COLUMNS
from suanli.store.usage_queries import UsageFilter
from tests.conftest import Gateway

MESSAGES = [{"role": "user", "content": "Count the tokens of this export."}]
BULK_EVENTS = 20_000
ZONE = ZoneInfo("Asia/Shanghai")  # the platform's
POSTED = ("posted", "post")  # the kinds that move a posted balance


def get(gateway: Gateway, key: str, path: str, /, **params: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(f"{gateway.url}{path}", params=params, headers=headers, timeout=60)  # type: ignore[arg-type]


def calls(gateway: Gateway, key: str, n: int = 3) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20) as client:
        for i in range(n):
            client.chat.completions.create(model="deepseek-v3.2", messages=MESSAGES, max_tokens=20, stream=i % 2 == 1)  # type: ignore[call-overload]


def jsonl(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [orjson.loads(line) for line in response.content.splitlines()]


def csv_rows(response: httpx.Response, columns: tuple[str, ...]) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    reader = csv.DictReader(io.StringIO(response.text))
    assert tuple(reader.fieldnames or ()) == columns
    return list(reader)


def _id(gateway: Gateway, key: str) -> str:
    return str(get(gateway, key, "/v1/account").json()["account"]["id"])


def usage_list(gateway: Gateway, key: str) -> list[dict[str, Any]]:
    """Every call of the account through GET /v1/usage's pages, oldest first."""
    events: list[dict[str, Any]] = []
    cursor: dict[str, object] = {}
    while True:
        page = get(gateway, key, "/v1/usage", limit=10_000, **cursor).json()
        events += page["data"]
        if page["next_before_ms"] is None:
            return events[::-1]
        cursor = {"before_ms": page["next_before_ms"], "before_id": page["next_before_id"]}


def test_the_usage_export_is_the_usage_lists_calls_oldest_first(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    calls(gateway, key)
    listed = usage_list(gateway, key)
    assert len(listed) == 3
    assert jsonl(get(gateway, key, "/v1/exports/usage", format="jsonl")) == listed
    response = get(gateway, key, "/v1/exports/usage")
    assert (
        response.headers["content-disposition"]
        == f'attachment; filename="suanli-usage-{_id(gateway, key)}-start-end.csv"'
    )
    exported = csv_rows(response, CSV_COLUMNS)
    page = csv_rows(get(gateway, key, "/v1/usage", format="csv"), CSV_COLUMNS)
    assert exported == page[::-1]
    assert [int(r["cost_nano"]) for r in exported] == [e["cost_nano"] for e in listed]
    # A range: from inclusive, to exclusive, as ISO 8601 or epoch ms.
    second = listed[1]["created_at_ms"]
    ranged = jsonl(get(gateway, key, "/v1/exports/usage", format="jsonl", **{"from": second, "to": second + 1}))
    assert [e["request_id"] for e in ranged] == [e["request_id"] for e in listed if e["created_at_ms"] == second]


def test_the_transfers_export_adds_up_to_the_wallet(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="5")
    other = gateway.account(f"{unique}-other")
    pack = gateway.admin("POST", f"/admin/v1/accounts/{unique}/packs", json={"product": "pack-late"}).json()["pack"]
    budget = get(gateway, key, "/v1/account")  # an account's own view: its id and wallet
    httpx.post(
        f"{gateway.url}/v1/budgets",
        json={"period": "month", "unit": "cny", "amount": "3"},
        headers={"Authorization": f"Bearer {key}"},
    ).raise_for_status()
    calls(gateway, key)
    calls(gateway, other, 1)
    account_id = budget.json()["account"]["id"]
    wallet, other_id = f"wallet:{account_id}", get(gateway, other, "/v1/account").json()["account"]["id"]
    rows = jsonl(get(gateway, key, "/v1/exports/transfers", format="jsonl"))
    posted = [r for r in rows if r["kind"] in POSTED]
    balance = sum(r["amount"] for r in posted if r["credit_account"] == wallet) - sum(
        r["amount"] for r in posted if r["debit_account"] == wallet
    )
    assert balance == get(gateway, key, "/v1/account").json()["wallet"]["balance_nano"]
    accounts = {r["debit_account"] for r in rows} | {r["credit_account"] for r in rows}
    assert f"pack:{pack['id']}" in accounts and any(a.startswith("budget:") for a in accounts)
    assert not any(other_id in a for a in accounts)
    assert [(r["created_at_ms"], r["id"]) for r in rows] == sorted((r["created_at_ms"], r["id"]) for r in rows)
    assert all(r["direction"] in ("in", "out", "within") for r in rows)
    assert all(r["amount_cny"] is not None for r in rows if r["asset"] == "CNY")
    exported = csv_rows(get(gateway, key, "/v1/exports/transfers"), TRANSFER_COLUMNS)
    assert [r["id"] for r in exported] == [r["id"] for r in rows]
    assert [int(r["amount"]) for r in exported] == [r["amount"] for r in rows]


def test_the_admins_exports_filter_by_account(gateway: Gateway, unique: str) -> None:
    first, second = gateway.account(unique), gateway.account(f"{unique}-2")
    calls(gateway, first, 2)
    calls(gateway, second, 1)
    mine = {e["request_id"] for e in usage_list(gateway, first)}
    theirs = {e["request_id"] for e in usage_list(gateway, second)}
    one = gateway.admin("GET", "/admin/v1/exports/usage", params={"account": unique, "format": "jsonl"})
    assert {e["request_id"] for e in jsonl(one)} == mine
    every = gateway.admin("GET", "/admin/v1/exports/usage", params={"format": "jsonl"}, timeout=60)
    assert mine | theirs <= {e["request_id"] for e in jsonl(every)}
    own = jsonl(get(gateway, first, "/v1/exports/transfers", format="jsonl"))
    admin_one = gateway.admin("GET", "/admin/v1/exports/transfers", params={"account": unique, "format": "jsonl"})
    assert jsonl(admin_one) == own
    every = gateway.admin("GET", "/admin/v1/exports/transfers", params={"format": "jsonl"}, timeout=60)
    ids = {r["id"] for r in jsonl(every)}
    assert {r["id"] for r in own} <= ids and any(i.endswith(".pay") for i in ids)  # the platform's side too
    unknown = gateway.admin("GET", "/admin/v1/exports/usage", params={"account": f"{unique}-nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "account_not_found"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-06-02", "to": "2026-06-01"}, "to"),
        ({"format": "xml"}, "format"),
        ({"tz": "Mars/Olympus"}, "tz"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(gateway: Gateway, params: dict[str, str], param: str) -> None:
    key = gateway.account(f"bad-{secrets.token_hex(4)}", topup_cny=None)
    for path in ("/v1/exports/usage", "/v1/exports/transfers"):
        response = get(gateway, key, path, **params)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
    assert gateway.admin("GET", "/admin/v1/exports/transfers", params=params).status_code == 400


def bulk_usage(database: str, account_id: str, key_id: str, n: int, start_ms: int) -> None:
    """``n`` events of one account, inserted at once (two per millisecond, so pages meet inside one)."""
    values = {name: 0 for name in USAGE_COLUMNS} | {
        "account_id": account_id,
        "key_id": key_id,
        "model": "deepseek-v3.2",
        "operator": "alpha",
        "offer_id": "alpha/deepseek-v3.2",
        "upstream_model": "ds",
        "outcome": "ok",
        "http_status": 200,
        "error_code": "",
        "ttft_ms": None,
        "attempts": 1,
        "funding": None,
        "price_window": "standard",
    }
    rows = [
        tuple(
            {
                **values,
                "request_id": f"req_bulk{i:07d}",
                "created_at_ms": start_ms + i // 2,
                "input_tokens": i,
                "price_input_nano": 2000,
                "cost_nano": 2000 * i,
            }[c]
            for c in USAGE_COLUMNS
        )
        for i in range(n)
    ]
    conn = open_database(database)
    try:
        with transaction(conn):
            insert = (
                f"INSERT INTO usage_events ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
            )
            conn.executemany(insert, rows)
    finally:
        conn.close()


def test_twenty_thousand_events_stream_in_chunks_and_equal_the_list(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny=None)
    me = get(gateway, key, "/v1/account").json()
    start_ms = 1_780_000_000_000
    bulk_usage(gateway.database, me["account"]["id"], me["key"]["id"], BULK_EVENTS, start_ms)
    conn = open_database(gateway.database)
    try:
        f = UsageFilter(me["account"]["id"], 0, 2**62)
        chunks = [chunk() for chunk in usage_chunks(conn, f, zone=ZONE, output="csv")]
    finally:
        conn.close()
    assert len(chunks) > 10  # the header, then a chunk per page
    response = get(gateway, key, "/v1/exports/usage")
    assert "content-length" not in response.headers
    assert response.content == b"".join(chunks)
    rows = csv_rows(response, CSV_COLUMNS)
    listed = usage_list(gateway, key)
    assert len(rows) == len(listed) == BULK_EVENTS
    assert [(r["request_id"], int(r["cost_nano"])) for r in rows] == [(e["request_id"], e["cost_nano"]) for e in listed]
    assert rows[0]["created_at"] == iso(start_ms, ZONE)
