"""A statement as CSV: one row per line, in the JSON body's order, with stable columns (docs/statements.md).

Money is in nano-CNY (``amount_nano``, exact) and in CNY (``amount``, for people); tokens in tokens. The
first rows say whose statement it is; the ``opening`` and ``closing`` rows of each section and the rows
between them add up: opening + the section's movement rows = closing. A budget window's rows are in
nano-CNY and CNY for a CNY budget, in tokens for a token budget. A pack's or window's draws are broken
down in a section of their own, ``usage:{its ledger account}``, as the wallet's usage charges are in
``usage``: detail, never part of a balance's sum.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

from suanli.economy.statement_lines import NO_EVENT
from suanli.economy.statements import iso
from suanli.money import nano_to_cny

COLUMNS = (
    "section",
    "line",
    "id",
    "at",
    "detail",
    "model",
    "token_class",
    "unit_price_nano",
    "tokens",
    "amount_nano",
    "amount",
)


def render(body: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    zone = ZoneInfo(body["period"]["zone"])
    for row in _rows(body, zone):
        writer.writerow([row.get(column, "") for column in COLUMNS])
    return out.getvalue()


def _at(ms: int | None, zone: ZoneInfo) -> str:
    return "" if ms is None else iso(ms, zone)


def _money(line: str, nano: int, **row: Any) -> dict[str, Any]:
    return {"section": "money", "line": line, "amount_nano": nano, "amount": nano_to_cny(nano), **row}


def _rows(body: dict[str, Any], zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    period = body["period"]
    yield {
        "section": "statement",
        "line": "number",
        "id": body["number"],
        "detail": body["account"]["name"],
        "at": f"{period['from']}/{period['to']}",
    }
    yield from _money_rows(body["money"], zone)
    for section in body["packs"] + body["allowances"]:
        yield from _token_rows(section, zone)
    for section in body.get("budgets", []):  # a statement stored before budgets were shown has none
        yield from _budget_rows(section, zone)


def _money_rows(money: dict[str, Any], zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    yield _money("opening", money["opening_nano"])
    for line in money["topups"]:
        yield _money("topup", line["amount_nano"], id=line["id"], at=_at(line["at_ms"], zone), detail=line["memo"])
    for line in money["purchases"]:
        yield _money(
            f"purchase:{line['type']}",
            line["amount_nano"],
            id=line["id"],
            at=_at(line["at_ms"], zone),
            detail=line["memo"],
        )
    yield from _usage_rows(money, zone)
    rebates = money["rebates"]
    yield _money("rebates", rebates["amount_nano"], detail=f"{rebates['count']} contract rebates")
    for line in money["other"]:
        yield _money(
            "other",
            line["amount_nano"],
            id=line["id"],
            at=_at(line["at_ms"], zone),
            detail=f"{line['counter_account']} {line['memo']}".strip(),
        )
    yield _money("closing", money["closing_nano"])
    pending = money["pending"]
    yield _money(
        "pending",
        pending["reserved_nano"],
        detail=f"{pending['reservations']} reservations open at the end; not in the closing balance",
    )


def _usage_rows(money: dict[str, Any], zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    """Usage by model and token class at list price, what plans paid or nobody was charged, what the wallet
    paid, and the calls made before the period that settled in it."""
    for model in money["usage"]["models"]:
        for c in model["classes"]:
            yield {
                "section": "usage",
                "line": "tokens",
                "model": model["model"],
                "token_class": c["class"],
                "unit_price_nano": c["unit_price_nano"],
                "tokens": c["tokens"],
                "detail": "at list price",
                "amount_nano": -c["amount_nano"],
                "amount": nano_to_cny(-c["amount_nano"]),
            }
        yield {
            "section": "usage",
            "line": "not_charged_to_wallet",
            "model": model["model"],
            "detail": "paid by plans or not charged",
            "amount_nano": model["not_charged_to_wallet_nano"],
            "amount": nano_to_cny(model["not_charged_to_wallet_nano"]),
        }
        yield _money("usage", -model["charged_nano"], model=model["model"], detail=f"{model['calls']} calls")
    for late in money["late_settlements"]:
        yield {
            "section": "usage",
            "line": "late_settlement",
            "id": late["request_id"],
            "model": late["model"] or "",
            "at": _at(late["settled_ms"], zone),
            "detail": f"call made {_at(late['call_made_ms'], zone)}",
            "amount_nano": late["amount_nano"],
            "amount": nano_to_cny(late["amount_nano"]),
        }


def _token_rows(section: dict[str, Any], zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    name = section["ledger_account"]

    def row(line: str, tokens: int, **extra: Any) -> dict[str, Any]:
        return {"section": name, "line": line, "tokens": tokens, **extra}

    yield row("opening", section["opening"], detail=section["product"])
    yield from _line_rows(section, zone, row)
    for kind, tokens in section["totals"].items():
        if kind in ("drawn", "granted") and tokens:
            yield row(kind, tokens, detail=f"{section['draws']} draws" if kind == "drawn" else "")
    yield row("closing", section["closing"])
    yield row("pending", section["pending"]["reserved"], detail="reserved at the end; not in the closing balance")
    yield from _draw_rows(section)


def _draw_rows(section: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The section's draws by model and token class (a window counting requests: by model), and what no
    call's classes explain; they add up to its ``drawn`` row, negated. A statement stored before draws
    were broken down has none."""
    usage = section.get("usage") or {"unit": "tokens", "models": []}
    name = f"usage:{section['ledger_account']}"

    def row(line: str, model: dict[str, Any], units: int, **extra: Any) -> dict[str, Any]:
        return {"section": name, "line": line, "model": model["model"], "tokens": units, **extra}

    for model in usage["models"]:
        for c in model["classes"]:
            yield row("tokens", model, c["tokens"], token_class=c["class"])
        if usage["unit"] == "requests" and model["drawn"] > model["unattributed"]:
            yield row("requests", model, model["drawn"] - model["unattributed"])
        if model["unattributed"]:
            yield row("unattributed", model, model["unattributed"], detail=_unattributed(model["model"]))


