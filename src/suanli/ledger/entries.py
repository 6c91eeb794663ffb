"""The ledger entries of a request's life, built in one place so every path moves money the same way."""

from __future__ import annotations

from suanli.errors import invariant
from suanli.ledger import names
from suanli.ledger.model import ASSET_CNY, Kind, Transfer


def reservation(request_id: str, account_id: str, amount_nano: int, memo: str = "") -> Transfer:
    return Transfer(
        f"{request_id}.reserve", Kind.PENDING, names.wallet(account_id), names.ESCROW, ASSET_CNY, amount_nano, memo=memo
    )


def settlement(request_id: str, pending: Transfer, operator: str, cost_nano: int) -> list[Transfer]:
    """Post the cost from the reservation into escrow and pay it on to the operator; or void it all."""
    invariant(0 <= cost_nano <= pending.amount, "a settlement exceeds its reservation")
    if cost_nano == 0:
        return [
            Transfer(
                f"{request_id}.settle",
                Kind.VOID,
                pending.debit_account,
                pending.credit_account,
                ASSET_CNY,
                0,
                pending.id,
            )
        ]
    return [
        Transfer(
            f"{request_id}.settle",
            Kind.POST,
            pending.debit_account,
            pending.credit_account,
            ASSET_CNY,
            cost_nano,
            pending.id,
        ),
        Transfer(f"{request_id}.pay", Kind.POSTED, names.ESCROW, names.sales(operator), ASSET_CNY, cost_nano),
    ]
