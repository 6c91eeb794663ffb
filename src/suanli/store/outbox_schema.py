"""The alerts' outbox (docs/statements.md, *Alerts and webhooks*): its tables and the triggers that fill it.

An alert is written in the same transaction as the ledger movement that caused it: on SQLite by triggers on
``ledger_accounts``, on PostgreSQL by ``suanli_alerts``, which the ledger's ``suanli_move`` calls. The hot
path's Python does not know alerts exist, and a rolled-back movement takes its alert with it. Both look only
when a row's posted debits change (a settlement, a purchase, a forfeit: never a reservation), and write only
for accounts that have alert settings. An event's
id is derived from its cause (the ledger account, what it had been granted, the level crossed), and it is
inserted with ``ON CONFLICT DO NOTHING``, so the same crossing never makes two events. Inserting an event
makes one delivery per webhook of its account that takes its type (a second trigger), in the same
transaction again.

A level is crossed when the posted debits go from below it to at or above it: for a percent level ``p`` of a
grant ``T``, the level is ``ceil(p × T ÷ 100)`` computed as ``T ÷ 100 × p + ceil(T mod 100 × p ÷ 100)``, so that
no product overflows 64 bits. A wallet's level is its posted balance (credits − debits) going below the
account's threshold. On PostgreSQL an entry refused part-way is taken back by updates (``suanli_undo``), not a
rollback: ``suanli_alerts`` then deletes the event the taken-back debit made.
"""

from __future__ import annotations

# Levels of each kind, in percent of the grant (the 50/80/100 % of a budget, 80/100 % of a
# Coding Plan window or a pack).
ALERT_LEVELS = {"budget": (50, 80, 100), "window": (80, 100), "pack": (80, 100)}
_LEVEL_ROWS = ", ".join(f"('{kind}', {p})" for kind, levels in ALERT_LEVELS.items() for p in levels)

_TABLES = """
    CREATE TABLE alert_settings (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id),
        balance_below_nano {int},
        budget_alerts INTEGER NOT NULL DEFAULT 1,
        window_alerts INTEGER NOT NULL DEFAULT 1,
        pack_alerts INTEGER NOT NULL DEFAULT 1,
        pack_expiry_days INTEGER,
        renewal_alerts INTEGER NOT NULL DEFAULT 1,
        updated_at_ms {int} NOT NULL
    );
    CREATE TABLE alert_levels (
        kind TEXT NOT NULL,
        percent INTEGER NOT NULL,
        PRIMARY KEY (kind, percent)
    );
    INSERT INTO alert_levels (kind, percent) VALUES {levels};
    CREATE TABLE alert_events (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT NOT NULL,
        level {int} NOT NULL,
        amount {int} NOT NULL,
        total {int} NOT NULL,
        created_at_ms {int} NOT NULL,
        body TEXT
    );
    CREATE INDEX alert_events_account ON alert_events(account_id, created_at_ms);
    CREATE INDEX alert_events_unprepared ON alert_events(created_at_ms) WHERE body IS NULL;
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at_ms {int} NOT NULL,
        deleted_at_ms {int}
    );
    CREATE INDEX webhooks_account ON webhooks(account_id) WHERE deleted_at_ms IS NULL;
    CREATE TABLE webhook_deliveries (
        event_id TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at_ms {int} NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        updated_at_ms {int} NOT NULL,
        PRIMARY KEY (event_id, webhook_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_at_ms) WHERE state = 'pending';
"""

_SQLITE_NOW = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
_EVENT_COLUMNS = "id, account_id, type, subject, level, amount, total, created_at_ms"


def _level(percent: str) -> str:
    """The posted debits at which ``percent`` of the grant is used (see the module's docstring)."""
    return f"(NEW.credits_posted / 100) * {percent} + ((NEW.credits_posted % 100) * {percent} + 99) / 100"


