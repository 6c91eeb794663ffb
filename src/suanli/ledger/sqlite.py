"""Applying transfers to the SQLite store: the ledger's rules, checked inside the writing transaction.

Every function here runs on the writer's connection inside a transaction (see ``store.writer``); a
rejection raises ``LedgerRejected`` and the caller's savepoint rolls back the whole entry, so an entry's
transfers apply all together or not at all. The balance check is a conditional UPDATE, so it holds for
any number of processes writing the same file.
"""

from __future__ import annotations

from collections.abc import Sequence

from suanli.errors import invariant
from suanli.ledger import postgres
from suanli.ledger.model import Balance, Kind, LedgerRejected, Rejection, Transfer
from suanli.store import cluster
from suanli.store.conn import INTEGRITY_ERRORS, Conn
from suanli.store.db import now_ms

_DEBIT_COLUMN = {Kind.POSTED: "debits_posted", Kind.PENDING: "debits_pending"}
_CREDIT_COLUMN = {Kind.POSTED: "credits_posted", Kind.PENDING: "credits_pending"}


def open_account(conn: Conn, account_id: str, asset: str, floor: int | None) -> None:
    """Create a ledger account if it is not there yet (idempotent; an existing one is left as is)."""
    conn.execute(
        "INSERT INTO ledger_accounts (id, asset, floor, created_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (account_id, asset, floor, now_ms()),
    )


def set_floor(conn: Conn, account_id: str, floor: int | None) -> Balance:
    """Change an account's floor (a credit limit); refused if the account is already below the new one.
    The row is locked while it is read (PostgreSQL; SQLite's writer is serial), so no debit slips between."""
    balance = read_balance(conn, account_id, for_update=True)
    if balance is None:
        raise LedgerRejected(Rejection.ACCOUNT_NOT_FOUND, account_id)
    if floor is not None and balance.available < floor:
        raise LedgerRejected(Rejection.EXCEEDS_FLOOR, account_id)
    conn.execute("UPDATE ledger_accounts SET floor = ? WHERE id = ?", (floor, account_id))
    return Balance(
        balance.account_id,
        balance.asset,
        floor,
        balance.debits_pending,
        balance.debits_posted,
        balance.credits_pending,
        balance.credits_posted,
    )


def read_balance(conn: Conn, account_id: str, *, for_update: bool = False) -> Balance | None:
    """An account's balance (``for_update``: locked until the transaction ends, on PostgreSQL)."""
    if cluster.on_postgres(conn):
        return postgres.read_balance(conn, account_id, for_update=for_update)
    row = conn.execute(
        "SELECT id, asset, floor, debits_pending, debits_posted, credits_pending, credits_posted "
        "FROM ledger_accounts WHERE id = ?",
        (account_id,),
    ).fetchone()
    return None if row is None else Balance(*row)


def apply_entry(conn: Conn, transfers: Sequence[Transfer], request_id: str = "") -> None:
    """Apply ``transfers`` in order; raise ``LedgerRejected`` on the first one the rules refuse."""
    if cluster.on_postgres(conn):
        postgres.apply_entry(conn, transfers, request_id)
        return
    for transfer in transfers:
        _check_shape(transfer)
        if not _insert_new(conn, transfer):
            continue  # the same transfer was applied before: idempotent
        if transfer.kind in (Kind.POSTED, Kind.PENDING):
            _apply_single(conn, transfer, request_id)
        else:
            _apply_resolution(conn, transfer)


def apply_if_covered(conn: Conn, transfers: Sequence[Transfer], request_id: str = "") -> bool:
    """Apply ``transfers``, or nothing and return False if a debit account can't cover them: for a job
    that goes on after a refusal (trying a smaller amount, or another source). Its own savepoint undoes
    the rows a refused entry wrote before the refusal; every other rejection still raises."""
    if cluster.on_postgres(conn):
        return postgres.apply_if_covered(conn, transfers, request_id)
    conn.execute("SAVEPOINT covered")
    try:
        apply_entry(conn, transfers, request_id)
    except LedgerRejected as exc:
        conn.execute("ROLLBACK TO covered")
        conn.execute("RELEASE covered")
        if exc.rejection is Rejection.EXCEEDS_FLOOR:
            return False
        raise
    conn.execute("RELEASE covered")
    return True


def _check_shape(t: Transfer) -> None:
    if t.amount < 0:
        raise LedgerRejected(Rejection.NEGATIVE_AMOUNT, t.id)
    if t.debit_account == t.credit_account:
        raise LedgerRejected(Rejection.SAME_ACCOUNT, t.id)


