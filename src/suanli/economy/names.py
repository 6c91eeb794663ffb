"""Names of the economy's ledger accounts and assets.

Pack tokens are an asset per product (``TOK:{product}``), so tokens of two products never mix and each
product's tokens sum to zero: issued from ``plans:issue:{product}``, held in ``pack:{id}``, spent into
``plans:spent:{asset}`` or forfeited into ``plans:forfeit:{product}``. Allowances (``REQ``, ``ALLOW_TOK``)
and budgets (``BUDGET_CNY``, ``BUDGET_TOK``) are limits kept as ledger accounts with a floor of zero,
granted once per window, so the same conditional update that guards a wallet guards them.
"""

from __future__ import annotations

PLANS = "platform:plans"  # plan sales arrive here; operators are paid from here for plan-funded tokens
ALLOWANCE_ASSETS = {"requests": "REQ", "tokens": "ALLOW_TOK"}
BUDGET_ASSETS = {"cny": "BUDGET_CNY", "tokens": "BUDGET_TOK"}


def pack_asset(product_id: str) -> str:
    return f"TOK:{product_id}"


def pack(pack_id: str) -> str:
    return f"pack:{pack_id}"


def issue(product_id: str) -> str:
    return f"plans:issue:{product_id}"


def forfeit(product_id: str) -> str:
    return f"plans:forfeit:{product_id}"


def spent(asset: str) -> str:
    return f"plans:spent:{asset}"


def grants(asset: str) -> str:
    return f"plans:grants:{asset}"


def allowance_asset(unit: str) -> str:
    return ALLOWANCE_ASSETS[unit]


def allowance(sub_id: str, window: str, unit: str, start_ms: int) -> str:
    return f"allow:{sub_id}:{window}:{unit}:{start_ms}"


def budget(budget_id: str, start_ms: int) -> str:
    return f"budget:{budget_id}:{start_ms}"
