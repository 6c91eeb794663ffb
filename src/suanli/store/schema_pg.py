"""PostgreSQL's schema: a baseline equal to SQLite's migrations 1-14 (``schema.MIGRATIONS``), then the
changes made since, each added to both lists.

Integers are ``BIGINT`` (SQLite's INTEGER is 64-bit; PostgreSQL's is 32), blobs ``BYTEA``; booleans stay
0/1 integers so that one set of statements serves both stores. Lease times are the database's own clock
(``timestamptz``), never a worker's.
"""

from __future__ import annotations

from importlib.resources import files

from suanli.store.outbox_schema import PG_ALERTS_MIGRATION, PG_ALERTS_ON_MOVE_MIGRATION
from suanli.store.schema import (
    CUSTOMER_TRANSFERS_MIGRATION,
    OPERATOR_SETTLEMENTS_MIGRATION,
    OWNER_MIGRATION,
    PRICE_WINDOW_MIGRATION,
    STATEMENTS_MIGRATION,
    TOPUPS_MIGRATION,
)

PG_BASELINE = """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        tier TEXT NOT NULL CHECK (tier IN ('enterprise', 'household')),
        created_at_ms BIGINT NOT NULL,
        routing TEXT,
        funding TEXT,
        has_plans BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        hash BYTEA NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        models TEXT,
        created_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT,
        revoked_at_ms BIGINT
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE ledger_accounts (
        id TEXT PRIMARY KEY,
        asset TEXT NOT NULL,
        floor BIGINT,
        debits_pending BIGINT NOT NULL DEFAULT 0,
        debits_posted BIGINT NOT NULL DEFAULT 0,
        credits_pending BIGINT NOT NULL DEFAULT 0,
        credits_posted BIGINT NOT NULL DEFAULT 0,
        created_at_ms BIGINT NOT NULL
    );
    CREATE TABLE transfers (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('posted', 'pending', 'post', 'void')),
        debit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
        credit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
        asset TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount >= 0),
        pending_id TEXT REFERENCES transfers(id),
        memo TEXT NOT NULL DEFAULT '',
        created_at_ms BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX transfers_resolution ON transfers(pending_id) WHERE pending_id IS NOT NULL;
    CREATE TABLE open_pending (
        transfer_id TEXT PRIMARY KEY REFERENCES transfers(id),
        request_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE INDEX open_pending_request ON open_pending(request_id);
    CREATE TABLE usage_events (
        request_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        operator TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        upstream_model TEXT NOT NULL,
        stream BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        cached_input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        reasoning_tokens BIGINT NOT NULL,
        estimated BIGINT NOT NULL,
        price_input_nano BIGINT NOT NULL,
        price_cached_input_nano BIGINT NOT NULL,
        price_output_nano BIGINT NOT NULL,
        price_reasoning_nano BIGINT NOT NULL,
        reserved_nano BIGINT NOT NULL,
        cost_nano BIGINT NOT NULL,
        uncharged_nano BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        http_status BIGINT NOT NULL,
        error_code TEXT NOT NULL DEFAULT '',
        latency_ms BIGINT NOT NULL,
        ttft_ms BIGINT,
        created_at_ms BIGINT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 1,
        cache_write_tokens BIGINT NOT NULL DEFAULT 0,
        price_cache_write_nano BIGINT NOT NULL DEFAULT 0,
        funding TEXT
    );
    CREATE INDEX usage_events_account ON usage_events(account_id, created_at_ms);
    CREATE TABLE upstream_attempts (
        request_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        operator TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        http_status BIGINT NOT NULL,
        latency_ms BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (request_id, attempt)
    );
    CREATE INDEX upstream_attempts_operator ON upstream_attempts(operator, created_at_ms);
    CREATE TABLE products (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        listed_by TEXT NOT NULL,
        listed_at_ms BIGINT NOT NULL,
        retired_at_ms BIGINT
    );
    CREATE TABLE packs (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        product_id TEXT NOT NULL REFERENCES products(id),
        tokens BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL,
        origin TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        forfeited_at_ms BIGINT
    );
    CREATE INDEX packs_account ON packs(account_id, expires_at_ms);
    CREATE INDEX packs_expiry ON packs(expires_at_ms) WHERE forfeited_at_ms IS NULL;
    CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        product_id TEXT NOT NULL REFERENCES products(id),
        anchor_ms BIGINT NOT NULL,
        period_start_ms BIGINT NOT NULL,
        period_end_ms BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        ended_at_ms BIGINT
    );
    CREATE UNIQUE INDEX subscriptions_current ON subscriptions(account_id) WHERE ended_at_ms IS NULL;
    CREATE TABLE allowance_windows (
        subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
        window_name TEXT NOT NULL,
        unit TEXT NOT NULL,
        start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL,
        amount BIGINT NOT NULL,
        PRIMARY KEY (subscription_id, window_name, unit, start_ms)
    );
    CREATE TABLE budgets (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        key_id TEXT REFERENCES api_keys(id),
        period TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
        unit TEXT NOT NULL CHECK (unit IN ('cny', 'tokens')),
        amount BIGINT NOT NULL CHECK (amount > 0),
        created_at_ms BIGINT NOT NULL,
        removed_at_ms BIGINT
    );
    CREATE INDEX budgets_account ON budgets(account_id) WHERE removed_at_ms IS NULL;
    CREATE TABLE account_trust (
        account_id TEXT NOT NULL REFERENCES accounts(id),
        trusted_id TEXT NOT NULL REFERENCES accounts(id),
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (account_id, trusted_id)
    );
    CREATE TABLE token_transfers (
        id TEXT PRIMARY KEY,
        from_pack TEXT NOT NULL REFERENCES packs(id),
        to_pack TEXT NOT NULL REFERENCES packs(id),
        tokens BIGINT NOT NULL,
        memo TEXT NOT NULL,
        made_by TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE TABLE contracts (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id),
        credit_limit_nano BIGINT NOT NULL CHECK (credit_limit_nano >= 0),
        tiers TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE TABLE price_versions (
        offer_id TEXT NOT NULL,
        effective_from_ms BIGINT NOT NULL,
        spec TEXT NOT NULL,
        set_by TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (offer_id, effective_from_ms)
    );
    CREATE TABLE admin_keys (
        id TEXT PRIMARY KEY,
        hash BYTEA NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('configured', 'generated', 'created')),
        created_at_ms BIGINT NOT NULL,
        revoked_at_ms BIGINT
    );
"""

