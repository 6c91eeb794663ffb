"""CLI commands of the token economy: products, packs, subscriptions, budgets, funding, token transfers.

Like the other administration commands they work on the database directly, running the same jobs as the
admin API; the catalog's products are put on the shelf first, as the gateway does at start.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from suanli.catalog import TIERS, load_catalog
from suanli.cli_admin import Common, emit, group, leaf, read_db, run_job, table
from suanli.economy import market
from suanli.economy import store as econ
from suanli.economy.contracts import parse_tiers
from suanli.economy.products import FUNDING_SOURCES, Product
from suanli.economy.views import pack_dict, plans_view
from suanli.errors import BadRequest
from suanli.gateway.platform import Settings, list_catalog_products
from suanli.money import MoneyFormatError, cny_to_nano, nano_to_cny
from suanli.store.accounts import find_account
from suanli.store.conn import Conn
from suanli.store.db import now_ms


def _shelf(settings: Settings) -> tuple[dict[str, Product], ZoneInfo]:
    """The products on sale (the catalog's listed first) and the catalog's time zone."""
    catalog = load_catalog(settings.catalog_path)

    def job(conn: Conn) -> dict[str, Product]:
        list_catalog_products(conn, catalog)
        return econ.load_products(conn, frozenset(catalog.models), TIERS)

    return run_job(settings, job), ZoneInfo(catalog.timezone)


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def product_list(args: argparse.Namespace, settings: Settings) -> int:
    products, _ = _shelf(settings)
    shown = [p for p in products.values() if args.all or not p.retired]
    rows = [
        [
            p.id,
            p.kind,
            p.title,
            nano_to_cny(p.price_nano),
            ",".join(sorted(p.tiers)),
            ",".join(sorted(p.models)),
            f"{p.tokens:,} tokens, {p.valid_days} days"
            if p.kind == "pack"
            else "; ".join(f"{a.amount} {a.unit}/{a.window}" for a in p.allowances),
            "retired" if p.retired else "",
        ]
        for p in shown
    ]
    headers = ["PRODUCT", "KIND", "TITLE", "PRICE ¥", "TIERS", "MODELS", "TERMS", ""]
    return emit(args, {"data": [p.public() for p in shown]}, table(headers, rows))


def product_retire(args: argparse.Namespace, settings: Settings) -> int:
    run_job(settings, lambda conn: econ.retire_product(conn, args.product))
    return emit(args, {"id": args.product, "retired": True}, f"retired {args.product}; packs already sold stay usable")


def pack_buy(args: argparse.Namespace, settings: Settings) -> int:
    products, _ = _shelf(settings)
    pack, balance = run_job(settings, market.buy_pack_job(args.account, args.product, products, args.idempotency_key))
    view = read_db(settings, lambda conn: pack_dict(conn, pack, now_ms()))
    left = nano_to_cny(balance.available) if balance else "?"
    return emit(
        args,
        {"pack": view},
        f"bought {pack.id}: {pack.tokens:,} tokens of {pack.product_id} until "
        f"{_when(pack.expires_at_ms)}; wallet ¥{left} available",
    )


def subscribe(args: argparse.Namespace, settings: Settings) -> int:
    products, zone = _shelf(settings)
    result = run_job(settings, market.subscribe_job(args.account, args.product, products, zone))
    until = _when(result["period_end_ms"])
    return emit(
        args, result, f"{args.account} subscribes to {result['product']} until {until}; charged ¥{result['charged']}"
    )


def unsubscribe(args: argparse.Namespace, settings: Settings) -> int:
    result = run_job(settings, market.cancel_job(args.account))
    return emit(args, result, f"ended {result['subscription']}")


def plans(args: argparse.Namespace, settings: Settings) -> int:
    products, zone = _shelf(settings)
    view = read_db(settings, lambda conn: plans_view(conn, find_account(conn, args.account), products, now_ms(), zone))
    lines = [
        f"{view['account']}: funding {' → '.join(view['funding']['order'])}"
        + (" (a spent allowance falls through)" if view["funding"].get("fallthrough") else "")
    ]
    sub = view["subscription"]
    if sub:
        lines.append(f"subscription {sub['product']} until {_when(sub['period_end_ms'])}")
        lines += [
            f"  {a['window']:>5}: {a['remaining']}/{a['limit']} {a['unit']} left, resets {_when(a['resets_at_ms'])}"
            for a in sub["allowances"]
        ]
    if view["packs"]:
        rows = [
            [p["id"], p["product"], f"{p['available']:,}", f"{p['tokens']:,}", _when(p["expires_at_ms"]), p["state"]]
            for p in view["packs"]
        ]
        lines.append(table(["PACK", "PRODUCT", "AVAILABLE", "OF", "EXPIRES", "STATE"], rows))
    lines += [
        f"budget {b['id']} ({b['key'] or 'account'}): {b['remaining']} of {b['limit']} {b['unit']} left this "
        f"{b['period']}"
        for b in view["budgets"]
    ]
    return emit(args, view, "\n".join(lines))


def tokens_transfer(args: argparse.Namespace, settings: Settings) -> int:
    job = market.transfer_tokens_job(args.pack, args.to, args.tokens, memo=args.memo, made_by="cli", owner_id=None)
    result = run_job(settings, job)
    return emit(
        args,
        result,
        f"moved {result['tokens']:,} tokens from {result['from_pack']} to {result['to_account']} ({result['to_pack']})",
    )


def budget_set(args: argparse.Namespace, settings: Settings) -> int:
    if (args.cny is None) == (args.tokens is None):
        raise BadRequest("give the budget as --cny AMOUNT or --tokens N")
    unit = "cny" if args.cny is not None else "tokens"
    try:
        amount = cny_to_nano(args.cny) if args.cny is not None else args.tokens
    except MoneyFormatError as exc:
        raise BadRequest(f"--cny: {exc}") from None
    budget = run_job(settings, market.set_budget_job(args.account, args.key, args.period, unit, amount))
    return emit(
        args,
        {"id": budget.id, "period": budget.period, "unit": budget.unit, "key": budget.key_id},
        f"budget {budget.id}: {args.cny or args.tokens} {unit} a {budget.period}",
    )


def budget_remove(args: argparse.Namespace, settings: Settings) -> int:
    def job(conn: Conn) -> None:
        econ.remove_budget(conn, find_account(conn, args.account).id, args.budget)

    run_job(settings, job)
    return emit(args, {"id": args.budget, "removed": True}, f"removed budget {args.budget}")


def funding(args: argparse.Namespace, settings: Settings) -> int:
    result = run_job(settings, market.set_funding_job(args.account, args.order, args.fallthrough))
    return emit(args, result, f"{args.account} is funded by {' → '.join(result['order'])}")


def contract_set(args: argparse.Namespace, settings: Settings) -> int:
    tiers = []
    for text in args.tier or ["0:100"]:
        above, _, percent = text.partition(":")
        if not percent.isdigit():
            raise BadRequest(f"--tier {text!r}: write it as ABOVE_CNY:PERCENT, e.g. 10000:90")
        tiers.append({"above": above, "percent": int(percent)})
    try:
        credit_limit = cny_to_nano(args.credit_limit)
    except MoneyFormatError as exc:
        raise BadRequest(f"--credit-limit: {exc}") from None
    result = run_job(settings, market.set_contract_job(args.account, credit_limit, parse_tiers(tiers)))
    shown = ", ".join(f"above ¥{t['above']}: {t['percent']}%" for t in result["tiers"])
    return emit(args, result, f"{result['account']}: postpaid to ¥{result['credit_limit']}; {shown}")


def trust(args: argparse.Namespace, settings: Settings) -> int:
    result = run_job(settings, market.trust_job(args.account, args.other))
    return emit(args, result, f"{result['account']} may now transfer tokens to {result['trusts']}")


def add_commands(commands: Any, common: Common) -> None:
    _shop_commands(commands, common)
    _holding_commands(commands, common)


def _shop_commands(commands: Any, common: Common) -> None:
    product = group(commands, "product", "the products on sale")
    p = leaf(product, "list", "list packs and subscriptions on sale", product_list, common)
    p.add_argument("--all", action="store_true", help="retired products too")
    leaf(product, "retire", "stop selling a product (what was sold stays usable)", product_retire, common, "product")
    pack = group(commands, "pack", "token packs")
    p = leaf(pack, "buy", "buy a pack for an account, from its wallet", pack_buy, common, "account", "product")
    p.add_argument("--idempotency-key", help="a retried purchase with the same key buys once")
    leaf(
        commands,
        "subscribe",
        "subscribe an account to a plan (or upgrade it mid-month)",
        subscribe,
        common,
        "account",
        "product",
    )
    leaf(commands, "unsubscribe", "end an account's subscription now", unsubscribe, common, "account")


def _holding_commands(commands: Any, common: Common) -> None:
    leaf(
        commands, "plans", "what an account holds: packs, allowances, budgets, funding order", plans, common, "account"
    )
    tokens = group(commands, "tokens", "share pack tokens")
    p = leaf(tokens, "transfer", "move tokens of a pack to another account", tokens_transfer, common, "pack", "to")
    p.add_argument("tokens", type=int)
    p.add_argument("--memo", default="", help="why (kept in the audit trail)")
    budget = group(commands, "budget", "spending caps")
    p = leaf(budget, "set", "cap an account (or one of its keys) per day, week or month", budget_set, common, "account")
    p.add_argument("--period", required=True, choices=market.BUDGET_PERIODS)
    p.add_argument("--cny", help="the cap in CNY")
    p.add_argument("--tokens", type=int, help="the cap in tokens")
    p.add_argument("--key", help="a key id: cap that key only")
    leaf(budget, "remove", "remove a budget", budget_remove, common, "account", "budget")
    p = leaf(commands, "funding", "the order an account's requests are funded in", funding, common, "account")
    p.add_argument("order", nargs="+", choices=FUNDING_SOURCES)
    p.add_argument("--fallthrough", action="store_true", help="a spent allowance falls through to the next source")
    contract = group(commands, "contract", "enterprise contracts")
    p = leaf(
        contract,
        "set",
        "postpaid to a credit limit, with graduated volume tiers over the month",
        contract_set,
        common,
        "account",
    )
    p.add_argument("--credit-limit", required=True, help="CNY the account may owe")
    p.add_argument("--tier", action="append", help="ABOVE_CNY:PERCENT, repeated; e.g. 0:100 --tier 10000:90")
    leaf(commands, "trust", "let an account transfer tokens to another", trust, common, "account", "other")
