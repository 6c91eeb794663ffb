"""Enterprise contracts: postpaid up to a credit limit, with graduated volume tiers over the month.

The credit limit is the wallet's floor (``-credit_limit``): the account may owe up to it, and the same
conditional update that keeps a prepaid wallet at zero keeps a postpaid one above its limit. The volume
tiers are graduated, like tax brackets: of the month's spend at list prices, the part above each
threshold is charged at that tier's percent. Each settlement is charged at list price as usual, and in
the same transaction a rebate for the difference goes back to the wallet from the platform's discount
account, so the operator is still paid the list price and every transfer keeps its plain meaning. The
month's volume is itself a ledger account (asset ``VOL``), so the tiers never need a scan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.economy import windows
from suanli.errors import BadRequest
from suanli.ledger import ASSET_CNY, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, open_account, read_balance
from suanli.limits import AMOUNT_NANO_MAX
from suanli.money import MoneyFormatError, cny_to_nano, nano_to_cny
from suanli.store import cluster
from suanli.store.conn import Conn
from suanli.store.db import now_ms
from suanli.store.usage import UsageEvent

VOLUME_ASSET = "VOL"
VOLUME_SOURCE = "platform:volume"
DISCOUNTS = "platform:discounts"  # what the platform gives back under contracts
TIERS_MAX = 10
CREDIT_LIMIT_NANO_MAX = AMOUNT_NANO_MAX


@dataclass(frozen=True, slots=True)
class Tier:
    above_nano: int  # the month's list-price spend above which this percent applies
    percent: int  # 1..100


@dataclass(frozen=True, slots=True)
class Contract:
    account_id: str
    credit_limit_nano: int
    tiers: tuple[Tier, ...]

    def public(self) -> dict[str, Any]:
        return {
            "credit_limit": nano_to_cny(self.credit_limit_nano),
            "tiers": [{"above": nano_to_cny(t.above_nano), "percent": t.percent} for t in self.tiers],
        }


def volume_account(account_id: str, month_start_ms: int) -> str:
    return f"volume:{account_id}:{month_start_ms}"


def parse_tiers(spec: Any) -> tuple[Tier, ...]:
    """``[{"above": "0", "percent": 100}, {"above": "10000", "percent": 90}, ...]``: thresholds in CNY,
    rising, the first at 0; percents from 1 to 100."""
    if not isinstance(spec, list) or not 0 < len(spec) <= TIERS_MAX:
        raise BadRequest(f"'tiers' is a list of 1 to {TIERS_MAX} {{above, percent}} objects.", param="tiers")
    tiers: list[Tier] = []
    for entry in spec:
        above, percent = (entry.get("above"), entry.get("percent")) if isinstance(entry, Mapping) else (None, None)
        try:
            above_nano = cny_to_nano(above) if isinstance(above, str) else -1
        except MoneyFormatError:
            above_nano = -1
        bad_above = not 0 <= above_nano <= AMOUNT_NANO_MAX
        if bad_above or isinstance(percent, bool) or not isinstance(percent, int) or not 0 < percent <= 100:
            raise BadRequest('Each tier is {"above": "CNY as a string", "percent": 1..100}.', param="tiers")
        if tiers and above_nano <= tiers[-1].above_nano:
            raise BadRequest("The tiers' thresholds must rise.", param="tiers")
        tiers.append(Tier(above_nano, percent))
    if tiers[0].above_nano != 0:
        raise BadRequest('The first tier starts at "0".', param="tiers")
    return tuple(tiers)


def graduated(tiers: Sequence[Tier], volume_nano: int) -> int:
    """What ``volume_nano`` of list-price spend costs under the tiers, rounded down."""
    total = 0
    for index, tier in enumerate(tiers):
        top = tiers[index + 1].above_nano if index + 1 < len(tiers) else None
        portion = max(0, (volume_nano if top is None else min(volume_nano, top)) - tier.above_nano)
        total += portion * tier.percent
    return total // 100


def rebate_nano(tiers: Sequence[Tier], before_nano: int, cost_nano: int) -> int:
    """The part of a charge of ``cost_nano`` at list price that the tiers give back, with ``before_nano``
    spent this month already."""
    return cost_nano - (graduated(tiers, before_nano + cost_nano) - graduated(tiers, before_nano))


def find_contract(conn: Conn, account_id: str) -> Contract | None:
    row = conn.execute("SELECT credit_limit_nano, tiers FROM contracts WHERE account_id = ?", (account_id,)).fetchone()
    if row is None:
        return None
    tiers = tuple(Tier(t["above_nano"], t["percent"]) for t in orjson.loads(row[1]))
    return Contract(account_id, row[0], tiers)


def save_contract(conn: Conn, contract: Contract) -> None:
    tiers = orjson.dumps([{"above_nano": t.above_nano, "percent": t.percent} for t in contract.tiers]).decode()
    now = now_ms()
    conn.execute(
        "INSERT INTO contracts (account_id, credit_limit_nano, tiers, created_at_ms, updated_at_ms) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET credit_limit_nano = excluded.credit_limit_nano, "
        "tiers = excluded.tiers, updated_at_ms = excluded.updated_at_ms",
        (contract.account_id, contract.credit_limit_nano, tiers, now, now),
    )


def month_volume(conn: Conn, account_id: str, at_ms: int, zone: ZoneInfo) -> int:
    start, _ = windows.calendar_month(at_ms, zone)
    balance = read_balance(conn, volume_account(account_id, start))
    return balance.credits_posted if balance else 0


def rebate(conn: Conn, event: UsageEvent, *, paid_nano: int, contract: Contract, zone: ZoneInfo) -> UsageEvent:
    """In the settling transaction of a contract account's call, after its transfers: add what the wallet
    paid to the month's volume, give back what the tiers take off it, and say so in the usage event. The
    month's volume is read then posted: on PostgreSQL the account's lock makes that serial."""
    cluster.serialize(conn, cluster.account_lock(event.account_id))
    start, _ = windows.calendar_month(event.created_at_ms, zone)
    account = volume_account(event.account_id, start)
    open_account(conn, VOLUME_SOURCE, VOLUME_ASSET, None)
    open_account(conn, account, VOLUME_ASSET, None)
    open_account(conn, DISCOUNTS, ASSET_CNY, None)
    balance = read_balance(conn, account)
    before = balance.credits_posted if balance else 0
    given_back = rebate_nano(contract.tiers, before, paid_nano)
    entry = [Transfer(f"{event.request_id}.volume", Kind.POSTED, VOLUME_SOURCE, account, VOLUME_ASSET, paid_nano)]
    if given_back:
        wallet = ledger_names.wallet(event.account_id)
        entry.append(
            Transfer(
                f"{event.request_id}.rebate", Kind.POSTED, DISCOUNTS, wallet, ASSET_CNY, given_back, memo="volume tier"
            )
        )
    apply_entry(conn, entry, event.request_id)
    legs = orjson.loads(event.funding) if event.funding else []
    legs.append({"source": "contract", "list_nano": paid_nano, "rebate_nano": given_back, "month_before_nano": before})
    return replace(event, funding=orjson.dumps(legs).decode())
