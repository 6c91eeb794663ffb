"""When an account's money and tokens run out at the rate it has been spending them (``GET /v1/forecast``).

The rate of a window is what the account's usage events add up to over its last 1 or 7 days (rolling, from
now), divided by the days: an integer per day, rounded down. The wallet, each pack and each budget runs out
after ``remaining ÷ the 7-day rate`` days, shown as a decimal with one digit, rounded down; the instant is
``now + remaining × 86,400,000 ÷ rate`` ms, rounded down, unless that is more than ``RUN_OUT_HORIZON_DAYS``
away (then only the days are given). A rate of zero runs out never (null). Everything is integer
arithmetic; nothing here reads a clock.

A ``balance.below`` alert's forecast (``balance_run_out``) is the wallet's, taken as of the crossing rather
than now: the balance the alert recorded, and the rate of the 7 days that ended at the crossing. It depends
only on the event, so a body fixed hours later (after a restart, or by another worker) says the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.economy import names, windows
from suanli.economy import store as econ
from suanli.ledger import Balance
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import read_balance
from suanli.metering.periods import iso
from suanli.money import nano_to_cny
from suanli.store.accounts import Account
from suanli.store.conn import Conn
from suanli.store.usage_queries import Spend, UsageFilter, pack_fundings, slot_sums, spend_by_key

DAY_MS = 86_400_000
RATE_WINDOWS_DAYS = (1, 7)  # the rates shown; the last is the one forecasts use
FORECAST_WINDOW_DAYS = RATE_WINDOWS_DAYS[-1]
RUN_OUT_HORIZON_DAYS = 36_500  # further than this, only the days are shown: no date (a calendar's years end)
_PERIODS = {"day": windows.day, "week": windows.week, "month": windows.calendar_month}


@dataclass(frozen=True, slots=True)
class RunOut:
    """When ``remaining`` runs out at ``per_day``: days to one decimal (rounded down) and the instant."""

    days: str | None
    at_ms: int | None

    @staticmethod
    def of(remaining: int, per_day: int, now_ms: int) -> RunOut:
        if per_day <= 0:
            return RunOut(None, None)
        left = max(0, remaining)
        tenths = left * 10 // per_day
        after_ms = left * DAY_MS // per_day
        at_ms = now_ms + after_ms if after_ms <= RUN_OUT_HORIZON_DAYS * DAY_MS else None
        return RunOut(f"{tenths // 10}.{tenths % 10}", at_ms)

    def fields(self, zone: ZoneInfo) -> dict[str, Any]:
        at = None if self.at_ms is None else iso(self.at_ms, zone)
        return {"days": self.days, "runs_out_at": at, "runs_out_at_ms": self.at_ms}


def _total(spend: Iterable[Spend]) -> Spend:
    rows = list(spend)
    return Spend(sum(s.calls for s in rows), sum(s.tokens for s in rows), sum(s.cost_nano for s in rows))


def spend_between(conn: Conn, account_id: str, since_ms: int, until_ms: int) -> Spend:
    """An account's calls, tokens and cost from ``since_ms`` (inclusive) to ``until_ms`` (exclusive), in one
    statement (``spend_by_key`` has no end: it counts up to now)."""
    slots = slot_sums(conn, UsageFilter(account_id, since_ms, until_ms), None)
    return _total(Spend(s.calls, s.tokens, s.cost_nano) for s in slots)


def _rate(spend: Spend, days: int) -> dict[str, Any]:
    cost = spend.cost_nano // days
    return {"calls": spend.calls // days, "tokens": spend.tokens // days, "cost": nano_to_cny(cost), "cost_nano": cost}


def forecast(conn: Conn, account: Account, now_ms: int, zone: ZoneInfo) -> dict[str, Any]:
    by_key = {d: spend_by_key(conn, account.id, now_ms - d * DAY_MS) for d in RATE_WINDOWS_DAYS}
    rates = {f"{d}d": _rate(_total(by_key[d].values()), d) for d in RATE_WINDOWS_DAYS}
    week = rates[f"{FORECAST_WINDOW_DAYS}d"]
    return {
        "object": "forecast",
        "at": iso(now_ms, zone),
        "at_ms": now_ms,
        "timezone": zone.key,
        "window_days": FORECAST_WINDOW_DAYS,
        "rates": rates,
        "balance": _balance(conn, account, week["cost_nano"], now_ms, zone),
        "packs": _packs(conn, account, now_ms, zone),
        "budgets": _budgets(conn, account, by_key[FORECAST_WINDOW_DAYS], now_ms, zone),
    }


def _balance(conn: Conn, account: Account, per_day_nano: int, now_ms: int, zone: ZoneInfo) -> dict[str, Any]:
    wallet = read_balance(conn, ledger_names.wallet(account.id))
    available = wallet.available if wallet else 0
    room, run_out = wallet_run_out(wallet, available, per_day_nano, now_ms)
    return {
        "available": nano_to_cny(available),
        "available_nano": available,
        "spendable": nano_to_cny(room),
        "spendable_nano": room,
        **run_out.fields(zone),
    }


def wallet_run_out(wallet: Balance | None, available: int, per_day_nano: int, at_ms: int) -> tuple[int, RunOut]:
    """What a wallet holding ``available`` at ``at_ms`` may still spend (down to its floor: a contract's credit
    limit counts), and when that runs out at ``per_day_nano``."""
    room = available - (wallet.floor or 0) if wallet else 0
    return room, RunOut.of(room, per_day_nano, at_ms)


def balance_run_out(conn: Conn, account_id: str, balance_nano: int, at_ms: int) -> RunOut:
    """When the wallet runs out as of ``at_ms``, had it held ``balance_nano`` then: at the rate of the
    ``FORECAST_WINDOW_DAYS`` ending at ``at_ms``. The floor is the wallet's as it is now (no history is kept)."""
    week = spend_between(conn, account_id, at_ms - FORECAST_WINDOW_DAYS * DAY_MS, at_ms)
    per_day = _rate(week, FORECAST_WINDOW_DAYS)["cost_nano"]
    _, run_out = wallet_run_out(read_balance(conn, ledger_names.wallet(account_id)), balance_nano, per_day, at_ms)
    return run_out


