"""What an operator sold in a month, read from the ledger and from the usage events (docs/statements.md).

The ledger is the truth for money: every call credits its list price to ``sales:{operator}`` (the
customer's settlement ``.pay``, a plan's ``.plan_pay``, an overrun's ``.over.N`` and the platform's
``.uncharged``), each transfer named after its request. Those credits, grouped by offer and by the
commission version in force at the transfer's time, are the gross a settlement splits. The usage events
say what the tokens were (model, offer, token class) and what was charged and absorbed; the two are
reconciled per operator, and any difference is reported, never silently taken as the truth.

A month is a calendar month in the catalog's time zone; a transfer belongs to the month its
``created_at_ms`` falls in, as it does in the customers' statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from suanli.catalog import Catalog
from suanli.errors import BadRequest
from suanli.ledger import ASSET_CNY
from suanli.ledger import names as ledger_names
from suanli.pricing.commission import split, version_at
from suanli.store.conn import Conn

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
LOOKUP_BATCH = 500  # request ids looked up in one query
TOKEN_CLASSES = ("input", "cached_input", "cache_write", "output", "reasoning")


@dataclass(frozen=True, slots=True)
class Month:
    name: str  # "2026-11"
    start_ms: int
    end_ms: int  # exclusive: the next month's start


def parse_month(text: str, zone: ZoneInfo) -> Month:
    """``YYYY-MM`` as the instants its first and the next month's first midnight fall on in ``zone``."""
    found = _MONTH.match(text or "")
    if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
        raise BadRequest(f"month must be YYYY-MM, e.g. 2026-11 (got {text!r})", code="invalid_month", param="month")
    year, month = int(found.group(1)), int(found.group(2))
    after = (year + 1, 1) if month == 12 else (year, month + 1)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(after[0], after[1], 1, tzinfo=zone)
    return Month(text, int(start.timestamp() * 1000), int(end.timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class SalesGroup:
    """The credits to an operator's sales of one offer under one commission version, and their split."""

    offer_id: str
    model: str
    effective_from_ms: int
    basis_points: int
    gross_nano: int
    transfers: int

    @property
    def commission_nano(self) -> int:
        return split(self.gross_nano, self.basis_points)[0]

    @property
    def net_nano(self) -> int:
        return split(self.gross_nano, self.basis_points)[1]


def sales_groups(conn: Conn, catalog: Catalog, operator: str, start_ms: int, end_ms: int) -> list[SalesGroup]:
    """Every credit to ``sales:{operator}`` made in ``[start_ms, end_ms)``, grouped by offer and commission
    version. A credit whose request has no usage event (none should) is grouped under offer ``""`` at the
    operator's own rate."""
    rows = conn.execute(
        "SELECT id, amount, created_at_ms FROM transfers WHERE credit_account = ? AND asset = ? "
        "AND kind = 'posted' AND created_at_ms >= ? AND created_at_ms < ? ORDER BY created_at_ms, id",
        (ledger_names.sales(operator), ASSET_CNY, start_ms, end_ms),
    ).fetchall()
    sums: dict[tuple[str, int], list[int]] = {}
    models: dict[str, str] = {}
    for batch in _batches(rows, LOOKUP_BATCH):
        offers = _offers_of(conn, {str(row[0]).split(".")[0] for row in batch})
        for transfer_id, amount, at_ms in batch:
            offer_id, model = offers.get(str(transfer_id).split(".")[0], ("", ""))
            models[offer_id] = model
            version = version_at(catalog.commission_for(operator, offer_id), int(at_ms))
            entry = sums.setdefault((offer_id, version.effective_from_ms), [version.basis_points, 0, 0])
            entry[1] += int(amount)
            entry[2] += 1
    return [
        SalesGroup(offer, models[offer], start, bp, gross, count)
        for (offer, start), (bp, gross, count) in sorted(sums.items())
    ]


def _batches(rows: Sequence[tuple[str, int, int]], size: int) -> Iterable[Sequence[tuple[str, int, int]]]:
    for index in range(0, len(rows), size):
        yield rows[index : index + size]


def _offers_of(conn: Conn, request_ids: set[str]) -> dict[str, tuple[str, str]]:
    if not request_ids:
        return {}
    ordered = sorted(request_ids)
    rows = conn.execute(
        f"SELECT request_id, offer_id, model FROM usage_events WHERE request_id IN ({', '.join('?' for _ in ordered)})",
        ordered,
    )
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}


@dataclass(frozen=True, slots=True)
class ServedLine:
    """Tokens an operator served of one model through one offer, by class, and their money."""

    model: str
    offer_id: str
    calls: int
    tokens: dict[str, int]  # by token class
    charged_nano: int  # what customers were charged at list price (usage events' cost)
    uncharged_nano: int  # what no balance could cover, paid to the operator by the platform


def served(conn: Conn, operator: str, start_ms: int, end_ms: int) -> list[ServedLine]:
    """The usage events of ``operator`` made in ``[start_ms, end_ms)``, by model and offer."""
    rows = conn.execute(
        "SELECT model, offer_id, COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), "
        "SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_nano), SUM(uncharged_nano) FROM usage_events "
        "WHERE operator = ? AND created_at_ms >= ? AND created_at_ms < ? GROUP BY model, offer_id "
        "ORDER BY model, offer_id",
        (operator, start_ms, end_ms),
    ).fetchall()
    return [
        ServedLine(
            str(r[0]),
            str(r[1]),
            int(r[2]),
            dict(zip(TOKEN_CLASSES, (int(v) for v in r[3:8]), strict=True)),
            int(r[8]),
            int(r[9]),
        )
        for r in rows
    ]


def operators_with_sales(conn: Conn, catalog: Catalog) -> list[str]:
    """The catalog's operators and any other operator a sales account was opened for, sorted."""
    prefix = ledger_names.sales("")
    rows = conn.execute("SELECT id FROM ledger_accounts WHERE id LIKE ?", (prefix + "%",)).fetchall()
    return sorted(set(catalog.operators) | {str(r[0]).removeprefix(prefix) for r in rows})
