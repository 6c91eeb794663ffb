"""What an account holds and what remains of it: packs, the subscription's windows, budgets, funding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from suanli.economy import names, windows
from suanli.economy import store as econ
from suanli.economy.contracts import find_contract, graduated, month_volume
from suanli.economy.funding import DEFAULT_ORDER
from suanli.economy.products import Product
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import read_balance
from suanli.money import nano_to_cny
from suanli.store.accounts import Account
from suanli.store.conn import Conn


def pack_dict(conn: Conn, pack: econ.Pack, now: int) -> dict[str, Any]:
    available, reserved = econ.pack_remaining(conn, pack)
    state = "forfeited" if pack.forfeited_at_ms is not None else ("expired" if pack.expires_at_ms <= now else "active")
    return {
        "id": pack.id,
        "product": pack.product_id,
        "tokens": pack.tokens,
        "available": available,
        "reserved": reserved,
        "expires_at_ms": pack.expires_at_ms,
        "state": state,
        "origin": pack.origin,
    }


def plans_view(
    conn: Conn, account: Account, products: Mapping[str, Product], now: int, zone: ZoneInfo
) -> dict[str, Any]:
    funding = dict(account.funding) if account.funding else {"order": list(DEFAULT_ORDER), "fallthrough": False}
    return {
        "account": account.name,
        "funding": funding,
        "packs": [pack_dict(conn, pack, now) for pack in econ.packs_of(conn, account.id)],
        "subscription": _subscription(conn, account, products, now, zone),
        "budgets": [_budget(conn, budget, now, zone) for budget in econ.budgets_of(conn, account.id)],
        "contract": _contract(conn, account, now, zone),
    }


def _contract(conn: Conn, account: Account, now: int, zone: ZoneInfo) -> dict[str, Any] | None:
    contract = find_contract(conn, account.id)
    if contract is None:
        return None
    wallet = read_balance(conn, ledger_names.wallet(account.id))
    available = wallet.available if wallet else 0
    volume = month_volume(conn, account.id, now, zone)
    return {
        **contract.public(),
        "owed": nano_to_cny(max(0, -available)),
        "credit_available": nano_to_cny(available + contract.credit_limit_nano),
        "month_volume": nano_to_cny(volume),
        "month_charged": nano_to_cny(graduated(contract.tiers, volume)),
    }


def _subscription(
    conn: Conn, account: Account, products: Mapping[str, Product], now: int, zone: ZoneInfo
) -> dict[str, Any] | None:
    sub = econ.current_subscription(conn, account.id)
    product = products.get(sub.product_id) if sub else None
    if sub is None or product is None:
        return None
    allowances = []
    for allowance in product.allowances:
        start, end, used = _window_now(conn, sub, allowance.window, allowance.unit, now=now, zone=zone)
        allowances.append(
            {
                "window": allowance.window,
                "unit": allowance.unit,
                "limit": allowance.amount,
                "used": used,
                "remaining": max(0, allowance.amount - used),
                "window_start_ms": start,
                "resets_at_ms": end,
            }
        )
    return {
        "id": sub.id,
        "product": product.id,
        "title": product.title,
        "models": sorted(product.models),
        "period_start_ms": sub.period_start_ms,
        "period_end_ms": sub.period_end_ms,
        "allowances": allowances,
    }


def _window_now(
    conn: Conn, sub: econ.Subscription, window: str, unit: str, *, now: int, zone: ZoneInfo
) -> tuple[int | None, int | None, int]:
    """The window open now and what it used (reserved included); a 5-hour window not yet opened has no
    start: it opens with the next request."""
    if window == "5h":
        last = econ.last_window(conn, sub.id, window, unit)
        if last is None or not last[0] <= now < last[1]:
            return None, None, 0
        start, end = last[0], last[1]
    elif window == "week":
        start, end = windows.week(now, zone)
    else:
        start, end = sub.period_start_ms, sub.period_end_ms
    balance = read_balance(conn, names.allowance(sub.id, window, unit, start))
    used = (balance.debits_posted + balance.debits_pending) if balance else 0
    return start, end, used


def _budget(conn: Conn, budget: econ.Budget, now: int, zone: ZoneInfo) -> dict[str, Any]:
    start, end = {"day": windows.day, "week": windows.week, "month": windows.calendar_month}[budget.period](now, zone)
    balance = read_balance(conn, names.budget(budget.id, start))
    used = (balance.debits_posted + balance.debits_pending) if balance else 0

    def shown(amount: int) -> str | int:
        return nano_to_cny(amount) if budget.unit == "cny" else amount

    return {
        "id": budget.id,
        "key": budget.key_id,
        "period": budget.period,
        "unit": budget.unit,
        "limit": shown(budget.amount),
        "used": shown(used),
        "remaining": shown(max(0, budget.amount - used)),
        "resets_at_ms": end,
    }
