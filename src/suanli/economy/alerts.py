"""An account's alerts: its settings, the events the outbox holds, and the bodies its webhooks receive.

Most events are written by triggers in the transaction of the ledger movement that caused them
(store/outbox_schema.py); the two that no ledger movement causes are written here, in the job that finds
them: a subscription's renewal the wallet could not pay (``renewal_failed``, in the renewal's transaction),
and a pack expiring within the account's notice (``expiring_packs_job``, a sweep job). An event's body is
fixed once (``prepare_job``, before its first delivery) so that every retry sends the same bytes, and the
balance alert's body carries the forecast's run-out date as of the crossing (the balance the event recorded,
the 7-day rate ending at its ``created_at_ms``), so it does not depend on when, or by whom, it was fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from suanli.economy import names
from suanli.economy import store as econ
from suanli.economy.forecast import balance_run_out
from suanli.errors import BadRequest
from suanli.ledger.sqlite import read_balance
from suanli.limits import ALERT_PACK_EXPIRY_DAYS_MAX, ALERTS_LISTED_MAX, AMOUNT_NANO_MAX, WEBHOOK_PREPARE_BATCH_MAX
from suanli.metering.periods import iso
from suanli.money import MoneyFormatError, cny_to_nano, nano_to_cny
from suanli.store.accounts import find_account
from suanli.store.conn import Conn
from suanli.store.db import now_ms

DAY_MS = 86_400_000
EVENT_TYPES = (
    "balance.below",
    "budget.used",
    "window.used",
    "pack.used",
    "pack.expiring",
    "subscription.renewal_failed",
)
_SWITCHES = ("budget_alerts", "window_alerts", "pack_alerts", "renewal_alerts")
_SETTINGS_COLUMNS = "balance_below_nano, budget_alerts, window_alerts, pack_alerts, pack_expiry_days, renewal_alerts"
_EVENT_COLUMNS = "id, account_id, type, subject, level, amount, total, created_at_ms"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    balance_below_nano: int | None = None  # no balance alert unless the account sets a threshold
    budget_alerts: bool = True
    window_alerts: bool = True
    pack_alerts: bool = True
    pack_expiry_days: int | None = 3
    renewal_alerts: bool = True

    def public(self) -> dict[str, Any]:
        below = self.balance_below_nano
        return {
            "object": "alert_settings",
            "balance_below": None if below is None else nano_to_cny(below),
            "balance_below_nano": below,
            "budget_alerts": self.budget_alerts,
            "window_alerts": self.window_alerts,
            "pack_alerts": self.pack_alerts,
            "pack_expiry_days": self.pack_expiry_days,
            "renewal_alerts": self.renewal_alerts,
        }


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    account_id: str
    type: str
    subject: str  # the ledger account (or subscription) it is about
    level: int  # the percent crossed, the balance threshold, the notice in days, the period's start
    amount: int  # used, or the balance, at the crossing
    total: int  # what had been granted, at the crossing
    created_at_ms: int


def parse_settings(body: Mapping[str, Any], current: AlertSettings) -> AlertSettings:
    """The settings a PUT asks for: the fields it names replace the current ones."""
    unknown = set(body) - {"balance_below", "pack_expiry_days", *_SWITCHES}
    if unknown:
        raise BadRequest(f"Unknown alert setting '{sorted(unknown)[0]}'.", param=sorted(unknown)[0])
    values = {name: getattr(current, name) for name in AlertSettings.__slots__}
    if "balance_below" in body:
        values["balance_below_nano"] = _threshold(body["balance_below"])
    if "pack_expiry_days" in body:
        days = body["pack_expiry_days"]
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= ALERT_PACK_EXPIRY_DAYS_MAX
        ):
            raise BadRequest(
                f"'pack_expiry_days' is null or a whole number from 1 to {ALERT_PACK_EXPIRY_DAYS_MAX}.",
                param="pack_expiry_days",
            )
        values["pack_expiry_days"] = days
    for name in _SWITCHES:
        if name in body:
            if not isinstance(body[name], bool):
                raise BadRequest(f"'{name}' must be true or false.", param=name)
            values[name] = body[name]
    return AlertSettings(**values)


def _threshold(value: Any) -> int | None:
    if value is None:
        return None
    try:
        nano = cny_to_nano(value) if isinstance(value, str) else -1
    except MoneyFormatError:
        nano = -1
    if not 0 < nano <= AMOUNT_NANO_MAX:
        raise BadRequest(
            "'balance_below' is null or CNY as a decimal string above 0, e.g. \"10\".", param="balance_below"
        )
    return nano


def read_settings(conn: Conn, account_id: str) -> AlertSettings | None:
    row = conn.execute(f"SELECT {_SETTINGS_COLUMNS} FROM alert_settings WHERE account_id = ?", (account_id,)).fetchone()
    if row is None:
        return None
    return AlertSettings(row[0], bool(row[1]), bool(row[2]), bool(row[3]), row[4], bool(row[5]))


def save_settings(conn: Conn, account_id: str, s: AlertSettings) -> None:
    """Insert or replace the account's settings: from now on its ledger movements can make alerts."""
    values = (
        s.balance_below_nano,
        int(s.budget_alerts),
        int(s.window_alerts),
        int(s.pack_alerts),
        s.pack_expiry_days,
        int(s.renewal_alerts),
        now_ms(),
    )
    conn.execute(
        f"INSERT INTO alert_settings (account_id, {_SETTINGS_COLUMNS}, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (account_id) DO UPDATE SET balance_below_nano = excluded.balance_below_nano, "
        "budget_alerts = excluded.budget_alerts, window_alerts = excluded.window_alerts, "
        "pack_alerts = excluded.pack_alerts, pack_expiry_days = excluded.pack_expiry_days, "
        "renewal_alerts = excluded.renewal_alerts, updated_at_ms = excluded.updated_at_ms",
        (account_id, *values),
    )