def _unattributed(model: str) -> str:
    if model == NO_EVENT:
        return "draws no usage event explains"
    return "draws the calls' token classes don't add up to (a pack that weighs them, or paid a call in part)"


def _line_rows(section: dict[str, Any], zone: ZoneInfo, row: Callable[..., dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A token or budget section's own ledger lines, one row each, in the section's unit."""
    for line in section["lines"]:
        yield row(
            line["kind"],
            line["tokens"],
            id=line["id"],
            at=_at(line["at_ms"], zone),
            detail=f"{line['counter_account']} {line['memo']}".strip(),
        )


def _budget_rows(section: dict[str, Any], zone: ZoneInfo) -> Iterator[dict[str, Any]]:
    name = section["ledger_account"]
    scope = f"key {section['key']}" if section["key"] else "account"
    window = f"{_at(section['window_start_ms'], zone)}/{_at(section['window_end_ms'], zone)}"

    def row(line: str, units: int, **extra: Any) -> dict[str, Any]:
        if section["unit"] == "cny":
            return {"section": name, "line": line, "amount_nano": units, "amount": nano_to_cny(units), **extra}
        return {"section": name, "line": line, "tokens": units, **extra}

    yield row("opening", section["opening"], detail=f"{section['period']}ly budget of the {scope}, {window}")
    for kind in ("granted", "used"):
        if section["totals"][kind]:
            yield row(kind, section["totals"][kind], detail=f"{section['draws']} calls" if kind == "used" else "")
    yield from _line_rows(section, zone, row)
    yield row("closing", section["closing"], detail="remaining at the end")
    yield row("pending", section["pending"]["reserved"], detail="reserved at the end; not in the closing balance")
