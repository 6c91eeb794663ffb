"""CLI commands that read the price list from the catalog file: ``suanli prices`` and ``suanli quote``.

They need no gateway and no database: prices are the catalog's price book on its calendar, at the load of
an idle platform (no surcharge). Their JSON is the same as ``GET /v1/pricing`` and ``POST /v1/quote`` give.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from suanli.catalog import Catalog, Offer, load_catalog
from suanli.cli_admin import Common, emit, group, leaf, read_db, run_job, table
from suanli.errors import BadRequest, NotFound
from suanli.gateway.platform import Settings
from suanli.gateway.price_versions import history_view, set_price_job, stored_versions, with_versions
from suanli.pricing.listing import Bounds, PriceList, offer_quote, parse_instant
from suanli.store.db import now_ms


def _catalog(settings: Settings) -> Catalog:
    """The catalog file's price book, with the prices set since (``suanli price set``) if there is a database."""
    catalog = load_catalog(settings.catalog_path)
    if not settings.on_postgres and not settings.database_path.exists():
        return catalog
    return read_db(settings, lambda conn: with_versions(catalog, stored_versions(conn)))


def _prices_at(args: argparse.Namespace, settings: Settings) -> tuple[Catalog, PriceList, int]:
    catalog = _catalog(settings)
    t_ms = now_ms() if args.at is None else parse_instant(args.at, catalog.calendar, "--at", now_ms())
    return catalog, PriceList(catalog.price_book, catalog.calendar), t_ms


def _offers(catalog: Catalog, model: str | None) -> list[Offer]:
    offers = [o for o in catalog.offers if model is None or o.model == model]
    if not offers:
        raise NotFound(f"The catalog has no model '{model}'.", code="model_not_found")
    return offers


def prices(args: argparse.Namespace, settings: Settings) -> int:
    catalog, price_list, t_ms = _prices_at(args, settings)
    entries = [
        {
            "offer": o.id,
            "operator": o.operator,
            "model": o.model,
            "tiers": sorted(o.tiers),
            **price_list.entry(o, t_ms, 0),
        }
        for o in _offers(catalog, args.model)
    ]
    view = {"object": "list", **price_list.instant(t_ms, "at"), "timezone": catalog.calendar.timezone, "data": entries}
    rows = [
        [
            e["model"],
            e["offer"],
            e["current"]["window"],
            *_per_mtok(e["current"]["prices"]),
            _short(e["current"]["until"]),
            _next(e["next"]),
            _rules(e["rules"]),
        ]
        for e in entries
    ]
    headers = ["MODEL", "OFFER", "WINDOW", "IN ¥/M", "CACHED ¥/M", "OUT ¥/M", "UNTIL", "NEXT", "RULES"]
    text = f"prices at {view['at']} ({view['timezone']})\n" + table(headers, rows)
    return emit(args, view, text)


def quote(args: argparse.Namespace, settings: Settings) -> int:
    if args.input_tokens < 0 or args.output_tokens < 0:
        raise BadRequest("--input-tokens and --output-tokens must not be negative")
    catalog, price_list, t_ms = _prices_at(args, settings)
    entries = []
    for offer in _offers(catalog, args.model):
        bounds = Bounds(args.input_tokens, min(args.output_tokens, offer.max_output_tokens))
        entries.append(
            {
                "offer": offer.id,
                "operator": offer.operator,
                "model": offer.model,
                "fits_context_window": bounds.input_max <= offer.context_window_tokens,
                "output_tokens_max": bounds.output_max,
                **offer_quote(price_list, offer, t_ms, bounds),
            }
        )
    view = {
        "object": "quote",
        "model": args.model,
        **price_list.instant(t_ms, "at"),
        "timezone": catalog.calendar.timezone,
        "input_tokens_max": args.input_tokens,
        "data": entries,
    }
    rows = [
        [
            e["offer"],
            e["now"]["window"],
            e["now"]["max_cost"],
            _short(e["cheapest_today"]["at"]),
            e["cheapest_today"]["window"],
            e["cheapest_today"]["max_cost"],
        ]
        for e in entries
    ]
    headers = ["OFFER", "WINDOW NOW", "AT MOST ¥ NOW", "CHEAPEST AT", "WINDOW", "AT MOST ¥ THEN"]
    text = (
        f"{args.model}: {args.input_tokens} input and up to {args.output_tokens} output tokens, "
        f"at {view['at']} ({view['timezone']})\n" + table(headers, rows)
    )
    return emit(args, view, text)


