"""Double-entry, two-phase, integer ledger. Public surface:"""

from suanli.ledger.model import ASSET_CNY, Balance, Kind, LedgerRejected, Rejection, Transfer
from suanli.ledger.service import Ledger, StoreLedger

__all__ = [
    "ASSET_CNY",
    "Balance",
    "Kind",
    "Ledger",
    "LedgerRejected",
    "Rejection",
    "StoreLedger",
    "Transfer",
]
