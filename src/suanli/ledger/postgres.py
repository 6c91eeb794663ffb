"""The ledger's rules on PostgreSQL: every entry in one call of the server-side function ``suanli_entry``.

The rules, checks and rejections are those of ``ledger/sqlite.py`` (the function is its translation,
``store/schema_pg.py``); an entry is applied all together or not at all without a savepoint of the
caller's, and in one round trip whatever its length. Platform accounts keep a row of sums per writer
(``ledger_account_slots``): a balance is the account's row plus its slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg.types.json import Jsonb

from suanli.ledger.model import Balance, LedgerRejected, Rejection, Transfer
from suanli.store.conn import Conn
from suanli.store.db import now_ms
from suanli.store.usage import USAGE_COLUMNS, UsageEvent

Statement = tuple[str, Sequence[Any]]
SLOTTED_PREFIXES = ("platform:", "sales:", "plans:")
ENTRY_SQL = "SELECT suanli_entry(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
RESERVE_SQL = "SELECT suanli_reserve(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SETTLE_SQL = "SELECT * FROM suanli_settle(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_BALANCE_SQL = (
    "SELECT a.id, a.asset, a.floor, a.debits_pending + coalesce(sum(s.debits_pending), 0), "
    "a.debits_posted + coalesce(sum(s.debits_posted), 0), a.credits_pending + coalesce(sum(s.credits_pending), 0), "
    "a.credits_posted + coalesce(sum(s.credits_posted), 0) "
    "FROM ledger_accounts a LEFT JOIN ledger_account_slots s ON s.account_id = a.id"
)


def slotted(account_id: str) -> bool:
    """A platform account, kept in a row per writer (``suanli_slotted`` in store/pg_ledger.sql)."""
    return account_id.startswith(SLOTTED_PREFIXES)


def entry_parameters(conn: Conn, transfers: Sequence[Transfer], request_id: str) -> tuple[object, ...]:
    return (
        [t.id for t in transfers],
        [t.kind.value for t in transfers],
        [t.debit_account for t in transfers],
        [t.credit_account for t in transfers],
        [t.asset for t in transfers],
        [t.amount for t in transfers],
        [t.pending_id for t in transfers],
        [t.memo for t in transfers],
        request_id,
        conn.owner,
        now_ms(),
    )


def rejection(code: str) -> LedgerRejected | None:
    """The function's answer as a rejection (None: applied)."""
    if not code:
        return None
    reason, _, transfer_id = code.partition(" ")
    return LedgerRejected(Rejection(reason), transfer_id)


def apply_entry(conn: Conn, transfers: Sequence[Transfer], request_id: str = "") -> None:
    refused = rejection(conn.execute(ENTRY_SQL, entry_parameters(conn, transfers, request_id)).fetchone()[0])
    if refused is not None:
        raise refused


def apply_if_covered(conn: Conn, transfers: Sequence[Transfer], request_id: str = "") -> bool:
    refused = rejection(conn.execute(ENTRY_SQL, entry_parameters(conn, transfers, request_id)).fetchone()[0])
    if refused is None:
        return True
    if refused.rejection is Rejection.EXCEEDS_FLOOR:
        return False
    raise refused


def read_balance(conn: Conn, account_id: str, *, for_update: bool = False) -> Balance | None:
    if not slotted(account_id):  # a customer's account: its row (``for_update``: locked for the transaction)
        lock = " FOR UPDATE" if for_update else ""
        row = conn.execute(
            "SELECT id, asset, floor, debits_pending, debits_posted, credits_pending, credits_posted "
            f"FROM ledger_accounts WHERE id = ?{lock}",
            (account_id,),
        ).fetchone()
    else:
        row = conn.execute(f"{_BALANCE_SQL} WHERE a.id = ? GROUP BY a.id", (account_id,)).fetchone()
    return None if row is None else Balance(*row)


def all_balances(conn: Conn) -> list[Balance]:
    return [Balance(*row) for row in conn.execute(f"{_BALANCE_SQL} GROUP BY a.id")]


def entry_statement(transfers: Sequence[Transfer], request_id: str) -> Callable[[Conn], Statement]:
    """``apply_entry`` as one statement (store/deferred.py)."""
    return lambda conn: (ENTRY_SQL, entry_parameters(conn, transfers, request_id))


def finish_entry(row: Any) -> None:
    refused = rejection(row[0])
    if refused is not None:
        raise refused


def reserve_statement(account_id: str, check_plans: bool, transfer: Transfer) -> Callable[[Conn], Statement]:
    """A wallet reservation as one statement: answers 'plans' if the account has taken up plans since."""

    def statement(conn: Conn) -> Statement:
        return RESERVE_SQL, (account_id, check_plans, *entry_parameters(conn, [transfer], transfer.id.split(".")[0]))

    return statement


def settle_statement(transfers: Sequence[Transfer], event: UsageEvent, balance_of: str) -> Callable[[Conn], Statement]:
    """A settlement without adjustment or attempt rows as one statement: entry, usage event, balance."""

    def statement(conn: Conn) -> Statement:
        record = {name: _json_value(getattr(event, name)) for name in USAGE_COLUMNS}
        parameters = (*entry_parameters(conn, transfers, event.request_id), Jsonb(record), balance_of)
        return SETTLE_SQL, parameters

    return statement


def finish_settle(row: Any, account_id: str) -> Balance | None:
    finish_entry(row)
    if row[1] is None:
        return None
    return Balance(account_id, row[1], row[2], row[3], row[4], row[5], row[6])


def _json_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value  # booleans are 0/1 integers in the schema
