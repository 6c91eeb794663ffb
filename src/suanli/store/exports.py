"""Reading usage events and ledger transfers for an export, oldest first, a page at a time.

An export may cover years of a busy account, so nothing here reads more than one page of rows at once: each
page is a keyset query that resumes after the last row of the previous one, by ``(created_at_ms, id)``, and
starts its index range at that row's millisecond, so a page costs its own rows and never re-reads the ones
before it. Rows of the same millisecond are ordered by id, so a page never splits or repeats them.

- **Usage** of one account walks ``usage_events_account`` (account, time); of every account, one account
  after another (by account id), so no index over all accounts' times is needed on the hot table.
- **Transfers** of one account are those on any ledger account it owns: its wallet, packs, allowance and
  budget windows, contract volume (``owned_ledger_accounts``). Each of those, as debit and as credit, is a
  stream in time order through the ``(side, created_at_ms, id)``
  partial indexes (schema.py's CUSTOMER_TRANSFERS_MIGRATION), merged here; a stream starts with a small
  page and doubles it as it is read, so a thousand windows with a few transfers each hold a few rows each.
  Every account's transfers (an admin's export without an account) are read in the primary key's order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from suanli.economy import names as econ_names
from suanli.ledger import names as ledger_names
from suanli.store.conn import Conn
from suanli.store.schema import BUDGET_DEBIT_SIDE, CUSTOMER_CREDIT_SIDE, CUSTOMER_DEBIT_SIDE
from suanli.store.usage import USAGE_COLUMNS, UsageEvent, row_to_event
from suanli.store.usage_queries import UsageFilter

EXPORT_PAGE_ROWS = 1000  # rows read per query, and per chunk sent
STREAM_FIRST_PAGE_ROWS = 16  # the first page of each ledger account's stream; doubled up to EXPORT_PAGE_ROWS
ACCOUNTS_PAGE_ROWS = 500  # account ids read per query when every account's usage is exported
_COLUMNS = "id, kind, debit_account, credit_account, asset, amount, pending_id, memo, created_at_ms"


@dataclass(frozen=True, slots=True)
class TransferRow:
    id: str
    kind: str  # posted | pending | post | void
    debit_account: str
    credit_account: str
    asset: str
    amount: int  # in the asset's unit: nano-CNY for CNY, tokens, requests...
    pending_id: str | None
    memo: str
    created_at_ms: int


def usage_pages(conn: Conn, f: UsageFilter) -> Iterator[list[UsageEvent]]:
    """The events ``f`` selects, oldest first, in pages of at most ``EXPORT_PAGE_ROWS``."""
    if f.account_id is not None:
        yield from _account_usage_pages(conn, f)
        return
    for account_id in _account_ids(conn):
        yield from _account_usage_pages(conn, replace(f, account_id=account_id))


def _account_usage_pages(conn: Conn, f: UsageFilter) -> Iterator[list[UsageEvent]]:
    columns = ", ".join(f"u.{c}" for c in USAGE_COLUMNS)
    after_ms, after_id = f.from_ms, ""
    while True:
        where, params = replace(f, from_ms=after_ms).where()
        rows = conn.execute(
            f"SELECT {columns} FROM usage_events u WHERE {where} AND (u.created_at_ms > ? OR u.request_id > ?) "
            "ORDER BY u.created_at_ms, u.request_id LIMIT ?",
            (*params, after_ms, after_id, EXPORT_PAGE_ROWS),
        ).fetchall()
        if rows:
            page = [row_to_event(row) for row in rows]
            yield page
            after_ms, after_id = page[-1].created_at_ms, page[-1].request_id
        if len(rows) < EXPORT_PAGE_ROWS:
            return


def _account_ids(conn: Conn) -> Iterator[str]:
    after = ""
    while True:
        rows = conn.execute("SELECT id FROM accounts WHERE id > ? ORDER BY id LIMIT ?", (after, ACCOUNTS_PAGE_ROWS))
        ids = [str(row[0]) for row in rows]
        yield from ids
        if len(ids) < ACCOUNTS_PAGE_ROWS:
            return
        after = ids[-1]


def owned_ledger_accounts(conn: Conn, account_id: str) -> list[str]:
    """Every ledger account of a customer account: its wallet, its packs, its subscriptions' allowance
    windows, its budgets' windows and its contract's monthly volume."""
    owned = [ledger_names.wallet(account_id)]
    packs = conn.execute("SELECT id FROM packs WHERE account_id = ? ORDER BY id", (account_id,))
    owned += [econ_names.pack(str(row[0])) for row in packs]
    prefixes = [f"volume:{account_id}:"]
    for table, prefix in (("subscriptions", "allow"), ("budgets", "budget")):
        rows = conn.execute(f"SELECT id FROM {table} WHERE account_id = ? ORDER BY id", (account_id,))
        prefixes += [f"{prefix}:{row[0]}:" for row in rows]
    for prefix in prefixes:
        owned += _named_from(conn, prefix)
    return owned


def _named_from(conn: Conn, prefix: str) -> list[str]:
    """Ledger accounts whose names start with ``prefix`` (which ends in ':'): a range of the primary key."""
    end = prefix[:-1] + ";"  # the character after ':'
    rows = conn.execute("SELECT id FROM ledger_accounts WHERE id >= ? AND id < ? ORDER BY id", (prefix, end))
    return [str(row[0]) for row in rows]


def transfer_rows(conn: Conn, owned: list[str] | None, from_ms: int, to_ms: int) -> Iterator[TransferRow]:
    """Transfers from ``from_ms`` (inclusive) to ``to_ms`` (exclusive) by ``(created_at_ms, id)``: those on
    any of the ledger accounts ``owned``, each once, or with ``owned`` None every transfer."""
    if owned is None:
        yield from _all_transfers(conn, from_ms, to_ms)
        return
    streams = [
        _side_stream(conn, side, name, from_ms, to_ms) for name in owned for side in ("debit_account", "credit_account")
    ]
    last_id = None
    for row in heapq.merge(*streams, key=lambda r: (r.created_at_ms, r.id)):
        if row.id != last_id:  # a transfer between two ledger accounts of the same account comes twice, together
            yield row
        last_id = row.id


def _side_stream(conn: Conn, side: str, name: str, from_ms: int, to_ms: int) -> Iterator[TransferRow]:
    """The transfers on one side of one customer ledger account, by time, through that side's index."""
    if side == "credit_account":
        where = f"credit_account = ? AND {CUSTOMER_CREDIT_SIDE}"
    else:
        where = f"debit_account = ? AND {BUDGET_DEBIT_SIDE if name.startswith('budget:') else CUSTOMER_DEBIT_SIDE}"
    after_ms, after_id, rows_max = from_ms, "", STREAM_FIRST_PAGE_ROWS
    while True:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM transfers WHERE {where} AND created_at_ms >= ? AND created_at_ms < ? "
            "AND (created_at_ms > ? OR id > ?) ORDER BY created_at_ms, id LIMIT ?",
            (name, after_ms, to_ms, after_ms, after_id, rows_max),
        ).fetchall()
        page = [_transfer(row) for row in rows]
        yield from page
        if len(page) < rows_max:
            return
        after_ms, after_id = page[-1].created_at_ms, page[-1].id
        rows_max = min(2 * rows_max, EXPORT_PAGE_ROWS)


def _all_transfers(conn: Conn, from_ms: int, to_ms: int) -> Iterator[TransferRow]:
    """Every transfer of the range, by id: the primary key's order, since no index orders every transfer by
    time (each would cost the hot path an entry per transfer). A full read of the table, a page at a time."""
    after_id = ""
    while True:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM transfers WHERE id > ? ORDER BY id LIMIT ?", (after_id, EXPORT_PAGE_ROWS)
        ).fetchall()
        page = [_transfer(row) for row in rows]
        yield from (t for t in page if from_ms <= t.created_at_ms < to_ms)
        if len(page) < EXPORT_PAGE_ROWS:
            return
        after_id = page[-1].id


def _transfer(row: Any) -> TransferRow:
    values = tuple(row)
    return TransferRow(
        str(values[0]),
        str(values[1]),
        str(values[2]),
        str(values[3]),
        str(values[4]),
        int(values[5]),
        None if values[6] is None else str(values[6]),
        str(values[7]),
        int(values[8]),
    )