def _sqlite_percent_trigger(kind: str, prefix: str, table: str, owner_id: str, extra: str = "") -> str:
    """A trigger for a limit or pack (``prefix``): the row of ``table`` whose id is ``owner_id`` (an expression
    of the ledger account's id) owns it, and names its account."""
    event_type = f"{kind}.used"
    level = _level("l.percent")
    return f"""
    CREATE TRIGGER alerts_{kind} AFTER UPDATE OF debits_posted ON ledger_accounts
    WHEN NEW.debits_posted > OLD.debits_posted AND substr(NEW.id, 1, {len(prefix)}) = '{prefix}'
    BEGIN
        INSERT OR IGNORE INTO alert_events ({_EVENT_COLUMNS})
        SELECT 'evt:{event_type}:' || NEW.id || ':' || NEW.credits_posted || ':' || l.percent, o.account_id,
               '{event_type}', NEW.id, l.percent, NEW.debits_posted, NEW.credits_posted, {_SQLITE_NOW}
        FROM {table} o
        JOIN alert_settings s ON s.account_id = o.account_id AND s.{kind}_alerts = 1
        JOIN alert_levels l ON l.kind = '{kind}'
        WHERE o.id = {owner_id} AND OLD.debits_posted < {level} AND NEW.debits_posted >= {level}{extra};
    END
"""


def _between_colons(prefix: str) -> str:
    """The id between ``prefix`` and the next colon of a ledger account's id (SQLite)."""
    rest = f"substr(NEW.id, {len(prefix) + 1})"
    return f"substr({rest}, 1, instr({rest}, ':') - 1)"


_PERCENT_TRIGGERS = ";".join(
    (
        _sqlite_percent_trigger("budget", "budget:", "budgets", _between_colons("budget:")),
        _sqlite_percent_trigger("window", "allow:", "subscriptions", _between_colons("allow:")),
        # A forfeit at expiry is no use: a pack past its expiry makes no alert.
        _sqlite_percent_trigger("pack", "pack:", "packs", "substr(NEW.id, 6)", f" AND o.expires_at_ms > {_SQLITE_NOW}"),
    )
)

SQLITE_ALERTS_MIGRATION = (
    _TABLES.format(int="INTEGER", levels=_LEVEL_ROWS)
    + f"""
    CREATE TRIGGER alerts_wallet AFTER UPDATE OF debits_posted ON ledger_accounts
    WHEN NEW.debits_posted > OLD.debits_posted AND substr(NEW.id, 1, 7) = 'wallet:'
    BEGIN
        INSERT OR IGNORE INTO alert_events ({_EVENT_COLUMNS})
        SELECT 'evt:balance.below:' || NEW.id || ':' || NEW.credits_posted, s.account_id, 'balance.below', NEW.id,
               s.balance_below_nano, NEW.credits_posted - NEW.debits_posted, NEW.credits_posted, {_SQLITE_NOW}
        FROM alert_settings s
        WHERE s.account_id = substr(NEW.id, 8) AND s.balance_below_nano IS NOT NULL
            AND OLD.credits_posted - OLD.debits_posted >= s.balance_below_nano
            AND NEW.credits_posted - NEW.debits_posted < s.balance_below_nano;
    END;
    {_PERCENT_TRIGGERS};
    CREATE TRIGGER alert_events_deliver AFTER INSERT ON alert_events
    BEGIN
        INSERT INTO webhook_deliveries (event_id, webhook_id, next_at_ms, updated_at_ms)
        SELECT NEW.id, w.id, NEW.created_at_ms, NEW.created_at_ms FROM webhooks w
        WHERE w.account_id = NEW.account_id AND w.deleted_at_ms IS NULL
            AND (w.events = ',*,' OR instr(w.events, ',' || NEW.type || ',') > 0);
    END;
"""
)

