"""An account's usage over HTTP, end to end: real calls through the official openai (streamed and not) and
anthropic SDKs, then the list, its pages and CSV, and the summaries by hour and day of several zones, each
checked against the events themselves; the admin's summary over every account; the price window each call
was locked at."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import anthropic
import httpx
import openai
import pytest

from suanli.money import nano_to_cny
from tests.conftest import TEST_CATALOG, Gateway, Simulator, start_gateway, stop

CLASSES = ("input", "cached_input", "cache_write", "output", "reasoning")
CSV_HEADER = (
    "request_id,created_at,created_at_ms,key_id,model,operator,offer,price_window,stream,outcome,http_status,"
    "error_code,estimated,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost,"
    "cost_nano,uncharged_nano,reserved_nano,price_input_nano,price_cached_input_nano,price_cache_write_nano,"
    "price_output_nano,price_reasoning_nano,latency_ms,ttft_ms"
)
MESSAGES = [{"role": "user", "content": "Tell me about tokens and time zones."}]


def get(gateway: Gateway, api_key: str, path: str, /, **params: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}"}
    return httpx.get(f"{gateway.url}{path}", params=params, headers=headers, timeout=20)  # type: ignore[arg-type]


def shanghai_iso(t_ms: int) -> str:
    moment = datetime.fromtimestamp(t_ms / 1000, ZoneInfo("Asia/Shanghai"))
    return moment.isoformat(timespec="milliseconds") if t_ms % 1000 else moment.isoformat()


def tokens(event: dict[str, Any]) -> int:
    return sum(int(event[f"{c}_tokens"]) for c in CLASSES)


def class_cost(event: dict[str, Any]) -> int:
    return sum(int(event[f"{c}_tokens"]) * int(event["prices_nano"][c]) for c in CLASSES)


def make_calls(gateway: Gateway, key: str) -> list[str]:
    """Calls of every kind; the price window each one's answer named, in order."""
    windows = []
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20) as client:
        raw = client.chat.completions.with_raw_response.create(model="deepseek-v3.2", messages=MESSAGES, max_tokens=20)  # type: ignore[arg-type]
        windows.append(raw.headers["x-suanli-price-window"])
        assert raw.parse().usage is not None
        streamed = client.chat.completions.with_raw_response.create(
            model="glm-5",
            messages=MESSAGES,
            max_tokens=30,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
        windows.append(streamed.headers["x-suanli-price-window"])
        assert [chunk for chunk in streamed.parse()]
        # An operator that counts more than the margin allows: some usage may be beyond the reservation.
        raw = client.chat.completions.with_raw_response.create(model="styled-tight", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
        windows.append(raw.headers["x-suanli-price-window"])
    with anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20) as c:
        message = c.messages.with_raw_response.create(model="coder", max_tokens=25, messages=MESSAGES)  # type: ignore[arg-type]
        windows.append(message.headers["x-suanli-price-window"])
        with c.messages.stream(model="dual", max_tokens=25, messages=MESSAGES) as stream:  # type: ignore[arg-type]
            assert [event.type for event in stream][-1] == "message_stop"
    return windows


@pytest.fixture(scope="module")
def used(gateway: Gateway) -> Iterator[tuple[str, str, list[str], list[dict[str, Any]]]]:
    """An account with two keys that made calls of every kind: (account, key, windows, its events)."""
    name = f"usage-{id(gateway)}"
    key = gateway.account(name, topup_cny="5")
    other = gateway.admin("POST", f"/admin/v1/accounts/{name}/keys", json={"name": "second"}).json()["key"]
    windows = make_calls(gateway, key) + make_calls(gateway, other)
    events = get(gateway, key, "/v1/usage", limit=1000).json()["data"]
    yield name, key, windows, events


def test_every_call_is_listed_newest_first_with_its_price_window(used: Any) -> None:
    _, _, windows, events = used
    assert len(events) == 10
    assert [e["created_at_ms"] for e in events] == sorted((e["created_at_ms"] for e in events), reverse=True)
    # The test catalog's offers have no time-of-day windows: every call is in the default one.
    assert [e["price_window"] for e in events] == ["standard"] * 10 and set(windows) == {"standard"}
    assert [e["created_at"] for e in events] == [shanghai_iso(e["created_at_ms"]) for e in events]


def test_pages_cover_every_event_once(gateway: Gateway, used: Any) -> None:
    _, key, _, events = used
    seen: list[str] = []
    params: dict[str, object] = {"limit": 3}
    while True:
        page = get(gateway, key, "/v1/usage", **params).json()
        seen += [e["request_id"] for e in page["data"]]
        if page["next_before_ms"] is None:
            break
        params = {"limit": 3, "before_ms": page["next_before_ms"], "before_id": page["next_before_id"]}
    assert seen == [e["request_id"] for e in events]


def test_filters_select_what_they_name(gateway: Gateway, used: Any) -> None:
    _, key, _, events = used
    for param, field, value in (
        ("model", "model", "glm-5"),
        ("operator", "operator", "gamma"),
        ("key", "key_id", events[0]["key_id"]),
        ("outcome", "outcome", "ok"),
    ):
        shown = get(gateway, key, "/v1/usage", **{param: value}).json()["data"]
        assert [e["request_id"] for e in shown] == [e["request_id"] for e in events if e[field] == value]
    middle = sorted(e["created_at_ms"] for e in events)[5]
    shown = get(gateway, key, "/v1/usage", **{"from": middle}).json()["data"]
    assert {e["request_id"] for e in shown} == {e["request_id"] for e in events if e["created_at_ms"] >= middle}


def test_the_csv_has_the_documented_columns_and_the_same_numbers(gateway: Gateway, used: Any) -> None:
    _, key, _, events = used
    response = get(gateway, key, "/v1/usage", format="csv", tz="America/New_York")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["request_id"] for r in rows] == [e["request_id"] for e in events]
    for row, event in zip(rows, events, strict=True):
        for column in (
            "created_at_ms",
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_nano",
            "uncharged_nano",
            "reserved_nano",
            "http_status",
        ):
            assert int(row[column]) == event[column]
        assert row["cost"] == event["cost"] and row["model"] == event["model"] and row["offer"] == event["offer"]
        assert row["price_window"] == event["price_window"] and row["stream"] == str(event["stream"]).lower()
        assert all(int(row[f"price_{c}_nano"]) == event["prices_nano"][c] for c in CLASSES)
        assert row["created_at"].endswith(("-04:00", "-05:00"))  # in the asked zone


