"""The ledger's vocabulary: assets, accounts, transfers and the rejections a transfer can meet.

Double-entry, two-phase (after TigerBeetle): every transfer moves ``amount`` of one ``asset`` from a
debit account to a credit account, so each asset's movements sum to zero by construction. A ``pending``
transfer reserves the amount (it counts against the debit account's available balance) until exactly one
``post`` (amount <= pending) or ``void`` names it. Amounts are integers: nano-CNY or tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ASSET_CNY = "CNY"  # amounts in nano-CNY


class Kind(StrEnum):
    POSTED = "posted"  # single-phase: moved at once (top-ups, grants)
    PENDING = "pending"  # a reservation
    POST = "post"  # settles a pending transfer, for at most its amount
    VOID = "void"  # releases a pending transfer


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    kind: Kind
    debit_account: str
    credit_account: str
    asset: str
    amount: int
    pending_id: str | None = None
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's sums; ``available`` is what a new reservation may take down to ``floor``."""

    account_id: str
    asset: str
    floor: int | None
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def spendable(self) -> int | None:
        """How much more may be reserved or spent before the floor; None when there is no floor."""
        return None if self.floor is None else self.available - self.floor


class Rejection(StrEnum):
    ACCOUNT_NOT_FOUND = "account_not_found"
    ASSET_MISMATCH = "asset_mismatch"
    SAME_ACCOUNT = "same_account"
    NEGATIVE_AMOUNT = "negative_amount"
    EXCEEDS_FLOOR = "exceeds_floor"  # the debit account cannot cover the amount
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_ALREADY_RESOLVED = "pending_already_resolved"
    EXCEEDS_PENDING = "exceeds_pending_amount"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"


class LedgerRejected(Exception):
    """A transfer was refused; the whole entry it belonged to was rolled back."""

    def __init__(self, rejection: Rejection, transfer_id: str) -> None:
        super().__init__(f"{rejection.value}: transfer {transfer_id}")
        self.rejection = rejection
        self.transfer_id = transfer_id
