"""An operator's statement for a month: what it served, what it sold, the commission, what it is owed.

Read-only: the usage events give the tokens (by model, offer and token class) and what customers were
charged; the ledger's credits to ``sales:{operator}`` give the gross, split per offer and commission
version exactly as a settlement run splits it; the ``operator_settlements`` rows give what was settled so
far and by which runs. The statement is as of the earlier of now and the month's end.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from suanli.catalog import Catalog
from suanli.economy.operator_sales import Month, sales_groups, served
from suanli.economy.operator_settlement import settled_totals, settlements
from suanli.store.conn import Conn


def operator_statement(conn: Conn, catalog: Catalog, operator: str, month: Month, now_ms: int) -> dict[str, Any]:
    as_of_ms = max(month.start_ms, min(now_ms, month.end_ms))
    groups = sales_groups(conn, catalog, operator, month.start_ms, as_of_ms)
    lines = served(conn, operator, month.start_ms, as_of_ms)
    gross, commission = sum(g.gross_nano for g in groups), sum(g.commission_nano for g in groups)
    settled_gross, settled_commission, _ = settled_totals(conn, operator, month.name)
    usage_nano = sum(line.charged_nano + line.uncharged_nano for line in lines)
    return {
        "object": "operator_statement",
        "operator": operator,
        "month": month.name,
        "period": {"start_ms": month.start_ms, "end_ms": month.end_ms, "as_of_ms": as_of_ms},
        "served": [
            {
                "model": line.model,
                "offer": line.offer_id,
                "calls": line.calls,
                "tokens": line.tokens,
                "charged_nano": line.charged_nano,
                "uncharged_nano": line.uncharged_nano,
            }
            for line in lines
        ],
        "sales": [
            {
                "offer": g.offer_id,
                "model": g.model,
                "commission_from_ms": g.effective_from_ms,
                "commission_bp": g.basis_points,
                "transfers": g.transfers,
                "gross_nano": g.gross_nano,
                "commission_nano": g.commission_nano,
                "net_nano": g.net_nano,
            }
            for g in groups
        ],
        "gross_nano": gross,
        "commission_nano": commission,
        "net_nano": gross - commission,
        "settled": {
            "gross_nano": settled_gross,
            "commission_nano": settled_commission,
            "net_nano": settled_gross - settled_commission,
        },
        "unsettled_net_nano": (gross - commission) - (settled_gross - settled_commission),
        "runs": [row.public() for row in settlements(conn, month=month.name, operator=operator)],
        "reconciliation": {"ledger_gross_nano": gross, "usage_nano": usage_nano, "difference_nano": gross - usage_nano},
    }


CSV_COLUMNS = (
    "section",
    "model",
    "offer",
    "commission_bp",
    "calls",
    "input",
    "cached_input",
    "cache_write",
    "output",
    "reasoning",
    "gross_nano",
    "commission_nano",
    "net_nano",
    "run_id",
)


def statement_csv(statement: dict[str, Any]) -> str:
    """The statement as CSV, one row per served line, sales group, run and total (columns ``CSV_COLUMNS``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for line in statement["served"]:
        writer.writerow(
            {
                "section": "served",
                "model": line["model"],
                "offer": line["offer"],
                "calls": line["calls"],
                **line["tokens"],
                "gross_nano": line["charged_nano"] + line["uncharged_nano"],
            }
        )
    for group in statement["sales"]:
        writer.writerow(
            {
                "section": "sales",
                **{k: group[k] for k in ("model", "offer", "commission_bp")},
                "calls": group["transfers"],
                **_money(group),
            }
        )
    for run in statement["runs"]:
        writer.writerow({"section": "settled", "run_id": run["run_id"], **_money(run)})
    writer.writerow({"section": "total", **_money(statement)})
    writer.writerow({"section": "settled_total", **_money(statement["settled"])})
    return out.getvalue()


def _money(row: dict[str, Any]) -> dict[str, int]:
    return {key: row[key] for key in ("gross_nano", "commission_nano", "net_nano")}