def _insert_new(conn: Conn, t: Transfer) -> bool:
    """Insert the transfer row first: the primary key makes a replay idempotent, the unique index on
    ``pending_id`` refuses a second resolution (``ON CONFLICT DO NOTHING``, then one look-up to tell the two
    apart), and foreign keys refuse unknown accounts, each without a look-up of its own on the hot path.
    The caller's savepoint removes the row again if a later check refuses it."""
    try:
        inserted = _insert(conn, t)
    except INTEGRITY_ERRORS as exc:  # a foreign key: an unknown account or reservation
        raise _unknown(conn, t, exc) from None
    if inserted:
        return True
    if conn.execute("SELECT 1 FROM transfers WHERE id = ?", (t.id,)).fetchone() is not None:
        _check_same(conn, t)
        return False  # the same transfer was applied before
    raise LedgerRejected(Rejection.PENDING_ALREADY_RESOLVED, t.id)


def _unknown(conn: Conn, t: Transfer, exc: Exception) -> LedgerRejected:
    """Which reference a refused insert named. PostgreSQL names the constraint (and has aborted the
    transaction up to the caller's savepoint, so nothing may be read); SQLite does not, and can be asked."""
    constraint = getattr(getattr(exc, "diag", None), "constraint_name", None)
    if constraint is not None:
        reason = Rejection.PENDING_NOT_FOUND if "pending" in constraint else Rejection.ACCOUNT_NOT_FOUND
        return LedgerRejected(reason, t.id)
    if t.pending_id is not None and _find_pending(conn, t.pending_id) is None:
        return LedgerRejected(Rejection.PENDING_NOT_FOUND, t.id)
    try:
        _check_accounts(conn, t)
    except LedgerRejected as rejected:
        return rejected
    return LedgerRejected(Rejection.ACCOUNT_NOT_FOUND, t.id)


def _check_same(conn: Conn, t: Transfer) -> None:
    row = conn.execute(
        "SELECT kind, debit_account, credit_account, asset, amount, pending_id FROM transfers WHERE id = ?",
        (t.id,),
    ).fetchone()
    if tuple(row) != (t.kind.value, t.debit_account, t.credit_account, t.asset, t.amount, t.pending_id):
        raise LedgerRejected(Rejection.EXISTS_WITH_DIFFERENT_FIELDS, t.id)


def _check_accounts(conn: Conn, t: Transfer) -> None:
    for account_id in (t.debit_account, t.credit_account):
        row = conn.execute("SELECT asset FROM ledger_accounts WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise LedgerRejected(Rejection.ACCOUNT_NOT_FOUND, t.id)
        if row[0] != t.asset:
            raise LedgerRejected(Rejection.ASSET_MISMATCH, t.id)


def _apply_single(conn: Conn, t: Transfer, request_id: str) -> None:
    debit_column, credit_column = _DEBIT_COLUMN[t.kind], _CREDIT_COLUMN[t.kind]
    # The floor check and the debit are one statement: no other writer can slip between them.
    # Plain positional parameters (the amount given twice), which every SQL driver's style can express.
    cursor = conn.execute(
        f"UPDATE ledger_accounts SET {debit_column} = {debit_column} + ? "
        "WHERE id = ? AND asset = ? AND "
        "(floor IS NULL OR credits_posted - debits_posted - debits_pending - ? >= floor)",
        (t.amount, t.debit_account, t.asset, t.amount),
    )
    if cursor.rowcount != 1:
        _check_accounts(conn, t)  # names the precise reason if it is not the floor
        raise LedgerRejected(Rejection.EXCEEDS_FLOOR, t.id)
    cursor = conn.execute(
        f"UPDATE ledger_accounts SET {credit_column} = {credit_column} + ? WHERE id = ? AND asset = ?",
        (t.amount, t.credit_account, t.asset),
    )
    if cursor.rowcount != 1:
        raise LedgerRejected(Rejection.ASSET_MISMATCH, t.id)
    if t.kind is Kind.PENDING:
        conn.execute(
            "INSERT INTO open_pending (transfer_id, request_id, created_at_ms, owner) VALUES (?, ?, ?, ?)",
            (t.id, request_id, now_ms(), conn.owner),
        )


def _apply_resolution(conn: Conn, t: Transfer) -> None:
    pending = _find_pending(conn, t.pending_id or "")
    if pending is None:
        raise LedgerRejected(Rejection.PENDING_NOT_FOUND, t.id)
    if (pending.debit_account, pending.credit_account, pending.asset) != (t.debit_account, t.credit_account, t.asset):
        raise LedgerRejected(Rejection.EXISTS_WITH_DIFFERENT_FIELDS, t.id)
    amount = t.amount if t.kind is Kind.POST else 0
    if amount > pending.amount:
        raise LedgerRejected(Rejection.EXCEEDS_PENDING, t.id)
    conn.execute(
        "UPDATE ledger_accounts SET debits_pending = debits_pending - ?, debits_posted = debits_posted + ? "
        "WHERE id = ?",
        (pending.amount, amount, pending.debit_account),
    )
    conn.execute(
        "UPDATE ledger_accounts SET credits_pending = credits_pending - ?, "
        "credits_posted = credits_posted + ? WHERE id = ?",
        (pending.amount, amount, pending.credit_account),
    )
    conn.execute("DELETE FROM open_pending WHERE transfer_id = ?", (pending.id,))


def _find_pending(conn: Conn, pending_id: str) -> Transfer | None:
    row = conn.execute(
        "SELECT id, kind, debit_account, credit_account, asset, amount FROM transfers "
        "WHERE id = ? AND kind = 'pending'",
        (pending_id,),
    ).fetchone()
    return None if row is None else Transfer(row[0], Kind(row[1]), row[2], row[3], row[4], row[5])


def _insert(conn: Conn, t: Transfer) -> bool:
    cursor = conn.execute(
        "INSERT INTO transfers (id, kind, debit_account, credit_account, asset, amount, pending_id, memo, "
        "created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            t.id,
            t.kind.value,
            t.debit_account,
            t.credit_account,
            t.asset,
            t.amount,
            t.pending_id,
            t.memo,
            now_ms(),
        ),
    )
    return bool(cursor.rowcount == 1)