def _per_mtok(prices: dict[str, Any]) -> list[str]:
    per_mtok = prices["cny_per_mtok"]
    return [per_mtok["input"], per_mtok["cached_input"], per_mtok["output"]]


def _short(iso: str | None) -> str:
    """``2026-06-10T12:00:00+08:00`` as ``2026-06-10 12:00``: the zone is printed once, above the table."""
    return "-" if iso is None else f"{iso[:10]} {iso[11:16]}"


def _next(following: dict[str, Any] | None) -> str:
    if following is None:
        return "-"
    return f"{following['window']} {following['window_percent']}% ({following['prices']['cny_per_mtok']['input']} in)"


def _rules(rules: dict[str, Any]) -> str:
    parts = [f">{t['above_input_tokens']} in: {t['prices']['cny_per_mtok']['input']} in" for t in rules["long_context"]]
    if rules["batch_percent"] != 100:
        parts.append(f"batch {rules['batch_percent']}%")
    surcharge = rules["load_surcharge"]
    if surcharge is not None:
        parts.append(f"load >{surcharge['above_percent']}%: up to +{surcharge['max_percent']}%")
    if rules["next_version_from"]:
        parts.append(f"new prices from {_short(rules['next_version_from'])}")
    return "; ".join(parts) or "-"


def price_set(args: argparse.Namespace, settings: Settings) -> int:
    spec: dict[str, Any] = {"effective_from": args.effective_from, "price": _json_arg(args.price, "--price")}
    if args.pricing is not None:
        spec["pricing"] = _json_arg(args.pricing, "--pricing")
    result = run_job(settings, set_price_job(_catalog(settings), args.offer, spec, args.set_by))
    return emit(
        args,
        result,
        f"{args.offer}: new price from {args.effective_from} (a running gateway reads it within PACK_EXPIRY_SWEEP_S)",
    )


def price_history(args: argparse.Namespace, settings: Settings) -> int:
    versions = history_view(_catalog(settings), args.offer)
    rows = [
        [
            _short(v["effective_from"]) + " UTC" if v["effective_from_ms"] else "(first)",
            *(v["prices"]["cny_per_mtok"][c] for c in ("input", "cached_input", "output")),
            v["windows"],
            v["long_context_tiers"],
            f"{v['batch_percent']}%",
        ]
        for v in versions
    ]
    headers = ["FROM", "INPUT ¥/M", "CACHED ¥/M", "OUTPUT ¥/M", "WINDOWS", "LONG-CONTEXT TIERS", "BATCH"]
    return emit(args, {"offer": args.offer, "data": versions}, table(headers, rows))


def _json_arg(text: str, name: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{name} is not JSON: {exc}") from None


def add_commands(commands: Any, common: Common) -> None:
    price = group(commands, "price", "set an offer's later price, or show its price history")
    p = leaf(
        price, "set", "a new price for an offer, from a time at least PRICE_CHANGE_NOTICE_S ahead", price_set, common
    )
    p.add_argument("offer", help="operator/model")
    p.add_argument("--effective-from", required=True, help="ISO 8601 with its zone, e.g. 2027-01-01T00:00:00+08:00")
    p.add_argument("--price", required=True, help='CNY per million tokens, e.g. \'{"input": "1.5", "output": "2.5"}\'')
    p.add_argument("--pricing", help="its rules as JSON (windows, long_context, ...); default: the previous version's")
    p.add_argument("--set-by", default="cli", help="who sets it (kept with the version)")
    p = leaf(price, "history", "every price version of an offer", price_history, common)
    p.add_argument("offer", help="operator/model")
    p.add_argument("--catalog", help="catalog file (default: $SUANLI_CATALOG or the demo catalog)")
    p = leaf(commands, "prices", "the price list: each offer's price now, until when, what comes next", prices, common)
    p.add_argument("--model", help="only this model")
    _where_and_when(p)
    p = leaf(
        commands,
        "quote",
        "the most a request would cost on each offer, now and at its cheapest today",
        quote,
        common,
        "model",
    )
    p.add_argument("--input-tokens", type=int, required=True, help="input tokens of the request")
    p.add_argument("--output-tokens", type=int, required=True, help="at most this many output tokens (max_tokens)")
    _where_and_when(p)


def _where_and_when(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", help="an ISO 8601 time (default now); without a zone, the catalog's time zone")
    parser.add_argument("--catalog", help="catalog file (default: $SUANLI_CATALOG or the demo catalog)")