def put_settings_job(account_ref: str, body: Mapping[str, Any]) -> Callable[[Conn], AlertSettings]:
    def job(conn: Conn) -> AlertSettings:
        account = find_account(conn, account_ref)
        settings = parse_settings(body, read_settings(conn, account.id) or AlertSettings())
        save_settings(conn, account.id, settings)
        return settings

    return job


def ensure_settings(conn: Conn, account_id: str) -> None:
    """The default settings, if the account has none yet (its first webhook turns alerts on)."""
    if read_settings(conn, account_id) is None:
        save_settings(conn, account_id, AlertSettings())


def insert_event(conn: Conn, event: Event) -> bool:
    """Write an event once (its id is its cause); its deliveries are made by the outbox's trigger."""
    cursor = conn.execute(
        f"INSERT INTO alert_events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            event.id,
            event.account_id,
            event.type,
            event.subject,
            event.level,
            event.amount,
            event.total,
            event.created_at_ms,
        ),
    )
    return bool(cursor.rowcount == 1)


def renewal_failed(conn: Conn, sub: econ.Subscription, period_start_ms: int, price_nano: int, now: int) -> None:
    """The wallet could not pay the subscription's next month (called in the renewal's transaction)."""
    settings = read_settings(conn, sub.account_id)
    if settings is None or not settings.renewal_alerts:
        return
    event_id = f"evt:subscription.renewal_failed:{sub.id}:{period_start_ms}"
    insert_event(
        conn,
        Event(event_id, sub.account_id, "subscription.renewal_failed", sub.id, period_start_ms, price_nano, 0, now),
    )


def expiring_packs_job(at_ms: int | None = None) -> Callable[[Conn], int]:
    """An event for each pack with tokens left that expires within its account's notice (once a pack)."""

    def job(conn: Conn) -> int:
        now = now_ms() if at_ms is None else at_ms
        rows = conn.execute(
            "SELECT p.id, p.account_id, s.pack_expiry_days, p.expires_at_ms FROM packs p "
            "JOIN alert_settings s ON s.account_id = p.account_id WHERE s.pack_expiry_days IS NOT NULL "
            "AND p.forfeited_at_ms IS NULL AND p.expires_at_ms > ? AND p.expires_at_ms <= ? + s.pack_expiry_days * ?",
            (now, now, DAY_MS),
        ).fetchall()
        made = 0
        for pack_id, account_id, days, expires_at_ms in rows:
            balance = read_balance(conn, names.pack(pack_id))
            if balance is None or balance.available <= 0:
                continue
            event = Event(
                f"evt:pack.expiring:{pack_id}",
                account_id,
                "pack.expiring",
                names.pack(pack_id),
                days,
                balance.available,
                expires_at_ms,
                now,
            )
            made += insert_event(conn, event)
        return made

    return job


def _event(row: Any) -> Event:
    return Event(*tuple(row))


def body_of(event: Event, data: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """What a webhook receives: the same for every delivery of the event."""
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "created_at": iso(event.created_at_ms, zone),
        "created_at_ms": event.created_at_ms,
        "account": event.account_id,
        "data": data,
    }


