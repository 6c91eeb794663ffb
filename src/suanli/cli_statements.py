"""``suanli statement ACCOUNT --month 2026-11``: an account's statement from the database, as the API gives it
(the same stored copy once the month has closed), printed as text or JSON, or written as CSV or PDF."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.catalog import load_catalog
from suanli.cli_admin import Common, read_db, run_job
from suanli.economy import statements, statements_csv, statements_pdf
from suanli.errors import BadRequest
from suanli.gateway.platform import Settings
from suanli.instants import parse_iso_ms
from suanli.money import nano_to_cny
from suanli.store.db import now_ms


def _period(args: argparse.Namespace, zone: ZoneInfo) -> statements.Period:
    if args.month:
        return statements.month_period(args.month, zone)
    now = now_ms()
    start = parse_iso_ms(args.start, "from", now, zone) if args.start else None
    end = parse_iso_ms(args.end, "to", now, zone) if args.end else None
    return statements.range_period(start, end, zone)


def statement(args: argparse.Namespace, settings: Settings) -> int:
    zone = ZoneInfo(load_catalog(settings.catalog_path).timezone)
    period, now = _period(args, zone), now_ms()
    served = read_db(settings, lambda conn: statements.serve(conn, args.account, period, now))
    body = run_job(settings, statements.store_job(served)) if isinstance(served, statements.Unstored) else served
    if args.csv or args.pdf:
        content = statements_csv.render(body).encode() if args.csv else statements_pdf.render(body, args.lang)
        if args.output is None and args.pdf:
            raise BadRequest("A PDF is written to a file: add --output FILE.", param="output")
        if args.output is None:
            sys.stdout.write(content.decode())
        else:
            Path(args.output).write_bytes(content)
        return 0
    money = body["money"]
    text = (
        f"{body['number']} {body['account']['name']} {body['period']['from']} .. {body['period']['to']}"
        f"{'' if body['final'] else ' (open)'}: opening ¥{nano_to_cny(money['opening_nano'])}, closing "
        f"¥{nano_to_cny(money['closing_nano'])}, {money['usage']['calls']} calls, reserved "
        f"¥{nano_to_cny(money['pending']['reserved_nano'])}"
    )
    sys.stdout.write((orjson.dumps(body).decode() if args.json else text) + "\n")
    return 0


def add_commands(commands: Any, common: Common) -> None:
    parser = commands.add_parser("statement", help="an account's statement for a month or a range")
    parser.add_argument("account")
    parser.add_argument("--month", help="YYYY-MM in the catalog's time zone")
    parser.add_argument("--from", dest="start", help="start of a range (ISO 8601 or epoch ms)")
    parser.add_argument("--to", dest="end", help="end of a range, exclusive")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--csv", action="store_true", help="CSV (docs/statements.md lists the columns)")
    formats.add_argument("--pdf", action="store_true", help="a PDF document (needs --output)")
    parser.add_argument("--output", help="write the CSV or PDF to this file")
    parser.add_argument("--lang", choices=statements_pdf.LANGS, default="en", help="the PDF's language")
    parser.set_defaults(handler=statement)
    common(parser)