# Per-process leases (docs/scaling.md): a worker renews ``expires_at`` every few seconds; another worker
# that sees it expired for a whole TTL reclaims it (``seen_expired_at``: the first sighting) and resolves
# the reservations it owned.
PG_WORKERS = """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at TIMESTAMPTZ NOT NULL,
        seen_expired_at TIMESTAMPTZ,
        ended_at TIMESTAMPTZ
    );
    CREATE INDEX workers_live ON workers(expires_at) WHERE ended_at IS NULL;
"""

# The ledger's rules as one server-side function (ledger/postgres.py): an entry of transfers is applied, all
# or nothing, in one round trip, with the same checks and rejections as ledger/sqlite.py. Platform accounts
# (``platform:``, ``sales:``, ``plans:``) that every call credits or debits keep a row of sums per writer
# (``ledger_account_slots``), so that several workers never queue on one row lock nor deadlock on it; an
# account's balance is its row plus its slots. Those accounts' floors are checked by ``ledger verify``,
# not per transfer (only escrow has one, and it passes every amount on).
PG_LEDGER = (files("suanli.store") / "pg_ledger.sql").read_text(encoding="utf-8")
# The hot path's calls into it (an entry, a reservation, a settlement, a writer's batch), taking JSONB.
PG_BATCH = (files("suanli.store") / "pg_batch.sql").read_text(encoding="utf-8")
# The batch's two common jobs, a reservation and its settlement, flattened: a few statements inline each, and the
# platform accounts' slot rows written once per batch (pg_flat.sql).
PG_FLAT = (files("suanli.store") / "pg_flat.sql").read_text(encoding="utf-8")

# Console sessions: SQLite's migration of the same name (schema.py), in PostgreSQL's types.
PG_CONSOLE_SESSIONS = """
    CREATE TABLE console_sessions (
        id_hash BYTEA PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('account', 'admin')),
        key_id TEXT NOT NULL,
        account_id TEXT,
        csrf_token TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL,
        ended_at_ms BIGINT
    );
    CREATE INDEX console_sessions_expiry ON console_sessions(expires_at_ms);
"""

# Ledger account ids compare byte by byte, as SQLite's do, whatever the database's locale: statements find a
# budget's windows as a range of its id prefix (economy/statement_ledger.py ``accounts_between``), which a
# collation that orders by words would not keep together. (Transfers have no foreign key to these ids: see
# pg_ledger.sql.)
PG_BYTE_ORDER_IDS = """
    ALTER TABLE ledger_accounts ALTER COLUMN id TYPE TEXT COLLATE "C";
"""

# The settlement's usage event is inserted by ``jsonb_populate_record(NULL::usage_events, ...)`` in
# ``suanli_settle`` (pg_ledger.sql): a column added to usage_events is filled from the JSON key of its name,
# which ledger/postgres.py writes for every field of ``UsageEvent``, so a new column needs no new function.
PG_MIGRATIONS: tuple[str, ...] = (
    PG_BASELINE,
    OWNER_MIGRATION,
    PG_WORKERS,
    PG_LEDGER,
    PRICE_WINDOW_MIGRATION,
    TOPUPS_MIGRATION,
    PG_CONSOLE_SESSIONS,
    OPERATOR_SETTLEMENTS_MIGRATION,
    STATEMENTS_MIGRATION,
    PG_ALERTS_MIGRATION,
    CUSTOMER_TRANSFERS_MIGRATION,
    PG_ALERTS_ON_MOVE_MIGRATION,
    PG_BATCH,
    PG_BYTE_ORDER_IDS,
    PG_FLAT,
)
