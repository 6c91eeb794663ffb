"""The economy's tables and ledger accounts: products, packs, subscriptions, allowance windows, budgets.

Every balance is a ledger account (see ``economy.names``); these rows only say what each account is for
and when it is valid. Functions that write run on the writer's connection inside its transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from suanli.economy import names
from suanli.economy.products import Product, parse_product
from suanli.errors import BadRequest, NotFound
from suanli.ledger import Kind, Transfer
from suanli.ledger.sqlite import apply_entry, open_account, read_balance
from suanli.store.conn import Conn
from suanli.store.db import now_ms

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Pack:
    id: str
    account_id: str
    product_id: str
    tokens: int
    expires_at_ms: int
    origin: str
    created_at_ms: int
    forfeited_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    account_id: str
    product_id: str
    anchor_ms: int
    period_start_ms: int
    period_end_ms: int
    created_at_ms: int
    ended_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Budget:
    id: str
    account_id: str
    key_id: str | None
    period: str  # day | week | month
    unit: str  # cny | tokens
    amount: int  # nano-CNY or tokens
    created_at_ms: int


# Products


def load_products(conn: Conn, models: frozenset[str], tiers: tuple[str, ...]) -> dict[str, Product]:
    products: dict[str, Product] = {}
    for row in conn.execute("SELECT id, spec, retired_at_ms FROM products ORDER BY listed_at_ms, id"):
        product = parse_product(row[0], orjson.loads(row[1]), models=models, tiers=tiers)
        products[product.id] = product if row[2] is None else _retired(product)
    return products


def _retired(product: Product) -> Product:
    return replace(product, retired=True)


def list_product(conn: Conn, product: Product, spec: Mapping[str, Any], listed_by: str) -> bool:
    """Add a product to the shelf; False if one with its id is there already (the catalog's are listed
    at each start and left as they are once listed: a listed product's terms never change)."""
    cursor = conn.execute(
        "INSERT INTO products (id, spec, listed_by, listed_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (product.id, orjson.dumps(spec).decode(), listed_by, now_ms()),
    )
    if product.kind == "pack":
        open_account(conn, names.issue(product.id), names.pack_asset(product.id), None)
        open_account(conn, names.spent(names.pack_asset(product.id)), names.pack_asset(product.id), None)
        open_account(conn, names.forfeit(product.id), names.pack_asset(product.id), None)
    return bool(cursor.rowcount == 1)


def retire_product(conn: Conn, product_id: str) -> None:
    cursor = conn.execute(
        "UPDATE products SET retired_at_ms = ? WHERE id = ? AND retired_at_ms IS NULL", (now_ms(), product_id)
    )
    if cursor.rowcount != 1:
        if conn.execute("SELECT 1 FROM products WHERE id = ?", (product_id,)).fetchone() is None:
            raise NotFound(f"No product '{product_id}'.", code="product_not_found", param="product")
        raise BadRequest(f"The product '{product_id}' is retired already.", code="product_retired", param="product")


# Packs


def _pack(row: Any) -> Pack:
    return Pack(*row)


_PACK_COLUMNS = "id, account_id, product_id, tokens, expires_at_ms, origin, created_at_ms, forfeited_at_ms"


def packs_of(conn: Conn, account_id: str) -> list[Pack]:
    rows = conn.execute(
        f"SELECT {_PACK_COLUMNS} FROM packs WHERE account_id = ? ORDER BY expires_at_ms, id", (account_id,)
    )
    return [_pack(tuple(row)) for row in rows]


def usable_packs(conn: Conn, account_id: str, now: int) -> list[Pack]:
    """Unexpired packs, soonest-expiring first (the draw-down order)."""
    rows = conn.execute(
        f"SELECT {_PACK_COLUMNS} FROM packs WHERE account_id = ? AND expires_at_ms > ? AND forfeited_at_ms IS NULL "
        "ORDER BY expires_at_ms, id",
        (account_id, now),
    )
    return [_pack(tuple(row)) for row in rows]


def find_pack(conn: Conn, pack_id: str) -> Pack:
    row = conn.execute(f"SELECT {_PACK_COLUMNS} FROM packs WHERE id = ?", (pack_id,)).fetchone()
    if row is None:
        raise NotFound(f"No pack '{pack_id}'.", code="pack_not_found", param="pack")
    return _pack(tuple(row))


def create_pack(
    conn: Conn,
    account_id: str,
    product_id: str,
    *,
    tokens: int,
    expires_at_ms: int,
    origin: str,
    pack_id: str | None = None,
) -> Pack:
    pack_id = pack_id or "pack_" + secrets.token_hex(8)
    pack = Pack(pack_id, account_id, product_id, tokens, expires_at_ms, origin, now_ms(), None)
    conn.execute(
        f"INSERT INTO packs ({_PACK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (pack.id, account_id, product_id, tokens, expires_at_ms, origin, pack.created_at_ms, None),
    )
    open_account(conn, names.pack(pack.id), names.pack_asset(product_id), 0)
    mark_has_plans(conn, account_id)
    return pack


def pack_remaining(conn: Conn, pack: Pack) -> tuple[int, int]:
    """(available, reserved) tokens of a pack."""
    balance = read_balance(conn, names.pack(pack.id))
    return (balance.available, balance.debits_pending) if balance else (0, 0)


def expired_unforfeited(conn: Conn, now: int) -> list[Pack]:
    rows = conn.execute(
        f"SELECT {_PACK_COLUMNS} FROM packs WHERE expires_at_ms <= ? AND forfeited_at_ms IS NULL", (now,)
    )
    return [_pack(tuple(row)) for row in rows]


def mark_forfeited(conn: Conn, pack_id: str, at_ms: int) -> None:
    conn.execute("UPDATE packs SET forfeited_at_ms = ? WHERE id = ?", (at_ms, pack_id))


# Subscriptions


_SUB_COLUMNS = "id, account_id, product_id, anchor_ms, period_start_ms, period_end_ms, created_at_ms, ended_at_ms"


def current_subscription(conn: Conn, account_id: str) -> Subscription | None:
    row = conn.execute(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE account_id = ? AND ended_at_ms IS NULL", (account_id,)
    ).fetchone()
    return None if row is None else Subscription(*tuple(row))


def insert_subscription(conn: Conn, sub: Subscription) -> None:
    conn.execute(
        f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sub.id,
            sub.account_id,
            sub.product_id,
            sub.anchor_ms,
            sub.period_start_ms,
            sub.period_end_ms,
            sub.created_at_ms,
            sub.ended_at_ms,
        ),
    )
    mark_has_plans(conn, sub.account_id)