def event_data(conn: Conn, event: Event, zone: ZoneInfo) -> dict[str, Any]:
    """The facts of an event as of the event, not of when they are read, in the API's units (CNY as decimal
    strings beside their nano integers)."""
    if event.type == "balance.below":
        run_out = balance_run_out(conn, event.account_id, event.amount, event.created_at_ms)
        return {
            "threshold": nano_to_cny(event.level),
            "threshold_nano": event.level,
            "balance": nano_to_cny(event.amount),
            "balance_nano": event.amount,
            "forecast": run_out.fields(zone),
        }
    if event.type == "subscription.renewal_failed":
        return {
            "subscription": event.subject,
            "period_start_ms": event.level,
            "price": nano_to_cny(event.amount),
            "price_nano": event.amount,
        }
    if event.type == "pack.expiring":
        pack_id = event.subject.removeprefix("pack:")
        return {
            "pack": pack_id,
            "notice_days": event.level,
            "available_tokens": event.amount,
            "expires_at": iso(event.total, zone),
            "expires_at_ms": event.total,
        }
    return _used_data(conn, event)


def _used_data(conn: Conn, event: Event) -> dict[str, Any]:
    """A budget, a window or a pack reached ``level`` percent of what it was granted."""
    data: dict[str, Any] = {"percent": event.level, "used": event.amount, "granted": event.total}
    parts = event.subject.split(":")
    if event.type == "budget.used":
        budget = conn.execute("SELECT unit, period FROM budgets WHERE id = ?", (parts[1],)).fetchone()
        unit = budget[0] if budget else "cny"
        data.update(budget=parts[1], period=budget[1] if budget else None, period_start_ms=int(parts[2]), unit=unit)
        if unit == "cny":
            data.update(
                used=nano_to_cny(event.amount),
                used_nano=event.amount,
                granted=nano_to_cny(event.total),
                granted_nano=event.total,
            )
    elif event.type == "window.used":
        data.update(subscription=parts[1], window=parts[2], unit=parts[3], window_start_ms=int(parts[4]))
    else:
        data.update(pack=parts[1], unit="tokens")
    return data


def prepare_job(zone: ZoneInfo) -> Callable[[Conn], int]:
    """Fix the body of the events written since the last round (a bounded batch)."""

    def job(conn: Conn) -> int:
        rows = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE body IS NULL ORDER BY created_at_ms, id LIMIT ?",
            (WEBHOOK_PREPARE_BATCH_MAX,),
        ).fetchall()
        for row in rows:
            event = _event(row)
            body = body_of(event, event_data(conn, event, zone), zone)
            conn.execute(  # another worker may have fixed it meanwhile: the first body stands
                "UPDATE alert_events SET body = ? WHERE id = ? AND body IS NULL",
                (orjson.dumps(body).decode(), event.id),
            )
        return len(rows)

    return job


def list_alerts(conn: Conn, account_id: str, zone: ZoneInfo, limit: int = ALERTS_LISTED_MAX) -> list[dict[str, Any]]:
    """The account's events, newest first, each with its body and every delivery's state."""
    rows = conn.execute(
        f"SELECT {_EVENT_COLUMNS}, body FROM alert_events WHERE account_id = ? "
        "ORDER BY created_at_ms DESC, id DESC LIMIT ?",
        (account_id, limit),
    ).fetchall()
    deliveries = _deliveries(conn, [row[0] for row in rows])
    listed = []
    for row in rows:
        event = _event(row[:8])
        body = orjson.loads(row[8]) if row[8] else body_of(event, {}, zone)
        listed.append({**body, "prepared": row[8] is not None, "deliveries": deliveries.get(event.id, [])})
    return listed


def _deliveries(conn: Conn, event_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    if not event_ids:
        return {}
    marks = ", ".join("?" for _ in event_ids)
    rows = conn.execute(
        "SELECT event_id, webhook_id, state, attempts, next_at_ms, last_status, last_error, updated_at_ms "
        f"FROM webhook_deliveries WHERE event_id IN ({marks}) ORDER BY webhook_id",
        event_ids,
    ).fetchall()
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        found.setdefault(r[0], []).append(
            {
                "webhook": r[1],
                "state": r[2],
                "attempts": r[3],
                "next_attempt_at_ms": r[4] if r[2] == "pending" else None,
                "last_status": r[5],
                "last_error": r[6],
                "updated_at_ms": r[7],
            }
        )
    return found
