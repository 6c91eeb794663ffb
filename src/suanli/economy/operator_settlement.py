"""Operator settlement: moving what the platform owes each operator out of ``sales:{operator}``, once.

A run for a month settles, for each operator, everything credited to its sales account from the month's
start up to the run's cut-off (the run's time, or the month's end if that is earlier): the net payable to
``payout:{operator}`` and the platform's commission to ``platform:commission``, two ledger transfers named
after the run. It is cumulative, not incremental: the run recomputes the month's gross so far per offer and
commission version, splits each exactly (``pricing.commission.split``), and moves the difference between
those totals and what earlier runs of the month moved (the ``operator_settlements`` rows). So a run inside
an open month settles what was earned up to then, a later one only what came after (a late-committed
credit dated before an earlier cut-off included), a run that finds nothing new moves nothing and writes
nothing, and however the runs fall, the month's totals are those of one run after its end, to the nano.

The whole run is one transaction under one lock (``cluster.serialize``), so two runs never interleave
and a refused run leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suanli.catalog import Catalog
from suanli.economy.operator_sales import Month, operators_with_sales, sales_groups
from suanli.errors import BadRequest, Conflict
from suanli.ledger import ASSET_CNY, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account
from suanli.store import cluster
from suanli.store.conn import Conn
from suanli.store.db import now_ms

COMMISSION = "platform:commission"  # the platform's earnings from operators' sales
PAYOUT_FLOOR_NANO = 0  # a payout account only receives; paying an operator out may not overdraw it
RUN_LOCK = "operator-settlement"


def payout(operator: str) -> str:
    """What the platform owes an operator, settled and waiting to be paid out."""
    return f"payout:{operator}"


@dataclass(frozen=True, slots=True)
class Settled:
    """One operator's part of one run: what it moved, and up to when the month is settled."""

    run_id: str
    operator: str
    month: str
    seq: int  # the operator's n-th settlement of the month
    settled_to_ms: int  # the watermark: credits made before it are settled
    gross_nano: int
    commission_nano: int
    net_nano: int
    created_at_ms: int

    def public(self) -> dict[str, Any]:
        return {
            "object": "operator_settlement",
            "run_id": self.run_id,
            "operator": self.operator,
            "month": self.month,
            "seq": self.seq,
            "settled_to_ms": self.settled_to_ms,
            "gross_nano": self.gross_nano,
            "commission_nano": self.commission_nano,
            "net_nano": self.net_nano,
            "created_at_ms": self.created_at_ms,
            "transfers": transfer_ids(self.run_id, self.operator),
        }


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str | None  # None: nothing new to settle, nothing written
    month: str
    settled_to_ms: int
    settled: list[Settled]

    def public(self) -> dict[str, Any]:
        return {
            "object": "operator_settlement_run",
            "run_id": self.run_id,
            "month": self.month,
            "settled_to_ms": self.settled_to_ms,
            "gross_nano": sum(s.gross_nano for s in self.settled),
            "commission_nano": sum(s.commission_nano for s in self.settled),
            "net_nano": sum(s.net_nano for s in self.settled),
            "data": [s.public() for s in self.settled],
        }


def transfer_ids(run_id: str, operator: str) -> dict[str, str]:
    return {"net": f"{run_id}.{operator}.net", "commission": f"{run_id}.{operator}.commission"}


def settle_job(catalog: Catalog, month: Month, at_ms: int) -> Callable[[Conn], Run]:
    """The writer job of a run at ``at_ms`` (the cut-off, or the month's end if earlier)."""

    def job(conn: Conn) -> Run:
        cutoff_ms = min(at_ms, month.end_ms)
        if cutoff_ms <= month.start_ms:
            raise BadRequest(f"{month.name} has not begun", code="month_not_begun", param="month")
        cluster.serialize(conn, RUN_LOCK)
        open_account(conn, COMMISSION, ASSET_CNY, None)
        run_id = _next_run_id(conn, month.name)
        settled = []
        for operator in operators_with_sales(conn, catalog):
            row = _settle_operator(conn, catalog, month, operator, run_id=run_id, cutoff_ms=cutoff_ms)
            if row is not None:
                settled.append(row)
        return Run(run_id if settled else None, month.name, cutoff_ms, settled)

    return job


def _settle_operator(
    conn: Conn, catalog: Catalog, month: Month, operator: str, *, run_id: str, cutoff_ms: int
) -> Settled | None:
    groups = sales_groups(conn, catalog, operator, month.start_ms, cutoff_ms)
    totals = (sum(g.gross_nano for g in groups), sum(g.commission_nano for g in groups))
    done = settled_totals(conn, operator, month.name)
    gross, commission = totals[0] - done[0], totals[1] - done[1]
    net = gross - commission
    if gross == commission == 0:
        return None
    if min(gross, commission, net) < 0:
        raise Conflict(
            f"{operator}'s {month.name} sales or commission are below what earlier runs settled: was the catalog's "
            "commission changed for a time already settled?",
            code="settlement_mismatch",
            param="month",
        )
    row = Settled(run_id, operator, month.name, done[2] + 1, cutoff_ms, gross, commission, net, now_ms())
    _post(conn, row)
    return row


def _post(conn: Conn, row: Settled) -> None:
    ids, sales = transfer_ids(row.run_id, row.operator), ledger_names.sales(row.operator)
    open_account(conn, payout(row.operator), ASSET_CNY, PAYOUT_FLOOR_NANO)
    memo = f"operator settlement {row.month} to {row.settled_to_ms}"
    entry = [
        Transfer(ids["net"], Kind.POSTED, sales, payout(row.operator), ASSET_CNY, row.net_nano, memo=memo),
        Transfer(ids["commission"], Kind.POSTED, sales, COMMISSION, ASSET_CNY, row.commission_nano, memo=memo),
    ]
    apply_entry(conn, [t for t in entry if t.amount > 0], row.run_id)
    conn.execute(
        "INSERT INTO operator_settlements (run_id, operator, month, seq, settled_to_ms, gross_nano, commission_nano, "
        "net_nano, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.run_id,
            row.operator,
            row.month,
            row.seq,
            row.settled_to_ms,
            row.gross_nano,
            row.commission_nano,
            row.net_nano,
            row.created_at_ms,
        ),
    )


def _next_run_id(conn: Conn, month: str) -> str:
    count = conn.execute("SELECT COUNT(DISTINCT run_id) FROM operator_settlements WHERE month = ?", (month,)).fetchone()
    return f"opset-{month}-{int(count[0]) + 1}"


def settled_totals(conn: Conn, operator: str, month: str) -> tuple[int, int, int]:
    """(gross, commission, runs) settled so far for ``operator`` in ``month``."""
    row = conn.execute(
        "SELECT COALESCE(SUM(gross_nano), 0), COALESCE(SUM(commission_nano), 0), COUNT(*) FROM operator_settlements "
        "WHERE operator = ? AND month = ?",
        (operator, month),
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def settlements(conn: Conn, month: str | None = None, operator: str | None = None) -> list[Settled]:
    """The recorded settlements, oldest first, of a month and/or an operator."""
    where, params = [], []
    for column, value in (("month", month), ("operator", operator)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        "SELECT run_id, operator, month, seq, settled_to_ms, gross_nano, commission_nano, net_nano, created_at_ms "
        f"FROM operator_settlements{clause} ORDER BY month, created_at_ms, operator, seq",
        params,
    ).fetchall()
    return [Settled(str(r[0]), str(r[1]), str(r[2]), *(int(v) for v in r[3:])) for r in rows]
