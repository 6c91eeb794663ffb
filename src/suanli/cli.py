"""The ``suanli`` command: run the platform and the simulator, and administer accounts, keys and money.

Administration commands work on the database directly (the same jobs the admin API runs), so they work
whether or not a server is running. Every command takes ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from suanli import cli_admin, cli_db, cli_plans, cli_pricing, cli_run, cli_settlement, cli_statements
from suanli.errors import ConfigError, SuanliError
from suanli.gateway.platform import DEFAULT_DATABASE_PATH, Settings
from suanli.store.pg import is_postgres

Handler = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    database = getattr(args, "database", None)
    catalog = getattr(args, "catalog", None)
    if database and is_postgres(database):
        settings = replace(settings, database_url=database)
    elif database:
        settings = replace(settings, database_path=Path(database), database_url=None)
    return replace(settings, catalog_path=Path(catalog) if catalog else settings.catalog_path)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        help=f"SQLite file or postgresql:// URL (default: $SUANLI_DATABASE_URL, else $SUANLI_DATABASE or "
        f"{DEFAULT_DATABASE_PATH})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suanli", description="Suanli: a metered token exchange for AI.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_run.add_commands(commands, _common)
    cli_admin.add_commands(commands, _common)
    cli_plans.add_commands(commands, _common)
    cli_pricing.add_commands(commands, _common)
    cli_db.add_commands(commands, _common)
    cli_settlement.add_commands(commands, _common)
    cli_statements.add_commands(commands, _common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, _settings(args))
    except SuanliError as exc:
        return _fail(args, exc.message, exc.code, 2 if exc.status < 500 else 1)
    except ConfigError as exc:
        return _fail(args, str(exc), "config_error", 2)
    except KeyboardInterrupt:
        return 130


def _fail(args: argparse.Namespace, message: str, code: str, status: int) -> int:
    if getattr(args, "json", False):
        error: dict[str, Any] = {"error": {"message": message, "code": code}}
        sys.stdout.write(orjson.dumps(error).decode() + "\n")
    else:
        sys.stderr.write(f"error: {message}\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
