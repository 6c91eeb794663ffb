"""The ledger's rules on PostgreSQL: every entry in one call of the server-side function ``suanli_entry``.

The rules, checks and rejections are those of ``ledger/sqlite.py`` (the function is its translation,
``store/schema_pg.py``); an entry is applied all together or not at all without a savepoint of the
caller's, and in one round trip whatever its length. Platform accounts keep a row of sums per writer
(``ledger_account_slots``): a balance is the account's row plus its slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from suanli.ledger.model import Balance, LedgerRejected, Rejection, Transfer
from suanli.store.conn import Conn
from suanli.store.db import now_ms
from suanli.store.usage import USAGE_COLUMNS, UsageEvent

Call = list[Any]  # one job of suanli_batch: [kind, ...] (store/pg_ledger.sql)
SLOTTED_PREFIXES = ("platform:", "sales:", "plans:")
ENTRY_SQL = "SELECT suanli_entry(?::jsonb, ?, ?, ?)"
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
    """The entry as ``suanli_entry`` takes it: one JSON text (the driver adapts a string in C), then the
    request, the writer and the time."""
    return orjson.dumps(_entry(transfers)).decode(), request_id, conn.owner, now_ms()


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


def _entry(transfers: Sequence[Transfer]) -> list[tuple[Any, ...]]:
    return [
        (t.id, t.kind.value, t.debit_account, t.credit_account, t.asset, t.amount, t.pending_id, t.memo)
        for t in transfers
    ]


def entry_statement(transfers: Sequence[Transfer], request_id: str) -> Callable[[], Call]:
    """``apply_entry`` as one job of a batch's call (store/deferred.py)."""
    return lambda: ["entry", _entry(transfers), request_id]


def finish_entry(row: Any) -> None:
    refused = rejection(row[0])
    if refused is not None:
        raise refused


def reserve_statement(account_id: str, check_plans: bool, transfer: Transfer) -> Callable[[], Call]:
    """A wallet reservation as one job of a batch's call: answers 'plans' if the account has taken up plans
    since it was cached."""
    request_id = transfer.id.split(".")[0]
    return lambda: ["reserve", account_id, int(check_plans), _entry([transfer]), request_id]


def settle_statement(transfers: Sequence[Transfer], event: UsageEvent, balance_of: str) -> Callable[[], Call]:
    """A settlement without adjustment or attempt rows as one job of a batch's call: entry, usage event,
    balance."""

    def call() -> Call:
        record = {name: _json_value(getattr(event, name)) for name in USAGE_COLUMNS}
        return ["settle", _entry(transfers), event.request_id, record, balance_of]

    return call


def finish_settle(row: Any, account_id: str) -> Balance | None:
    finish_entry(row)
    if row[1] is None:
        return None
    return Balance(account_id, row[1], row[2], row[3], row[4], row[5], row[6])


def _json_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value  # booleans are 0/1 integers in the schema
