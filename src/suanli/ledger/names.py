"""Names of the ledger accounts the platform keeps. A customer's wallet is one ledger account per asset."""

from __future__ import annotations

TOPUP_SOURCE = "platform:topup"  # money arriving from outside (payments); no floor, goes negative
ESCROW = "platform:escrow"  # reservations land here, and settlements pay on from here to the operator
UNCHARGED = "platform:uncharged"  # pays operators what no customer balance could: the platform's recorded loss
ESCROW_FLOOR_NANO = 0  # escrow only ever passes money on: its posted balance is always back to zero
WALLET_FLOOR_NANO = 0  # a pay-as-you-go wallet may never go below zero


def wallet(account_id: str) -> str:
    return f"wallet:{account_id}"


def sales(operator: str) -> str:
    """Where a customer's payment for an operator's tokens lands."""
    return f"sales:{operator}"