# PostgreSQL: one function for every kind, called by ``suanli_move`` (store/pg_batch.sql) when a customer
# row's posted debits changed, and only for a wallet whose account has alert settings (its first, cheap test),
# so a reservation, and a call of an account without alerts, costs the hot path nothing but that test. It was
# a row trigger first: the trigger's own machinery on every settlement measured about a tenth of the ledger's
# throughput with four workers (docs/performance.md).
PG_ALERTS_FUNCTION = """
    CREATE OR REPLACE FUNCTION suanli_alerts(p_id TEXT, old_posted BIGINT, new_posted BIGINT, credits BIGINT)
    RETURNS VOID LANGUAGE plpgsql AS $$
    DECLARE
        v_kind TEXT;
        owner_account TEXT;
        on_for_kind BOOLEAN;
        now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        s alert_settings%ROWTYPE;
        old_used BIGINT := least(old_posted, new_posted);
        new_used BIGINT := greatest(old_posted, new_posted);
        ids TEXT[];
    BEGIN
        IF left(p_id, 7) = 'wallet:' THEN
            v_kind := 'wallet';
            owner_account := substr(p_id, 8);
        ELSIF left(p_id, 7) = 'budget:' THEN
            v_kind := 'budget';
            SELECT account_id INTO owner_account FROM budgets WHERE id = split_part(p_id, ':', 2);
        ELSIF left(p_id, 6) = 'allow:' THEN
            v_kind := 'window';
            SELECT account_id INTO owner_account FROM subscriptions WHERE id = split_part(p_id, ':', 2);
        ELSIF left(p_id, 5) = 'pack:' THEN
            v_kind := 'pack';
            SELECT account_id INTO owner_account FROM packs WHERE id = substr(p_id, 6) AND expires_at_ms > now_ms;
        ELSE
            RETURN;
        END IF;
        SELECT * INTO s FROM alert_settings WHERE account_id = owner_account;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        IF v_kind = 'wallet' THEN
            IF s.balance_below_nano IS NULL OR credits - new_used >= s.balance_below_nano
                    OR credits - old_used < s.balance_below_nano THEN
                RETURN;
            END IF;
            ids := ARRAY['evt:balance.below:' || p_id || ':' || credits];
            IF new_posted > old_posted THEN
                INSERT INTO alert_events (id, account_id, type, subject, level, amount, total, created_at_ms)
                VALUES (ids[1], owner_account, 'balance.below', p_id, s.balance_below_nano, credits - new_posted,
                        credits, now_ms)
                ON CONFLICT DO NOTHING;
                RETURN;
            END IF;
        ELSE
            on_for_kind := CASE v_kind WHEN 'budget' THEN s.budget_alerts = 1 WHEN 'window' THEN s.window_alerts = 1
                                     ELSE s.pack_alerts = 1 END;
            IF NOT on_for_kind THEN
                RETURN;
            END IF;
            IF new_posted > old_posted THEN
                INSERT INTO alert_events (id, account_id, type, subject, level, amount, total, created_at_ms)
                SELECT 'evt:' || v_kind || '.used:' || p_id || ':' || credits || ':' || l.percent,
                       owner_account, v_kind || '.used', p_id, l.percent, new_posted, credits, now_ms
                FROM alert_levels l
                WHERE l.kind = v_kind
                    AND old_used < suanli_alert_level(credits, l.percent)
                    AND new_used >= suanli_alert_level(credits, l.percent)
                ON CONFLICT DO NOTHING;
                RETURN;
            END IF;
            SELECT array_agg('evt:' || v_kind || '.used:' || p_id || ':' || credits || ':' || l.percent)
            INTO ids FROM alert_levels l
            WHERE l.kind = v_kind
                AND old_used < suanli_alert_level(credits, l.percent)
                AND new_used >= suanli_alert_level(credits, l.percent);
        END IF;
        -- Posted debits went down: an entry refused part-way took its debit back (suanli_undo), and with it the
        -- crossing that debit made.
        IF ids IS NOT NULL THEN
            DELETE FROM webhook_deliveries WHERE event_id = ANY (ids);
            DELETE FROM alert_events WHERE id = ANY (ids);
        END IF;
    END $$;
"""

PG_ALERTS_MIGRATION = (
    _TABLES.format(int="BIGINT", levels=_LEVEL_ROWS)
    + """
    -- The posted debits at which pct percent of total is used: ceil(pct × total ÷ 100), without overflow.
    CREATE FUNCTION suanli_alert_level(total BIGINT, pct INTEGER) RETURNS BIGINT LANGUAGE sql IMMUTABLE AS $$
        SELECT (total / 100) * pct + ((total % 100) * pct + 99) / 100
    $$;
    CREATE FUNCTION suanli_alert_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO webhook_deliveries (event_id, webhook_id, next_at_ms, updated_at_ms)
        SELECT NEW.id, w.id, NEW.created_at_ms, NEW.created_at_ms FROM webhooks w
        WHERE w.account_id = NEW.account_id AND w.deleted_at_ms IS NULL
            AND (w.events = ',*,' OR strpos(w.events, ',' || NEW.type || ',') > 0);
        RETURN NULL;
    END $$;
    CREATE TRIGGER alert_events_deliver AFTER INSERT ON alert_events FOR EACH ROW
        EXECUTE FUNCTION suanli_alert_deliveries();
"""
)

# The ledger's row trigger of the first version, replaced by the function above (a database made before it
# has the trigger).
PG_ALERTS_ON_MOVE_MIGRATION = (
    """
    DROP TRIGGER IF EXISTS alerts_ledger ON ledger_accounts;
    DROP FUNCTION IF EXISTS suanli_alerts();
"""
    + PG_ALERTS_FUNCTION
)