def due_subscriptions(conn: Conn, now: int) -> list[Subscription]:
    """Subscriptions whose month has ended and that are not ended: to renew, or to lapse."""
    rows = conn.execute(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE ended_at_ms IS NULL AND period_end_ms <= ?", (now,)
    )
    return [Subscription(*tuple(row)) for row in rows]


def end_subscription(conn: Conn, sub_id: str, at_ms: int) -> None:
    conn.execute("UPDATE subscriptions SET ended_at_ms = ? WHERE id = ?", (at_ms, sub_id))


def set_period(conn: Conn, sub_id: str, start_ms: int, end_ms: int) -> None:
    conn.execute(
        "UPDATE subscriptions SET period_start_ms = ?, period_end_ms = ? WHERE id = ?", (start_ms, end_ms, sub_id)
    )


def last_window(conn: Conn, sub_id: str, window: str, unit: str) -> tuple[int, int, int] | None:
    row = conn.execute(
        "SELECT start_ms, end_ms, amount FROM allowance_windows "
        "WHERE subscription_id = ? AND window_name = ? AND unit = ? ORDER BY start_ms DESC LIMIT 1",
        (sub_id, window, unit),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def open_window(conn: Conn, sub_id: str, window: str, unit: str, *, start_ms: int, end_ms: int, amount: int) -> str:
    """The ledger account of an allowance window, opened and granted its amount once (idempotent)."""
    account = names.allowance(sub_id, window, unit, start_ms)
    if read_balance(conn, account) is not None:
        return account  # opened by an earlier request: the usual case, one look-up
    conn.execute(
        "INSERT INTO allowance_windows (subscription_id, window_name, unit, start_ms, end_ms, amount) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (sub_id, window, unit, start_ms, end_ms, amount),
    )
    grant(conn, account, names.allowance_asset(unit), amount)
    return account


def grant(conn: Conn, account: str, asset: str, amount: int, suffix: str = "") -> None:
    """Open a limit's ledger account (floor 0) and credit it ``amount`` from the grants account, once:
    the transfer's id is derived from the account, so a second grant is an idempotent replay."""
    if read_balance(conn, account) is not None:
        return  # granted already (the account is opened only here, with its grant)
    open_account(conn, account, asset, 0)
    open_account(conn, names.grants(asset), asset, None)
    open_account(conn, names.spent(asset), asset, None)
    transfer = Transfer(f"{account}.grant{suffix}", Kind.POSTED, names.grants(asset), account, asset, amount)
    apply_entry(conn, [transfer])


def top_up_window(conn: Conn, account: str, asset: str, extra: int, suffix: str) -> None:
    """Add ``extra`` to an open window (an upgrade raises the allowance at once)."""
    transfer = Transfer(f"{account}.grant{suffix}", Kind.POSTED, names.grants(asset), account, asset, extra)
    apply_entry(conn, [transfer])


def windows_of(conn: Conn, sub_id: str, now: int) -> list[tuple[str, str, int, int, int]]:
    """The subscription's windows open at ``now``: (window, unit, start, end, amount)."""
    rows = conn.execute(
        "SELECT window_name, unit, start_ms, end_ms, amount FROM allowance_windows WHERE subscription_id = ? "
        "AND start_ms <= ? AND ? < end_ms ORDER BY window_name, unit",
        (sub_id, now, now),
    )
    return [tuple(row) for row in rows]


# Budgets


def active_budgets(conn: Conn, account_id: str, key_id: str) -> list[Budget]:
    rows = conn.execute(
        "SELECT id, account_id, key_id, period, unit, amount, created_at_ms FROM budgets WHERE account_id = ? "
        "AND removed_at_ms IS NULL AND (key_id IS NULL OR key_id = ?) ORDER BY created_at_ms, id",
        (account_id, key_id),
    )
    return [Budget(*tuple(row)) for row in rows]


def budgets_of(conn: Conn, account_id: str) -> list[Budget]:
    rows = conn.execute(
        "SELECT id, account_id, key_id, period, unit, amount, created_at_ms FROM budgets WHERE account_id = ? "
        "AND removed_at_ms IS NULL ORDER BY created_at_ms, id",
        (account_id,),
    )
    return [Budget(*tuple(row)) for row in rows]


def insert_budget(conn: Conn, budget: Budget) -> None:
    conn.execute(
        "INSERT INTO budgets (id, account_id, key_id, period, unit, amount, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (budget.id, budget.account_id, budget.key_id, budget.period, budget.unit, budget.amount, budget.created_at_ms),
    )
    mark_has_plans(conn, budget.account_id)


def remove_budget(conn: Conn, account_id: str, budget_id: str) -> None:
    cursor = conn.execute(
        "UPDATE budgets SET removed_at_ms = ? WHERE id = ? AND account_id = ? AND removed_at_ms IS NULL",
        (now_ms(), budget_id, account_id),
    )
    if cursor.rowcount != 1:
        raise NotFound(f"No budget '{budget_id}' on this account.", code="budget_not_found", param="budget")


# Accounts


def mark_has_plans(conn: Conn, account_id: str) -> None:
    conn.execute("UPDATE accounts SET has_plans = 1 WHERE id = ? AND has_plans = 0", (account_id,))


def trusts(conn: Conn, account_id: str, other_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM account_trust WHERE account_id = ? AND trusted_id = ?", (account_id, other_id)
    ).fetchone()
    return row is not None


def add_trust(conn: Conn, account_id: str, other_id: str) -> None:
    if account_id == other_id:
        raise BadRequest("An account trusts itself already.", param="account")
    conn.execute(
        "INSERT INTO account_trust (account_id, trusted_id, created_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (account_id, other_id, now_ms()),
    )


def record_token_transfer(conn: Conn, from_pack: str, to_pack: str, *, tokens: int, memo: str, made_by: str) -> str:
    transfer_id = "tt_" + secrets.token_hex(8)
    conn.execute(
        "INSERT INTO token_transfers (id, from_pack, to_pack, tokens, memo, made_by, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (transfer_id, from_pack, to_pack, tokens, memo, made_by, now_ms()),
    )
    return transfer_id


def token_transfers_of(conn: Conn, account_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT t.id, t.from_pack, f.account_id, t.to_pack, d.account_id, t.tokens, t.memo, t.made_by, t.created_at_ms "
        "FROM token_transfers t JOIN packs f ON f.id = t.from_pack JOIN packs d ON d.id = t.to_pack "
        "WHERE f.account_id = ? OR d.account_id = ? ORDER BY t.created_at_ms, t.id",
        (account_id, account_id),
    )
    keys = ("id", "from_pack", "from_account", "to_pack", "to_account", "tokens", "memo", "made_by", "created_at_ms")
    return [dict(zip(keys, tuple(row), strict=True)) for row in rows]
