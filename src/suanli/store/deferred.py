"""A job the writer may send to PostgreSQL as data, in one call with the rest of its batch.

The hot path's jobs (a pay-as-you-go reservation, a settlement, a ledger entry) are each one job of the
server-side function ``suanli_batch`` (store/pg_flat.sql): PostgreSQL's writer sends ``BEGIN`` and one
call carrying the whole batch's jobs in psycopg's pipeline mode, so a batch of hundreds of jobs costs one
round trip and one statement; the functions are atomic, so no savepoint is needed either. Inside it, the
common reservations and settlements are written a table at a time, not a job at a time. SQLite (and
PostgreSQL when ``finish`` answers ``FALLBACK``) runs the same job as Python (``python``). ``order`` is also
the account whose turn the job takes on PostgreSQL: a job whose account another writer's batch has is sent
again in the next batch (store/writer.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from suanli.store.conn import Conn

T = TypeVar("T")


class _Fallback:
    def __repr__(self) -> str:
        return "FALLBACK"


FALLBACK: Any = _Fallback()  # finish's answer when the job must run as Python after all (in the same batch)


@dataclass(frozen=True, slots=True)
class Ordered(Generic[T]):
    """A Python job with its place in the batch: the customer account it locks. PostgreSQL's writer runs a
    batch's Python jobs in that order (after its deferred statements, themselves in that order), so two
    workers' batches take the accounts' locks in one order and cannot deadlock on them."""

    python: Callable[[Conn], T]
    order: str

    def __call__(self, conn: Conn) -> T:
        return self.python(conn)


@dataclass(frozen=True, slots=True)
class Deferred(Generic[T]):
    python: Callable[[Conn], T]  # the job itself
    call: Callable[[], list[Any]]  # the same as one job of suanli_batch: [kind, ...] (PostgreSQL)
    finish: Callable[[Any], T]  # the job's answer (a row) -> its result; raises as the job would
    order: str = ""  # a batch's statements are sent in this order (the customer account): one lock order

    def __call__(self, conn: Conn) -> T:
        return self.python(conn)
