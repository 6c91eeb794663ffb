"""Prices set while the platform runs: an operator's price change, announced ahead, and kept forever.

A new price version takes effect at least ``PRICE_CHANGE_NOTICE_S`` after it is set and after the offer's
latest version, so every customer can see it coming in ``GET /v1/pricing`` (as the next price) and no
quote already given, nor the price of any past instant, ever changes. Versions are rows of
``price_versions``, added to the catalog's own at start and whenever the gateway's sweep reads them again
(the CLI may set them from another process; the notice is longer than the sweep's period).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from suanli.catalog import Catalog, Offer, parse_version_table
from suanli.errors import BadRequest, ConfigError, NotFound
from suanli.instants import DAY_MS
from suanli.limits import PRICE_CHANGE_NOTICE_S, PRICE_VERSION_HORIZON_DAYS
from suanli.pricing.listing import prices_view
from suanli.pricing.schedule import PriceBook, PriceVersion
from suanli.store.conn import Conn
from suanli.store.db import now_ms

SET_BY_CHARS_MAX = 64


def _offer(catalog: Catalog, offer_id: str) -> Offer:
    for offer in catalog.offers:
        if offer.id == offer_id:
            return offer
    raise NotFound(f"No offer '{offer_id}'; offers are named operator/model.", code="offer_not_found", param="offer")


def with_versions(catalog: Catalog, rows: list[tuple[str, int, str]]) -> Catalog:
    """The catalog with the stored versions added to its price book, in order; a stored version at or
    before a later catalog version of the same offer is left out (the catalog file was edited since)."""
    versions = {offer_id: list(history) for offer_id, history in catalog.price_book.versions.items()}
    for offer_id, effective_from_ms, spec in sorted(rows, key=lambda row: (row[0], row[1])):
        history = versions.get(offer_id)
        if not history or effective_from_ms <= history[-1].effective_from_ms:
            continue
        history.append(_parse(spec, history[-1], f"price version of {offer_id}"))
    return replace(catalog, price_book=PriceBook({k: tuple(v) for k, v in versions.items()}))


def _parse(spec: str | Mapping[str, Any], previous: PriceVersion, where: str) -> PriceVersion:
    table = orjson.loads(spec) if isinstance(spec, str) else spec
    try:
        return parse_version_table(table, previous.schedule, where)
    except ConfigError as exc:
        raise BadRequest(str(exc), param="price") from None


def stored_versions(conn: Conn) -> list[tuple[str, int, str]]:
    rows = conn.execute(
        "SELECT offer_id, effective_from_ms, spec FROM price_versions ORDER BY offer_id, effective_from_ms"
    )
    return [(str(row[0]), int(row[1]), str(row[2])) for row in rows]


def set_price_job(
    catalog: Catalog, offer_id: str, spec: Mapping[str, Any], set_by: str
) -> Callable[[Conn], dict[str, Any]]:
    """Add a price version to an offer (checked against the book as stored now, in the same transaction)."""
    if not 0 < len(set_by) <= SET_BY_CHARS_MAX:
        raise BadRequest(f"'set_by' is 1 to {SET_BY_CHARS_MAX} characters.", param="set_by")

    def job(conn: Conn) -> dict[str, Any]:
        _offer(catalog, offer_id)
        book = with_versions(catalog, stored_versions(conn)).price_book
        history = book.history(offer_id)
        version = _parse(spec, history[-1], f"price of {offer_id}")
        now = now_ms()
        _check_start(version.effective_from_ms, history[-1].effective_from_ms, now)
        conn.execute(
            "INSERT INTO price_versions (offer_id, effective_from_ms, spec, set_by, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (offer_id, version.effective_from_ms, orjson.dumps(spec).decode(), set_by, now),
        )
        return {"offer": offer_id, "effective_from_ms": version.effective_from_ms, "set_by": set_by}

    return job


def _check_start(start_ms: int, latest_ms: int, now: int) -> None:
    """A new version starts at least ``PRICE_CHANGE_NOTICE_S`` from now and after the latest one, so everyone
    sees it coming; and at most ``PRICE_VERSION_HORIZON_DAYS`` ahead, so that no version dated in a far year
    blocks every later change."""
    if start_ms < max(now + PRICE_CHANGE_NOTICE_S * 1000, latest_ms + 1):
        raise BadRequest(
            f"A new price takes effect at least {PRICE_CHANGE_NOTICE_S} s from now and after the "
            f"offer's latest price version (epoch ms {latest_ms}).",
            code="price_change_too_soon",
            param="effective_from",
        )
    if start_ms > now + PRICE_VERSION_HORIZON_DAYS * DAY_MS:
        raise BadRequest(
            f"A new price takes effect at most {PRICE_VERSION_HORIZON_DAYS} days from now.",
            code="price_change_too_far",
            param="effective_from",
        )


def history_view(catalog: Catalog, offer_id: str) -> list[dict[str, Any]]:
    """Every price version of an offer, oldest first: from the catalog and set since."""
    _offer(catalog, offer_id)
    return [
        {
            "effective_from_ms": v.effective_from_ms,
            "effective_from": datetime.fromtimestamp(v.effective_from_ms / 1000, UTC).isoformat(),
            "prices": prices_view(v.schedule.base),
            "windows": len(v.schedule.windows),
            "long_context_tiers": len(v.schedule.long_context),
            "batch_percent": v.schedule.batch_percent,
        }
        for v in catalog.price_book.history(offer_id)
    ]
