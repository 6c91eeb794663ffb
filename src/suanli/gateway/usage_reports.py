"""Usage for people: an account's calls page by page (JSON or CSV) and summaries by hour or day of a zone.

Summaries are summed by the database per UTC quarter hour (store/usage_queries.py) and folded here into the
zone's hours or days (``fold``), so a bucket is exact in every zone. Totals are sums of what each event
charged (``cost_nano``); by token class, each class is priced at the event's own price for it, and those add
up to the list price, which is ``cost_nano + uncharged_nano`` of every event (billing.md).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from suanli.gateway.accounts import usage_dict
from suanli.metering.periods import bucket_start_ms, iso
from suanli.money import nano_to_cny
from suanli.store.conn import Conn
from suanli.store.usage import UsageEvent
from suanli.store.usage_queries import TOKEN_CLASSES, SlotSums, UsageFilter, slot_sums, usage_page

CSV_PAGE_ROWS = 500  # events read per query while a CSV streams
# The CSV's columns, in this order, for good: programs read them by name or by place (docs/api.md).
CSV_COLUMNS = (
    "request_id",
    "created_at",
    "created_at_ms",
    "key_id",
    "model",
    "operator",
    "offer",
    "price_window",
    "stream",
    "outcome",
    "http_status",
    "error_code",
    "estimated",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "cost_nano",
    "uncharged_nano",
    "reserved_nano",
    "price_input_nano",
    "price_cached_input_nano",
    "price_cache_write_nano",
    "price_output_nano",
    "price_reasoning_nano",
    "latency_ms",
    "ttft_ms",
)


@dataclass(slots=True)
class Bucket:
    """One row of a summary: a local hour or day, one group, and what its events add up to."""

    start_ms: int
    group: str | None
    calls: int = 0
    tokens: int = 0
    cost_nano: int = 0
    uncharged_nano: int = 0

    def add(self, calls: int, tokens: int, cost_nano: int, uncharged_nano: int) -> None:
        self.calls += calls
        self.tokens += tokens
        self.cost_nano += cost_nano
        self.uncharged_nano += uncharged_nano


def fold(slots: Iterable[SlotSums], period: str, zone: ZoneInfo, *, by_class: bool = False) -> list[Bucket]:
    """Quarter hours into the zone's hours or days (by group, or by token class), non-empty ones, ascending."""
    buckets: dict[tuple[int, str | None], Bucket] = {}
    for slot in slots:
        start = bucket_start_ms(slot.slot_ms, period, zone)
        if not by_class:
            bucket = buckets.setdefault((start, slot.group), Bucket(start, slot.group))
            bucket.add(slot.calls, slot.tokens, slot.cost_nano, slot.uncharged_nano)
            continue
        for name in TOKEN_CLASSES:
            sums = slot.classes[name]
            if sums.tokens:
                buckets.setdefault((start, name), Bucket(start, name)).add(sums.calls, sums.tokens, sums.cost_nano, 0)
    order = {name: i for i, name in enumerate(TOKEN_CLASSES)}
    return sorted(buckets.values(), key=lambda b: (b.start_ms, order.get(b.group or "", -1), b.group or ""))


def summary(conn: Conn, f: UsageFilter, *, period: str, by: str, zone: ZoneInfo, zone_name: str) -> dict[str, Any]:
    """``GET /v1/usage/summary`` (and the admin's, over every account): buckets and totals."""
    grouped = None if by in ("none", "token_class") else by
    slots = slot_sums(conn, f, grouped)
    buckets = fold(slots, period, zone, by_class=by == "token_class")
    totals = Bucket(f.from_ms, None)
    for slot in slots:
        totals.add(slot.calls, slot.tokens, slot.cost_nano, slot.uncharged_nano)
    return {
        "object": "usage_summary",
        "period": period,
        "by": by,
        "timezone": zone_name,
        "from": iso(f.from_ms, zone),
        "from_ms": f.from_ms,
        "to": iso(f.to_ms, zone),
        "to_ms": f.to_ms,
        "data": [_bucket_dict(b, zone) for b in buckets],
        "totals": {
            "calls": totals.calls,
            "tokens": totals.tokens,
            "cost": nano_to_cny(totals.cost_nano),
            "cost_nano": totals.cost_nano,
            "uncharged": nano_to_cny(totals.uncharged_nano),
            "uncharged_nano": totals.uncharged_nano,
        },
    }


def _bucket_dict(bucket: Bucket, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "start": iso(bucket.start_ms, zone),
        "start_ms": bucket.start_ms,
        "group": bucket.group,
        "calls": bucket.calls,
        "tokens": bucket.tokens,
        "cost": nano_to_cny(bucket.cost_nano),
        "cost_nano": bucket.cost_nano,
    }


def usage_list(
    conn: Conn, f: UsageFilter, limit: int, before: tuple[int, str | None] | None, zone: ZoneInfo
) -> dict[str, Any]:
    """A page of ``GET /v1/usage``, newest first, and where the next page starts (null: no more)."""
    events = usage_page(conn, f, limit + 1, before)
    shown, more = events[:limit], len(events) > limit
    last = shown[-1] if more else None
    return {
        "object": "list",
        "data": [{**usage_dict(e), "created_at": iso(e.created_at_ms, zone)} for e in shown],
        "next_before_ms": None if last is None else last.created_at_ms,
        "next_before_id": None if last is None else last.request_id,
    }


def usage_csv(
    conn: Conn, f: UsageFilter, limit: int, before: tuple[int, str | None] | None, zone: ZoneInfo
) -> Iterator[Callable[[], str]]:
    """The same events as ``usage_list`` as CSV, the header first, read ``CSV_PAGE_ROWS`` at a time: each
    page read as the iterator advances, its text made by calling what it yields (on a thread, by the API)."""
    yield partial(csv_line, CSV_COLUMNS)
    left = limit
    while left > 0:
        events = usage_page(conn, f, min(left, CSV_PAGE_ROWS), before)
        yield partial(_csv_page, events, zone)
        if len(events) < min(left, CSV_PAGE_ROWS):
            return
        left -= len(events)
        before = (events[-1].created_at_ms, events[-1].request_id)


def _csv_page(events: list[UsageEvent], zone: ZoneInfo) -> str:
    return "".join(csv_line(csv_row(e, zone)) for e in events)


def csv_row(event: UsageEvent, zone: ZoneInfo) -> list[object]:
    """One event in the order of ``CSV_COLUMNS``: booleans as true/false, nothing as an empty field."""
    values = {**usage_dict(event), "created_at": iso(event.created_at_ms, zone)}
    values.update({f"price_{name}_nano": price for name, price in values["prices_nano"].items()})
    return [_csv_value(values[column]) for column in CSV_COLUMNS]


def _csv_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def csv_line(values: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()