def pending_transfer(conn: Conn, transfer_id: str) -> Transfer | None:
    """A reservation with its memo, by id."""
    row = conn.execute(
        "SELECT id, kind, debit_account, credit_account, asset, amount, memo FROM transfers "
        "WHERE id = ? AND kind = 'pending'",
        (transfer_id,),
    ).fetchone()
    return None if row is None else Transfer(row[0], Kind(row[1]), row[2], row[3], row[4], row[5], memo=row[6])


def open_pending(conn: Conn, created_before_ms: int | None = None) -> list[tuple[Transfer, str]]:
    """Every reservation not yet posted or voided (made before ``created_before_ms``, if given), with the
    request it belongs to."""
    rows = conn.execute(
        "SELECT t.id, t.kind, t.debit_account, t.credit_account, t.asset, t.amount, t.memo, o.request_id "
        "FROM open_pending o JOIN transfers t ON t.id = o.transfer_id WHERE o.created_at_ms < ? "
        "ORDER BY o.created_at_ms",
        (created_before_ms if created_before_ms is not None else 2**62,),
    ).fetchall()
    return [(Transfer(r[0], Kind(r[1]), r[2], r[3], r[4], r[5], memo=r[6]), r[7]) for r in rows]


def verify(conn: Conn) -> None:
    """Recompute every account's sums from its transfers and check them against the stored sums,
    that each asset nets to zero, and that no account with a floor is below it."""
    if cluster.on_postgres(conn):
        stored = {balance.account_id: balance for balance in postgres.all_balances(conn)}
    else:
        stored = {
            row[0]: Balance(*row)
            for row in conn.execute(
                "SELECT id, asset, floor, debits_pending, debits_posted, credits_pending, credits_posted "
                "FROM ledger_accounts"
            )
        }
    derived = _derive_sums(conn)
    for account_id, balance in stored.items():
        sums = derived.get(account_id, (0, 0, 0, 0))
        actual = (
            balance.debits_pending,
            balance.debits_posted,
            balance.credits_pending,
            balance.credits_posted,
        )
        invariant(actual == sums, f"ledger account {account_id} sums {actual} != transfers {sums}")
        invariant(
            balance.floor is None or balance.available >= balance.floor,
            f"ledger account {account_id} is below its floor",
        )
    for asset in {b.asset for b in stored.values()}:
        of_asset = [b for b in stored.values() if b.asset == asset]
        invariant(sum(b.posted for b in of_asset) == 0, f"asset {asset} posted sums do not net to zero")
        invariant(
            sum(b.credits_pending - b.debits_pending for b in of_asset) == 0,
            f"asset {asset} pending sums do not net to zero",
        )


def _derive_sums(conn: Conn) -> dict[str, tuple[int, int, int, int]]:
    """Per account: (debits_pending, debits_posted, credits_pending, credits_posted) from transfers."""
    sums: dict[str, list[int]] = {}
    rows = conn.execute(
        "SELECT p.id, p.debit_account, p.credit_account, p.amount, r.kind, r.amount FROM transfers p "
        "LEFT JOIN transfers r ON r.pending_id = p.id WHERE p.kind = 'pending' "
        "UNION ALL SELECT id, debit_account, credit_account, amount, 'single', amount FROM transfers "
        "WHERE kind = 'posted'"
    )
    for _id, debit, credit, amount, resolution, resolved_amount in rows:
        d, c = sums.setdefault(debit, [0, 0, 0, 0]), sums.setdefault(credit, [0, 0, 0, 0])
        if resolution is None:  # still pending
            d[0] += amount
            c[2] += amount
        elif resolution in ("single", "post"):
            d[1] += resolved_amount
            c[3] += resolved_amount
    return {k: (v[0], v[1], v[2], v[3]) for k, v in sums.items()}