def window(events: list[dict[str, Any]]) -> dict[str, int]:
    return {"from": min(e["created_at_ms"] for e in events), "to": max(e["created_at_ms"] for e in events) + 1}


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Asia/Kathmandu", "America/New_York"])
@pytest.mark.parametrize("period", ["hour", "day"])
def test_summary_buckets_and_totals_are_the_events_own(gateway: Gateway, used: Any, tz: str, period: str) -> None:
    _, key, _, events = used
    zone = ZoneInfo(tz)
    summary = get(gateway, key, "/v1/usage/summary", period=period, by="model", tz=tz, **window(events)).json()
    assert summary["object"] == "usage_summary" and summary["timezone"] == tz and summary["by"] == "model"
    totals = summary["totals"]
    assert totals["calls"] == len(events)
    assert totals["tokens"] == sum(tokens(e) for e in events)
    assert totals["cost_nano"] == sum(e["cost_nano"] for e in events) and totals["cost"] == nano_to_cny(
        totals["cost_nano"]
    )
    expected: dict[tuple[str, str], list[int]] = {}
    for e in events:
        local = datetime.fromtimestamp(e["created_at_ms"] // 1000, zone)
        start = local.replace(minute=0, second=0) if period == "hour" else local.replace(hour=0, minute=0, second=0)
        sums = expected.setdefault((start.isoformat(), e["model"]), [0, 0, 0])
        sums[0], sums[1], sums[2] = sums[0] + 1, sums[1] + tokens(e), sums[2] + e["cost_nano"]
    shown = {(b["start"], b["group"]): [b["calls"], b["tokens"], b["cost_nano"]] for b in summary["data"]}
    assert shown == expected
    assert all(b["start_ms"] == int(datetime.fromisoformat(b["start"]).timestamp() * 1000) for b in summary["data"])


def test_summary_by_token_class_prices_each_class_at_the_events_prices(gateway: Gateway, used: Any) -> None:
    _, key, _, events = used
    summary = get(gateway, key, "/v1/usage/summary", period="day", by="token_class", **window(events)).json()
    by_class: dict[str, list[int]] = {}
    for b in summary["data"]:
        sums = by_class.setdefault(b["group"], [0, 0])
        sums[0], sums[1] = sums[0] + b["tokens"], sums[1] + b["cost_nano"]
    expected = {
        c: [sum(e[f"{c}_tokens"] for e in events), sum(e[f"{c}_tokens"] * e["prices_nano"][c] for e in events)]
        for c in CLASSES
    }
    assert by_class == {c: v for c, v in expected.items() if v[0]}
    # Each event's classes add up to its list price: what it was charged plus what no balance could pay.
    assert all(class_cost(e) == e["cost_nano"] + e["uncharged_nano"] for e in events)
    totals = summary["totals"]
    assert sum(v[1] for v in by_class.values()) == totals["cost_nano"] + totals["uncharged_nano"]


@pytest.mark.parametrize("by", ["key", "operator"])
def test_summary_groups_add_up_to_the_totals(gateway: Gateway, used: Any, by: str) -> None:
    _, key, _, events = used
    summary = get(gateway, key, "/v1/usage/summary", period="hour", by=by, **window(events)).json()
    field = {"key": "key_id", "operator": "operator"}[by]
    groups: dict[str, int] = {}
    for b in summary["data"]:
        groups[b["group"]] = groups.get(b["group"], 0) + b["cost_nano"]
    expected: dict[str, int] = {}
    for e in events:
        expected[e[field]] = expected.get(e[field], 0) + e["cost_nano"]
    assert groups == expected and len(expected) > 1


def test_the_admin_summary_counts_every_account_with_what_went_uncharged(gateway: Gateway, used: Any) -> None:
    name, _, _, events = used
    account_id = gateway.admin("GET", f"/admin/v1/accounts/{name}").json()["account"]["id"]
    params = {"period": "day", "by": "account", **window(events)}
    summary = gateway.admin("GET", "/admin/v1/usage/summary", params=params).json()
    mine = [b for b in summary["data"] if b["group"] == account_id]
    assert sum(b["calls"] for b in mine) == len(events)
    assert sum(b["cost_nano"] for b in mine) == sum(e["cost_nano"] for e in events)
    totals = summary["totals"]
    assert totals["calls"] == sum(b["calls"] for b in summary["data"]) >= len(events)
    assert totals["uncharged"] == nano_to_cny(totals["uncharged_nano"]) and totals["uncharged_nano"] >= 0
    by_tier = gateway.admin("GET", "/admin/v1/usage/summary", params={**params, "by": "tier"}).json()
    assert {b["group"] for b in by_tier["data"]} <= {"enterprise", "household"}
    assert by_tier["totals"] == totals


def test_the_admin_usage_carries_the_price_window(gateway: Gateway, used: Any) -> None:
    name, _, _, events = used
    admin_events = gateway.admin("GET", f"/admin/v1/accounts/{name}/usage", params={"limit": 100}).json()["data"]
    assert {e["request_id"]: e["price_window"] for e in admin_events} == {
        e["request_id"]: e["price_window"] for e in events
    }


WINDOWED_CATALOG = (
    TEST_CATALOG
    + """
[models.windowed]

[[offers]]
operator = "alpha"
model = "windowed"
context_window = 100000
max_output_tokens = 1000
price = { input = "2", output = "4" }
[offers.pricing]
default_window_name = "peak"
windows = [{ name = "off-peak", days = ["weekday", "weekend", "holiday"], from = "00:00", to = "24:00", percent = 50 }]
"""
)


@pytest.fixture(scope="module")
def windowed(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    running = start_gateway(tmp_path_factory.mktemp("windowed"), simulator, catalog_text=WINDOWED_CATALOG)
    try:
        yield running
    finally:
        stop(running.process)


def test_a_call_in_a_price_window_records_that_window_and_its_prices(windowed: Gateway) -> None:
    key = windowed.account("windowed", topup_cny="1")
    with openai.OpenAI(base_url=f"{windowed.url}/v1", api_key=key, max_retries=0, timeout=20) as client:
        raw = client.chat.completions.with_raw_response.create(model="windowed", messages=MESSAGES, max_tokens=20)  # type: ignore[arg-type]
    assert raw.headers["x-suanli-price-window"] == "off-peak"
    [event] = get(windowed, key, "/v1/usage").json()["data"]
    assert event["price_window"] == "off-peak"
    assert event["prices_nano"]["input"] == 1000 and event["prices_nano"]["output"] == 2000  # 50% of 2 and 4 CNY/M
    [row] = list(csv.DictReader(io.StringIO(get(windowed, key, "/v1/usage", format="csv").text)))
    assert row["price_window"] == "off-peak"


def test_uncharged_usage_is_why_a_calls_classes_can_exceed_its_cost(
    gateway: Gateway, simulator: Simulator, unique: str
) -> None:
    """The one case where the classes of an event add up to more than its ``cost_nano``: the operator
    reported more than the reservation covers and no balance could pay the rest (billing.md)."""
    key = gateway.account(unique, topup_cny=None)
    body = {"model": "styled-tight", "max_tokens": 5, "messages": [{"role": "user", "content": "tokens " * 200}]}
    headers = {"Authorization": f"Bearer {key}"}
    quoted = httpx.post(f"{gateway.url}/v1/quote", json=body, headers=headers).json()
    gateway.admin("POST", f"/admin/v1/accounts/{unique}/topup", json={"amount": quoted["data"][0]["now"]["max_cost"]})
    simulator.set("rough", prompt_tokens_percent=150, completion_tokens=5)
    try:
        assert httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers).status_code == 200
    finally:
        simulator.reset("rough")
    [event] = get(gateway, key, "/v1/usage").json()["data"]
    assert event["uncharged_nano"] > 0 and class_cost(event) == event["cost_nano"] + event["uncharged_nano"]
    summary = get(gateway, key, "/v1/usage/summary", by="token_class", **window([event])).json()
    assert summary["totals"]["cost_nano"] == event["cost_nano"]
    assert summary["totals"]["uncharged_nano"] == event["uncharged_nano"]
    assert sum(b["cost_nano"] for b in summary["data"]) == class_cost(event) > event["cost_nano"]
