"""CLI commands of operator settlement: ``suanli settle-operators`` and ``suanli operator-statement``.

They run on the database directly (no gateway needed), each run one transaction (economy/operator_settlement.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.catalog import load_catalog
from suanli.cli_admin import Common, emit, leaf, read_db, run_job, table
from suanli.economy import operator_statement_pdf, statements_pdf
from suanli.economy.operator_sales import parse_month
from suanli.economy.operator_settlement import settle_job
from suanli.economy.operator_statement import operator_statement, statement_csv
from suanli.errors import BadRequest
from suanli.gateway.platform import Settings
from suanli.money import nano_to_cny
from suanli.store.db import now_ms


def settle_operators(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_catalog(settings.catalog_path)
    month = parse_month(args.month, ZoneInfo(catalog.timezone))
    run = run_job(settings, settle_job(catalog, month, now_ms()))
    if run.run_id is None:
        return emit(args, run.public(), f"nothing new to settle for {month.name}")
    rows = [
        [s.operator, s.seq, nano_to_cny(s.gross_nano), nano_to_cny(s.commission_nano), nano_to_cny(s.net_nano)]
        for s in run.settled
    ]
    text = table(["OPERATOR", "RUN#", "GROSS ¥", "COMMISSION ¥", "NET ¥"], rows)
    return emit(args, run.public(), f"{run.run_id}: settled {month.name} up to {run.settled_to_ms}\n{text}")


def statement(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_catalog(settings.catalog_path)
    zone = ZoneInfo(catalog.timezone)
    month = parse_month(args.month, zone)
    if args.pdf and args.output is None:
        raise BadRequest("A PDF is written to a file: add --output FILE.", param="output")
    document: dict[str, Any] = read_db(
        settings, lambda conn: operator_statement(conn, catalog, args.operator, month, now_ms())
    )
    if args.pdf:
        Path(args.output).write_bytes(operator_statement_pdf.render(document, zone, args.lang))
        return 0
    if args.csv:
        sys.stdout.write(statement_csv(document))
        return 0
    if args.json:
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
        return 0
    rows = [
        [
            g["model"],
            g["offer"],
            g["commission_bp"],
            nano_to_cny(g["gross_nano"]),
            nano_to_cny(g["commission_nano"]),
            nano_to_cny(g["net_nano"]),
        ]
        for g in document["sales"]
    ]
    text = table(["MODEL", "OFFER", "BP", "GROSS ¥", "COMMISSION ¥", "NET ¥"], rows)
    settled = nano_to_cny(document["settled"]["net_nano"])
    sys.stdout.write(
        f"{args.operator} {month.name}: net {nano_to_cny(document['net_nano'])}, settled {settled}\n{text}\n"
    )
    return 0


def add_commands(commands: Any, common: Common) -> None:
    p = leaf(
        commands, "settle-operators", "settle the operators' sales of a month (idempotent)", settle_operators, common
    )
    p.add_argument("--month", required=True, help="YYYY-MM in the catalog's time zone")
    p = leaf(commands, "operator-statement", "an operator's statement for a month", statement, common, "operator")
    p.add_argument("--month", required=True, help="YYYY-MM in the catalog's time zone")
    formats = p.add_mutually_exclusive_group()
    formats.add_argument("--csv", action="store_true", help="print CSV")
    formats.add_argument("--pdf", action="store_true", help="a PDF document (needs --output)")
    p.add_argument("--output", help="write the PDF to this file")
    p.add_argument("--lang", choices=statements_pdf.LANGS, default="en", help="the PDF's language")
