"""CLI commands that administer accounts, keys, wallets and usage (``suanli account|key|wallet|...``)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from suanli.catalog import TIERS
from suanli.errors import BadRequest, ServiceUnavailable
from suanli.gateway import accounts as ops
from suanli.gateway import admin_keys
from suanli.gateway.platform import Settings
from suanli.ledger.sqlite import verify
from suanli.money import MoneyFormatError, cny_to_nano, nano_to_cny
from suanli.store.accounts import find_account, list_accounts, list_keys
from suanli.store.conn import Conn
from suanli.store.db import open_database, run_in_transaction
from suanli.store.usage import uncharged_by_offer

T = TypeVar("T")
ADMIN_HTTP_TIMEOUT_S = 10.0
Common = Callable[[argparse.ArgumentParser], None]


def _connect(settings: Settings) -> Conn:
    return open_database(settings.database)


def run_job(settings: Settings, job: Callable[[Conn], T]) -> T:
    conn = _connect(settings)
    try:
        return run_in_transaction(conn, job)
    finally:
        conn.close()


def read_db(settings: Settings, query: Callable[[Conn], T]) -> T:
    conn = _connect(settings)
    try:
        return query(conn)
    finally:
        conn.close()


def emit(args: argparse.Namespace, data: Any, text: str) -> int:
    sys.stdout.write((orjson.dumps(data).decode() if args.json else text) + "\n")
    return 0


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def account_create(args: argparse.Namespace, settings: Settings) -> int:
    account = run_job(settings, ops.create_account_job(args.name, args.tier))
    view = read_db(settings, lambda c: ops.account_view(c, account.id))
    return emit(args, view, f"created account {account.name} ({account.id}, {account.tier})")


def account_routing(args: argparse.Namespace, settings: Settings) -> int:
    provider: Any = None
    if not args.clear:
        if args.provider is None:
            raise BadRequest('give the preferences as JSON, e.g. \'{"order": ["mobile"]}\', or --clear')
        try:
            provider = orjson.loads(args.provider)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"PROVIDER_JSON is not JSON: {exc}") from None
    account = run_job(settings, ops.set_routing_job(args.account, provider))
    return emit(args, ops.account_dict(account), f"{account.name} routing: {orjson.dumps(account.routing).decode()}")


def account_list(args: argparse.Namespace, settings: Settings) -> int:
    accounts = read_db(settings, list_accounts)
    data = [ops.account_dict(a) for a in accounts]
    rows = [[a.id, a.name, a.tier] for a in accounts]
    return emit(args, {"data": data}, table(["ID", "NAME", "TIER"], rows))


def key_create(args: argparse.Namespace, settings: Settings) -> int:
    models = [m for part in args.models or [] for m in part.split(",") if m] or None
    job = ops.create_key_job(args.account, args.name, models, ops.parse_expiry_ms(args.expires, "--expires"))
    key, raw = run_job(settings, job)
    text = f"created key {key.id} for {args.account}; it is shown only this once:\n{raw}"
    return emit(args, {**ops.key_dict(key), "key": raw}, text)


def key_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = read_db(settings, lambda c: list_keys(c, find_account(c, args.account).id))
    rows = [
        [k.id, k.prefix + "…", k.name, ",".join(k.models or ["*"]), "revoked" if k.revoked_at_ms else "active"]
        for k in keys
    ]
    return emit(
        args, {"data": [ops.key_dict(k) for k in keys]}, table(["ID", "PREFIX", "NAME", "MODELS", "STATE"], rows)
    )


def key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    key = run_job(settings, ops.revoke_key_job(args.key_id))
    return emit(args, ops.key_dict(key), f"revoked key {key.id}")


def admin_key_create(args: argparse.Namespace, settings: Settings) -> int:
    key, raw = run_job(settings, admin_keys.create_admin_key_job(args.name))
    text = f"created admin key {key.id} ({key.name}); it is shown only this once:\n{raw}"
    return emit(args, {**admin_keys.admin_key_dict(key), "key": raw}, text)


def admin_key_list(args: argparse.Namespace, settings: Settings) -> int:
    view = read_db(settings, admin_keys.admin_keys_view)
    state = {True: "revoked", False: "active"}
    rows = [[k["id"], k["prefix"] + "…", k["name"], k["origin"], state[bool(k["revoked_at_ms"])]] for k in view["data"]]
    return emit(args, view, table(["ID", "PREFIX", "NAME", "ORIGIN", "STATE"], rows))


def admin_key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    key = run_job(settings, admin_keys.revoke_admin_key_job(args.key_id))
    return emit(args, admin_keys.admin_key_dict(key), f"revoked admin key {key.id} ({key.name})")


def wallet_topup(args: argparse.Namespace, settings: Settings) -> int:
    try:
        amount_nano = cny_to_nano(args.amount)
    except MoneyFormatError as exc:
        raise BadRequest(f"AMOUNT_CNY must be a decimal amount in CNY: {exc}") from None
    account, balance = run_job(settings, ops.topup_job(args.account, amount_nano, args.idempotency_key))
    view = {"account": ops.account_dict(account), "wallet": ops.balance_dict(balance)}
    return emit(args, view, f"topped up {account.name}; available ¥{view['wallet']['available']}")


def balance(args: argparse.Namespace, settings: Settings) -> int:
    view = read_db(settings, lambda c: ops.account_view(c, args.account))
    w = view["wallet"]
    text = f"{view['account']['name']}: balance ¥{w['balance']}, reserved ¥{w['reserved']}, available ¥{w['available']}"
    return emit(args, view, text)


def usage(args: argparse.Namespace, settings: Settings) -> int:
    events = read_db(settings, lambda c: ops.usage_view(c, args.account, args.limit))
    rows = [
        [
            datetime.fromtimestamp(e.created_at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.request_id,
            e.model,
            e.operator,
            e.input_tokens + e.cached_input_tokens + e.cache_write_tokens,
            e.cached_input_tokens,
            e.output_tokens + e.reasoning_tokens,
            ("~" if e.estimated else "") + nano_to_cny(e.cost_nano),
            e.outcome,
        ]
        for e in events
    ]
    headers = ["TIME (UTC)", "REQUEST", "MODEL", "OPERATOR", "IN", "CACHED", "OUT", "COST ¥", "OUTCOME"]
    total = sum(e.cost_nano for e in events)
    text = table(headers, rows) + f"\n{len(events)} requests, ¥{nano_to_cny(total)} (~ = estimated)"
    return emit(args, {"data": [ops.usage_dict(e) for e in events]}, text)


def _admin_get(args: argparse.Namespace, settings: Settings, path: str) -> Any:
    """GET an admin endpoint of a running gateway (health lives in the gateway's memory, not the database)."""
    key = args.admin_key or settings.admin_key
    if not key:
        raise BadRequest("give --admin-key or set SUANLI_ADMIN_KEY")
    request = urllib.request.Request(args.url.rstrip("/") + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_HTTP_TIMEOUT_S) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ServiceUnavailable(f"the gateway at {args.url} answered HTTP {exc.code}", code="gateway_error") from None
    except OSError as exc:
        raise ServiceUnavailable(f"no gateway answers at {args.url}: {exc}", code="gateway_unreachable") from None


def operators(args: argparse.Namespace, settings: Settings) -> int:
    data = _admin_get(args, settings, "/admin/v1/operators")
    rows = [
        [
            o["operator"],
            o["model"],
            o["state"],
            f"{o['window_error_rate_percent']}%",
            _ms(o["latency_p50_ms"]),
            _ms(o["latency_p95_ms"]),
            _ms(o["ttft_p50_ms"]),
            f"{o['in_flight']}/{o['capacity']}",
            o["reason"],
        ]
        for op in data["data"]
        for o in op["offers"]
    ]
    headers = ["OPERATOR", "MODEL", "STATE", "ERRORS", "P50", "P95", "TTFT P50", "IN FLIGHT", "WHY"]
    return emit(args, data, table(headers, rows))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def uncharged(args: argparse.Namespace, settings: Settings) -> int:
    rows = read_db(settings, uncharged_by_offer)
    data = [
        {"operator": r[0], "offer": r[1], "calls": r[2], "uncharged": nano_to_cny(r[3]), "uncharged_nano": r[3]}
        for r in rows
    ]
    text = table(["OPERATOR", "OFFER", "CALLS", "UNCHARGED ¥"], [[r[0], r[1], r[2], nano_to_cny(r[3])] for r in rows])
    total = sum(r[3] for r in rows)
    return emit(args, {"data": data}, text + f"\n¥{nano_to_cny(total)} served beyond what customers' balances held")


def ledger_verify(args: argparse.Namespace, settings: Settings) -> int:
    read_db(settings, verify)
    return emit(args, {"ok": True}, "ledger verified: every account's sums match its transfers")


def group(commands: Any, name: str, help_text: str) -> Any:
    """A command that has actions (``suanli NAME ACTION``)."""
    return commands.add_parser(name, help=help_text).add_subparsers(dest="action", required=True, metavar="ACTION")


def leaf(
    parent: Any, name: str, help_text: str, handler: Callable[..., int], common: Common, *positionals: str
) -> argparse.ArgumentParser:
    """A command that runs ``handler``, with these positional arguments and the common options."""
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
    for positional in positionals:
        parser.add_argument(positional)
    parser.set_defaults(handler=handler)
    common(parser)
    return parser


def add_commands(commands: Any, common: Common) -> None:
    _account_commands(commands, common)
    _key_commands(commands, common)
    _admin_key_commands(commands, common)
    _money_commands(commands, common)
    _operations_commands(commands, common)


def _account_commands(commands: Any, common: Common) -> None:
    account = group(commands, "account", "create and list accounts")
    p = leaf(account, "create", "create an account", account_create, common, "name")
    p.add_argument("--tier", required=True, choices=TIERS)
    p = leaf(
        account,
        "routing",
        "set an account's default routing preferences (routing.md)",
        account_routing,
        common,
        "account",
    )
    p.add_argument("provider", nargs="?", metavar="PROVIDER_JSON", help='e.g. \'{"order": ["mobile"]}\'')
    p.add_argument("--clear", action="store_true", help="remove the account's preferences")
    leaf(account, "list", "list accounts", account_list, common)


def _key_commands(commands: Any, common: Common) -> None:
    key = group(commands, "key", "create, list and revoke API keys")
    p = leaf(key, "create", "create an API key (shown once)", key_create, common)
    p.add_argument("account", help="account id or name")
    p.add_argument("--models", nargs="+", help="allowed models (default: all)")
    p.add_argument("--name", default="", help="a label for the key")
    p.add_argument("--expires", help="expiry time, ISO 8601 (UTC if no zone)")
    leaf(key, "list", "list an account's keys", key_list, common, "account")
    leaf(key, "revoke", "revoke an API key", key_revoke, common, "key_id")


def _admin_key_commands(commands: Any, common: Common) -> None:
    admin_key = group(commands, "admin-key", "create, list and revoke admin keys")
    leaf(admin_key, "create", "create an admin key (shown once)", admin_key_create, common, "name")
    leaf(admin_key, "list", "list the admin keys (never their secrets)", admin_key_list, common)
    leaf(admin_key, "revoke", "revoke an admin key", admin_key_revoke, common, "key_id")


def _money_commands(commands: Any, common: Common) -> None:
    wallet = group(commands, "wallet", "fund wallets")
    p = leaf(wallet, "topup", "add money to an account's wallet", wallet_topup, common, "account")
    p.add_argument("amount", metavar="AMOUNT_CNY")
    p.add_argument("--idempotency-key", help="a retried top-up with the same key applies once")
    leaf(commands, "balance", "show an account's wallet", balance, common, "account")
    p = leaf(commands, "usage", "show an account's recent requests and costs", usage, common, "account")
    p.add_argument("--limit", type=int, default=50)


def _operations_commands(commands: Any, common: Common) -> None:
    p = leaf(commands, "operators", "health of every operator's offers, from a running gateway", operators, common)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default: %(default)s)")
    p.add_argument("--admin-key", help="the admin key (default: $SUANLI_ADMIN_KEY)")
    leaf(commands, "uncharged", "usage no customer balance could pay, per operator and offer", uncharged, common)
    ledger = group(commands, "ledger", "check the ledger")
    leaf(ledger, "verify", "recompute every balance from transfers and check invariants", ledger_verify, common)
