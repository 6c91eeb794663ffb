"""Exports as documents: usage events and ledger transfers as CSV or JSON Lines, a chunk per page read.

The reads are store/exports.py's, a page at a time, so an export of any range holds one page in memory;
each page becomes one chunk of text for the response to send. A chunk comes as a function that makes
its text (``Chunk``): the page is read when the iterator advances, on the event loop where the reader's
connection lives, and the caller makes the text on a thread, so other calls are not held while a page is
formatted (about 35 ms for 1,000 rows). Usage rows are ``GET /v1/usage``'s own: the
CSV has its columns and its row function (gateway/usage_reports.py), a JSON line is an item of its list.
The columns are fixed, in this order, and only ever added to at the end (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.economy.contracts import VOLUME_ASSET
from suanli.economy.names import BUDGET_ASSETS
from suanli.gateway.accounts import usage_dict
from suanli.gateway.usage_reports import CSV_COLUMNS, csv_line, csv_row
from suanli.ledger.model import ASSET_CNY
from suanli.metering.periods import iso
from suanli.money import nano_to_cny
from suanli.store.conn import Conn
from suanli.store.exports import EXPORT_PAGE_ROWS, TransferRow, transfer_rows, usage_pages
from suanli.store.usage import UsageEvent
from suanli.store.usage_queries import UsageFilter

Chunk = Callable[[], bytes]  # a page read, to be made into text (off the event loop)
FORMATS = ("csv", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
# Assets counted in nano-CNY: money, a budget in CNY, a contract's monthly volume.
CNY_ASSETS = frozenset({ASSET_CNY, BUDGET_ASSETS["cny"], VOLUME_ASSET})
TRANSFER_COLUMNS = (
    "id",
    "created_at",
    "created_at_ms",
    "kind",
    "debit_account",
    "credit_account",
    "asset",
    "amount",
    "amount_cny",
    "pending_id",
    "memo",
    "direction",
)


def usage_chunks(conn: Conn, f: UsageFilter, zone: ZoneInfo, output: str) -> Iterator[Chunk]:
    """The events ``f`` selects, oldest first: the CSV's header, then a chunk per page."""
    if output == "csv":
        yield partial(_header, CSV_COLUMNS)
    for page in usage_pages(conn, f):
        yield partial(_usage_page, page, zone, output)


def _header(columns: tuple[str, ...]) -> bytes:
    return csv_line(columns).encode()


def _usage_page(page: list[UsageEvent], zone: ZoneInfo, output: str) -> bytes:
    if output == "csv":
        return "".join(csv_line(csv_row(e, zone)) for e in page).encode()
    return b"".join(_json_line({**usage_dict(e), "created_at": iso(e.created_at_ms, zone)}) for e in page)


def transfer_chunks(
    conn: Conn, owned: list[str] | None, from_ms: int, to_ms: int, *, zone: ZoneInfo, output: str
) -> Iterator[Chunk]:
    """The transfers on the ledger accounts ``owned`` (every transfer, with None) in ``[from_ms, to_ms)``."""
    mine = None if owned is None else frozenset(owned)
    if output == "csv":
        yield partial(_header, TRANSFER_COLUMNS)
    for page in _batches(transfer_rows(conn, owned, from_ms, to_ms), EXPORT_PAGE_ROWS):
        yield partial(_transfer_page, page, mine, zone, output)


def _transfer_page(page: list[TransferRow], mine: frozenset[str] | None, zone: ZoneInfo, output: str) -> bytes:
    rows = (transfer_dict(t, mine, zone) for t in page)
    if output == "csv":
        return "".join(csv_line([_csv_value(row[c]) for c in TRANSFER_COLUMNS]) for row in rows).encode()
    return b"".join(_json_line(row) for row in rows)


def transfer_dict(t: TransferRow, mine: frozenset[str] | None, zone: ZoneInfo) -> dict[str, Any]:
    """One transfer as its export shows it: ``direction`` says which way it moved the exported account."""
    return {
        "id": t.id,
        "created_at": iso(t.created_at_ms, zone),
        "created_at_ms": t.created_at_ms,
        "kind": t.kind,
        "debit_account": t.debit_account,
        "credit_account": t.credit_account,
        "asset": t.asset,
        "amount": t.amount,
        "amount_cny": nano_to_cny(t.amount) if t.asset in CNY_ASSETS else None,
        "pending_id": t.pending_id,
        "memo": t.memo,
        "direction": None if mine is None else _direction(t, mine),
    }


def _direction(t: TransferRow, mine: frozenset[str]) -> str:
    out, into = t.debit_account in mine, t.credit_account in mine
    return "within" if out and into else "out" if out else "in"


def _batches(rows: Iterable[TransferRow], size: int) -> Iterator[list[TransferRow]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def _json_line(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row) + b"\n"


def _csv_value(value: object) -> object:
    return "" if value is None else value
