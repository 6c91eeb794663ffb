"""What a statement reads from the ledger: one customer ledger account's movements over a period, its
posted balance before it, and the reservations still open at its end.

Everything comes from the ``transfers`` table by ``created_at_ms`` (the posting's time), so a statement
sees every movement the ledger made, and a period's rows never change once it has passed. Customer
accounts (``wallet:``, ``pack:``, ``allow:``) are found through two partial indexes (schema.py's
statements migration) that leave out the platform's own accounts, so the calls' hot path pays for one index
entry per customer-side transfer and none for the escrow's, the operators' or the plans' side. A budget
window (``budget:``) is credited through the customer credit index and debited through an index of its
own (``transfers_budget_debit``), so its debits are read with that index's condition instead. The
predicates below repeat the indexes' WHERE clauses word for word: that is how SQLite and PostgreSQL know
a query may use a partial index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from suanli.store.conn import Conn
from suanli.store.schema import BUDGET_DEBIT_SIDE, CUSTOMER_CREDIT_SIDE, CUSTOMER_DEBIT_SIDE
from suanli.store.usage import USAGE_COLUMNS, UsageEvent, row_to_event

MOVES = "('posted', 'post')"  # the kinds that move a posted balance; a pending only reserves, a void undoes
USAGE_BATCH_ROWS = 500  # request ids looked up in one query of usage events


@dataclass(frozen=True, slots=True)
class Movement:
    """One posted movement of a ledger account: ``amount`` signed as it changes the account's balance."""

    id: str
    kind: str
    counter_account: str
    amount: int
    memo: str
    created_at_ms: int
    reserved_at_ms: int | None  # a post's reservation time (a call made before it was settled)


def movements(conn: Conn, account: str, start_ms: int, end_ms: int) -> Iterator[Movement]:
    """The account's posted movements in [start, end), in posting order."""
    rows = conn.execute(
        "SELECT t.id, t.kind, t.credit_account, -t.amount, t.memo, t.created_at_ms, p.created_at_ms "
        "FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id "
        f"WHERE t.debit_account = ? AND {_on('t', debit_side(account))} AND t.kind IN {MOVES} "
        "AND t.created_at_ms >= ? AND t.created_at_ms < ? "
        "UNION ALL SELECT t.id, t.kind, t.debit_account, t.amount, t.memo, t.created_at_ms, p.created_at_ms "
        "FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id "
        f"WHERE t.credit_account = ? AND {_on('t', CUSTOMER_CREDIT_SIDE)} AND t.kind IN {MOVES} "
        "AND t.created_at_ms >= ? AND t.created_at_ms < ? ORDER BY 6, 1",
        (account, start_ms, end_ms, account, start_ms, end_ms),
    )
    for row in rows:
        yield Movement(row[0], row[1], row[2], int(row[3]), row[4] or "", int(row[5]), row[6])


def balance_before(conn: Conn, account: str, at_ms: int) -> int:
    """The account's posted balance just before ``at_ms``: credits less debits, summed from its transfers."""
    credits = conn.execute(
        f"SELECT coalesce(sum(amount), 0) FROM transfers WHERE credit_account = ? AND {CUSTOMER_CREDIT_SIDE} "
        f"AND kind IN {MOVES} AND created_at_ms < ?",
        (account, at_ms),
    ).fetchone()[0]
    debits = conn.execute(
        f"SELECT coalesce(sum(amount), 0) FROM transfers WHERE debit_account = ? AND {debit_side(account)} "
        f"AND kind IN {MOVES} AND created_at_ms < ?",
        (account, at_ms),
    ).fetchone()[0]
    return int(credits) - int(debits)


def pending_at(conn: Conn, account: str, at_ms: int) -> tuple[int, int]:
    """The reservations on the account open at ``at_ms`` (made before it, not resolved before it): their
    count and sum."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(p.amount), 0) FROM transfers p "
        "LEFT JOIN transfers r ON r.pending_id = p.id AND r.created_at_ms < ? "
        f"WHERE p.debit_account = ? AND {_on('p', debit_side(account))} AND p.kind = 'pending' AND p.created_at_ms < ? "
        "AND r.id IS NULL",
        (at_ms, account, at_ms),
    ).fetchone()
    return int(row[0]), int(row[1])


def usage_events(conn: Conn, account_id: str, request_ids: Sequence[str]) -> dict[str, UsageEvent]:
    """The usage events of these requests of the account (at most ``USAGE_BATCH_ROWS`` ids at a time)."""
    if not request_ids:
        return {}
    marks = ", ".join("?" for _ in request_ids)
    rows = conn.execute(
        f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_events WHERE account_id = ? AND request_id IN ({marks})",
        (account_id, *request_ids),
    )
    return {event.request_id: event for event in map(row_to_event, rows)}


def debit_side(account: str) -> str:
    """The partial index's condition that holds the account's debits."""
    return BUDGET_DEBIT_SIDE if account.startswith("budget:") else CUSTOMER_DEBIT_SIDE


def _on(alias: str, condition: str) -> str:
    return condition.replace("debit_account", f"{alias}.debit_account").replace(
        "credit_account", f"{alias}.credit_account"
    )