def pack_draws(fundings: Iterable[str]) -> dict[str, int]:
    """Tokens each pack gave, by ledger account (``pack:{id}``), from usage events' ``funding`` legs."""
    drawn: dict[str, int] = {}
    for text in fundings:
        for leg in orjson.loads(text):
            if isinstance(leg, dict) and leg.get("source") == "pack" and isinstance(leg.get("account"), str):
                drawn[leg["account"]] = drawn.get(leg["account"], 0) + int(leg.get("used", 0))
    return drawn


def _packs(conn: Conn, account: Account, now_ms: int, zone: ZoneInfo) -> list[dict[str, Any]]:
    drawn = pack_draws(pack_fundings(conn, account.id, now_ms - FORECAST_WINDOW_DAYS * DAY_MS))
    shown = []
    for pack in econ.usable_packs(conn, account.id, now_ms):
        available, _ = econ.pack_remaining(conn, pack)
        per_day = drawn.get(names.pack(pack.id), 0) // FORECAST_WINDOW_DAYS
        run_out = RunOut.of(available, per_day, now_ms)
        shown.append(
            {
                "pack": pack.id,
                "product": pack.product_id,
                "available_tokens": available,
                "tokens_per_day": per_day,
                **run_out.fields(zone),
                "expires_at_ms": pack.expires_at_ms,
                "expires_first": run_out.at_ms is not None and pack.expires_at_ms <= run_out.at_ms,
            }
        )
    return shown


def _budgets(conn: Conn, account: Account, week: dict[str, Spend], now_ms: int, zone: ZoneInfo) -> list[dict[str, Any]]:
    shown = []
    for budget in econ.budgets_of(conn, account.id):
        start, end = _PERIODS[budget.period](now_ms, zone)
        balance = read_balance(conn, names.budget(budget.id, start))
        used = (balance.debits_posted + balance.debits_pending) if balance else 0
        remaining = max(0, budget.amount - used)
        spend = _total(s for key, s in week.items() if budget.key_id is None or key == budget.key_id)
        per_day = (spend.cost_nano if budget.unit == "cny" else spend.tokens) // FORECAST_WINDOW_DAYS
        run_out = RunOut.of(remaining, per_day, now_ms)

        def shown_amount(amount: int, unit: str = budget.unit) -> str | int:
            return nano_to_cny(amount) if unit == "cny" else amount

        shown.append(
            {
                "budget": budget.id,
                "key": budget.key_id,
                "period": budget.period,
                "unit": budget.unit,
                "remaining": shown_amount(remaining),
                "remaining_units": remaining,
                "per_day": shown_amount(per_day),
                "per_day_units": per_day,
                **run_out.fields(zone),
                "resets_at_ms": end,
                "resets_first": run_out.at_ms is not None and end <= run_out.at_ms,
            }
        )
    return shown
