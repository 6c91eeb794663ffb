"""CLI commands that read the price list from the catalog file: ``suanli prices`` and ``suanli quote``.

They need no gateway and no database: prices are the catalog's price book on its calendar, at the load of
an idle platform (no surcharge). Their JSON is the same as ``GET /v1/pricing`` and ``POST /v1/quote`` give.
"""

from __future__ import annotations

import argparse
from typing import Any

from suanli.catalog import Catalog, Offer, load_catalog
from suanli.cli_admin import Common, emit, table
from suanli.errors import BadRequest, NotFound
from suanli.gateway.platform import Settings
from suanli.pricing.listing import Bounds, PriceList, offer_quote, parse_instant
from suanli.store.db import now_ms


def _prices_at(args: argparse.Namespace, settings: Settings) -> tuple[Catalog, PriceList, int]:
    catalog = load_catalog(settings.catalog_path)
    t_ms = now_ms() if args.at is None else parse_instant(args.at, catalog.calendar, "--at")
    return catalog, PriceList(catalog.price_book, catalog.calendar), t_ms


def _offers(catalog: Catalog, model: str | None) -> list[Offer]:
    offers = [o for o in catalog.offers if model is None or o.model == model]
    if not offers:
        raise NotFound(f"The catalog has no model '{model}'.", code="model_not_found")
    return offers


def prices(args: argparse.Namespace, settings: Settings) -> int:
    catalog, price_list, t_ms = _prices_at(args, settings)
    entries = [{"offer": o.id, "operator": o.operator, "model": o.model, "tiers": sorted(o.tiers),
                **price_list.entry(o, t_ms, 0)} for o in _offers(catalog, args.model)]  # fmt: skip
    view = {"object": "list", **price_list.instant(t_ms, "at"), "timezone": catalog.calendar.timezone,
            "data": entries}  # fmt: skip
    rows = [[e["model"], e["offer"], e["current"]["window"], *_per_mtok(e["current"]["prices"]),
             _short(e["current"]["until"]), _next(e["next"]), _rules(e["rules"])] for e in entries]  # fmt: skip
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
        entries.append({
            "offer": offer.id, "operator": offer.operator, "model": offer.model,
            "fits_context_window": bounds.input_max <= offer.context_window_tokens,
            "output_tokens_max": bounds.output_max, **offer_quote(price_list, offer, t_ms, bounds),
        })  # fmt: skip
    view = {"object": "quote", "model": args.model, **price_list.instant(t_ms, "at"),
            "timezone": catalog.calendar.timezone, "input_tokens_max": args.input_tokens, "data": entries}  # fmt: skip
    rows = [[e["offer"], e["now"]["window"], e["now"]["max_cost"], _short(e["cheapest_today"]["at"]),
             e["cheapest_today"]["window"], e["cheapest_today"]["max_cost"]] for e in entries]  # fmt: skip
    headers = ["OFFER", "WINDOW NOW", "AT MOST ¥ NOW", "CHEAPEST AT", "WINDOW", "AT MOST ¥ THEN"]
    text = (f"{args.model}: {args.input_tokens} input and up to {args.output_tokens} output tokens, "
            f"at {view['at']} ({view['timezone']})\n" + table(headers, rows))  # fmt: skip
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


def add_commands(commands: Any, common: Common) -> None:
    p = commands.add_parser("prices", help="the price list: each offer's price now, until when, what comes next")
    p.add_argument("--model", help="only this model")
    _where_and_when(p)
    p.set_defaults(handler=prices)
    common(p)
    p = commands.add_parser("quote", help="the most a request would cost on each offer, now and at its cheapest today")
    p.add_argument("model")
    p.add_argument("--input-tokens", type=int, required=True, help="input tokens of the request")
    p.add_argument("--output-tokens", type=int, required=True, help="at most this many output tokens (max_tokens)")
    _where_and_when(p)
    p.set_defaults(handler=quote)
    common(p)


def _where_and_when(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", help="an ISO 8601 time (default now); without a zone, the catalog's time zone")
    parser.add_argument("--catalog", help="catalog file (default: $SUANLI_CATALOG or the demo catalog)")
