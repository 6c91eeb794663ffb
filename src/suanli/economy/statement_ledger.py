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

A section's opening is the previous month's stored closing when there is one to chain from (``Openings``),
so a month's statement reads the period's rows, not the account's whole history; without one it is summed
from the beginning (``balance_before``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from suanli.ledger.sqlite import read_balance
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
    return moved(conn, account, None, at_ms)


def moved(conn: Conn, account: str, start_ms: int | None, end_ms: int) -> int:
    """What the account's posted movements in [start, end) add up to (from its first if ``start_ms`` is
    None), summed by the database: credits less debits."""
    since, params = ("", ()) if start_ms is None else ("AND created_at_ms >= ? ", (start_ms,))
    credits = conn.execute(
        f"SELECT coalesce(sum(amount), 0) FROM transfers WHERE credit_account = ? AND {CUSTOMER_CREDIT_SIDE} "
        f"AND kind IN {MOVES} {since}AND created_at_ms < ?",
        (account, *params, end_ms),
    ).fetchone()[0]
    debits = conn.execute(
        f"SELECT coalesce(sum(amount), 0) FROM transfers WHERE debit_account = ? AND {debit_side(account)} "
        f"AND kind IN {MOVES} {since}AND created_at_ms < ?",
        (account, *params, end_ms),
    ).fetchone()[0]
    return int(credits) - int(debits)


def _moves_in(conn: Conn, account: str, condition: str, at_ms: int) -> bool:
    """Whether the account has a posted movement whose time meets ``condition`` (``< ?`` or ``>= ?``): a
    seek into the partial indexes, whatever the account's history."""
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM transfers WHERE credit_account = ? AND {CUSTOMER_CREDIT_SIDE} "
        f"AND kind IN {MOVES} AND created_at_ms {condition}) "
        f"OR EXISTS (SELECT 1 FROM transfers WHERE debit_account = ? AND {debit_side(account)} "
        f"AND kind IN {MOVES} AND created_at_ms {condition})",
        (account, at_ms, account, at_ms),
    ).fetchone()
    return bool(row[0])


@dataclass(frozen=True, slots=True)
class Openings:
    """Where each section's opening balance comes from. ``closings``: the closing balances, by ledger
    account, of the previous month's stored statement, when it ends where this period starts (each was
    checked against the ledger when it was stored, and the store checks its SHA-256 when it is read). None:
    nothing to chain from (the first month, a range, a previous month not stored), so every opening is
    summed from the ledger."""

    closings: Mapping[str, int] | None = None

    def __call__(self, conn: Conn, account: str, at_ms: int) -> int:
        if self.closings is None:
            return balance_before(conn, account, at_ms)
        if account in self.closings:
            return self.closings[account]
        return _opening_unlisted(conn, account, at_ms)


def _opening_unlisted(conn: Conn, account: str, at_ms: int) -> int:
    """The opening of an account the previous statement did not list (opened since, or idle and empty then,
    or shown by an older version): 0 if the ledger has no movement of it before ``at_ms``; its posted
    balance now if it has none since (read first, so a movement landing in between is seen since); else
    summed. Each of the first two is a seek, so a pack long spent costs nothing more each month."""
    if not _moves_in(conn, account, "< ?", at_ms):
        return 0
    balance = read_balance(conn, account)
    if balance is not None and not _moves_in(conn, account, ">= ?", at_ms):
        return balance.posted
    return balance_before(conn, account, at_ms)


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


def accounts_between(conn: Conn, low: str, high: str) -> list[str]:
    """The ids of the ledger accounts in [low, high), in order, read through the primary key. Ids compare
    byte by byte, so an id prefix is one range: in SQLite always, in PostgreSQL by the column's collation
    ("C", store/schema_pg.py ``PG_BYTE_ORDER_IDS``), whatever the database's locale."""
    rows = conn.execute("SELECT id FROM ledger_accounts WHERE id >= ? AND id < ? ORDER BY id", (low, high))
    return [row[0] for row in rows]
