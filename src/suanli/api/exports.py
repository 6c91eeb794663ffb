"""The routes of exports: usage events and ledger transfers, streamed as CSV or JSON Lines.

Thin: authenticate, read the range and format (every bad one a 400 naming it, before a byte is sent), and
stream what gateway/exports.py makes of store/exports.py's pages. The range needs no bound: whatever its
length, the export holds one page in memory (docs/performance.md measures a million events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from suanli.api import usage_params as q
from suanli.api.admin import require_admin
from suanli.api.openai_compat import authenticate
from suanli.gateway import exports
from suanli.gateway.platform import Platform
from suanli.metering.periods import iso
from suanli.store.accounts import find_account
from suanli.store.db import now_ms
from suanli.store.exports import owned_ledger_accounts
from suanli.store.usage_queries import UsageFilter


@dataclass(frozen=True, slots=True)
class ExportRange:
    from_ms: int
    to_ms: int
    zone: ZoneInfo
    output: str  # csv | jsonl


def _range(request: Request, platform: Platform) -> ExportRange:
    query = request.query_params
    tz, _ = q.zone(query, platform.zone)
    output = q.choice(query, "format", exports.FORMATS)
    start, end = q.list_range(query, tz, now_ms())
    if end < start:
        raise q.invalid("to", "'to' must not be before 'from'.")
    return ExportRange(start, end, tz, output)


def _stream(what: str, owner: str, r: ExportRange, chunks: Iterator[exports.Chunk]) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:  # each page read here, on the event loop, where the reader's connection lives,
            yield await run_in_threadpool(chunk)  # and made into text on a thread

    start = "start" if r.from_ms == 0 else _stamp(r.from_ms, r.zone)
    end = "end" if r.to_ms >= q.UNBOUNDED_MS else _stamp(r.to_ms, r.zone)
    name = f"suanli-{what}-{owner}-{start}-{end}.{r.output}"
    headers = {"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"}
    return StreamingResponse(body(), media_type=exports.MEDIA_TYPES[r.output], headers=headers)


def _stamp(t_ms: int, zone: ZoneInfo) -> str:
    return iso(t_ms, zone)[:16].replace("-", "").replace(":", "")  # 20261101T0000


def _usage(platform: Platform, request: Request, account_id: str | None) -> Response:
    r, query = _range(request, platform), request.query_params
    f = UsageFilter(
        account_id,
        r.from_ms,
        r.to_ms,
        model=q.text(query, "model"),
        key_id=q.text(query, "key"),
        operator=q.text(query, "operator"),
        outcome=q.text(query, "outcome"),
    )
    return _stream("usage", account_id or "all", r, exports.usage_chunks(platform.reader, f, r.zone, r.output))


def _transfers(platform: Platform, request: Request, account_id: str | None) -> Response:
    r = _range(request, platform)
    owned = None if account_id is None else owned_ledger_accounts(platform.reader, account_id)
    chunks = exports.transfer_chunks(platform.reader, owned, r.from_ms, r.to_ms, zone=r.zone, output=r.output)
    return _stream("transfers", account_id or "all", r, chunks)


def _admin_account(platform: Platform, request: Request) -> str | None:
    ref = q.text(request.query_params, "account")
    return None if ref is None else find_account(platform.reader, ref).id


async def my_usage_export(request: Request) -> Response:
    caller = authenticate(request)
    return _usage(request.app.state.platform, request, caller.account.id)


async def my_transfers_export(request: Request) -> Response:
    caller = authenticate(request)
    return _transfers(request.app.state.platform, request, caller.account.id)


async def admin_usage_export(request: Request) -> Response:
    platform = require_admin(request)
    return _usage(platform, request, _admin_account(platform, request))


async def admin_transfers_export(request: Request) -> Response:
    platform = require_admin(request)
    return _transfers(platform, request, _admin_account(platform, request))


routes: list[BaseRoute] = [
    Route("/v1/exports/usage", my_usage_export, methods=["GET"]),
    Route("/v1/exports/transfers", my_transfers_export, methods=["GET"]),
    Route("/admin/v1/exports/usage", admin_usage_export, methods=["GET"]),
    Route("/admin/v1/exports/transfers", admin_transfers_export, methods=["GET"]),
]
