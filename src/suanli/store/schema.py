"""The database schema, as an ordered list of migrations applied at open (``PRAGMA user_version``).

A migration is never edited once released; a change is a new entry at the end of ``MIGRATIONS``.
The ledger tables follow the two-phase model: a ``pending`` transfer is resolved by exactly one ``post``
or ``void`` transfer naming it (``pending_id``, unique), and ``open_pending`` lists the pending transfers
not yet resolved so recovery never scans history. ``ledger_accounts`` holds per-account sums of
transfers, changed only in the transaction that inserts the transfer; ``verify`` recomputes them.
"""

from __future__ import annotations

from suanli.store.outbox_schema import SQLITE_ALERTS_MIGRATION

# Each reservation names the process that made it, so that a survivor resolves only a dead worker's
# (docs/scaling.md); '' is the one process of an SQLite database.
OWNER_MIGRATION = """
    ALTER TABLE open_pending ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX open_pending_owner ON open_pending(owner);
"""

# The time-of-day price window each call was locked at (its ``x-suanli-price-window``): ``peak``,
# ``off-peak``, ``standard``... NULL on the rows written before, which the API shows as null.
PRICE_WINDOW_MIGRATION = """
    ALTER TABLE usage_events ADD COLUMN price_window TEXT;
"""

# Top-ups listed newest first (``GET /admin/v1/topups``) without reading every transfer: an index of the
# top-up source's transfers alone, so that no other transfer pays for an index entry.
TOPUPS_MIGRATION = """
    CREATE INDEX transfers_topups ON transfers(created_at_ms) WHERE debit_account = 'platform:topup';
"""

# Operator settlement (economy/operator_settlement.py): one row per operator per run that moved money, with
# the watermark it settled the month to; the rows' sums are what the month's later runs subtract.
OPERATOR_SETTLEMENTS_MIGRATION = """
    CREATE TABLE operator_settlements (
        run_id TEXT NOT NULL,
        operator TEXT NOT NULL,
        month TEXT NOT NULL,
        seq INTEGER NOT NULL,
        settled_to_ms BIGINT NOT NULL,
        gross_nano BIGINT NOT NULL CHECK (gross_nano >= 0),
        commission_nano BIGINT NOT NULL CHECK (commission_nano >= 0),
        net_nano BIGINT NOT NULL CHECK (net_nano >= 0),
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (operator, month, seq)
    );
    CREATE INDEX operator_settlements_month ON operator_settlements(month, run_id);
"""

# An account's transfers in time order (store/exports.py, economy/statement_ledger.py), through partial
# indexes that leave out the platform's side of every call (escrow, sales, plans), so the hot path pays one
# index entry per customer-side transfer. A budget window is debited by every call it limits, so its
# debits have an index of their own, paid only by the calls of accounts with budgets. A query repeats an
# index's WHERE word for word: that is how SQLite and PostgreSQL know they may use it.
# The partial indexes' conditions: a query that reads through an index repeats its condition (SQLite uses a
# partial index only for a query whose WHERE holds its terms), so statements and exports import these.
CUSTOMER_DEBIT_SIDE = (
    "debit_account NOT LIKE 'platform:%' AND debit_account NOT LIKE 'plans:%' AND debit_account NOT LIKE 'budget:%'"
)
CUSTOMER_CREDIT_SIDE = (
    "credit_account NOT LIKE 'platform:%' AND credit_account NOT LIKE 'plans:%' AND credit_account NOT LIKE 'sales:%'"
)
BUDGET_DEBIT_SIDE = "debit_account LIKE 'budget:%'"
CUSTOMER_TRANSFERS_MIGRATION = f"""
    CREATE INDEX transfers_customer_debit ON transfers(debit_account, created_at_ms, id) WHERE {CUSTOMER_DEBIT_SIDE};
    CREATE INDEX transfers_customer_credit ON transfers(credit_account, created_at_ms, id) WHERE {CUSTOMER_CREDIT_SIDE};
    CREATE INDEX transfers_budget_debit ON transfers(debit_account, created_at_ms, id) WHERE {BUDGET_DEBIT_SIDE};
"""

# Statements of closed months (economy/statements.py): stored when first generated, served from here after,
# with the SHA-256 of the body's canonical JSON, so a closed month's statement never changes.
STATEMENTS_MIGRATION = """
    CREATE TABLE statements (
        number TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        month TEXT,
        from_ms BIGINT NOT NULL,
        to_ms BIGINT NOT NULL,
        body TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE INDEX statements_account ON statements(account_id, from_ms);
"""

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        tier TEXT NOT NULL CHECK (tier IN ('enterprise', 'household')),
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        hash BLOB NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        models TEXT,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER,
        revoked_at_ms INTEGER
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE admin_keys (
        hash BLOB PRIMARY KEY,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE ledger_accounts (
        id TEXT PRIMARY KEY,
        asset TEXT NOT NULL,
        floor INTEGER,
        debits_pending INTEGER NOT NULL DEFAULT 0,
        debits_posted INTEGER NOT NULL DEFAULT 0,
        credits_pending INTEGER NOT NULL DEFAULT 0,
        credits_posted INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE transfers (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('posted', 'pending', 'post', 'void')),
        debit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
        credit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
        asset TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        pending_id TEXT REFERENCES transfers(id),
        memo TEXT NOT NULL DEFAULT '',
        created_at_ms INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX transfers_resolution ON transfers(pending_id) WHERE pending_id IS NOT NULL;
    CREATE INDEX transfers_debit ON transfers(debit_account);
    CREATE INDEX transfers_credit ON transfers(credit_account);
    CREATE TABLE open_pending (
        transfer_id TEXT PRIMARY KEY REFERENCES transfers(id),
        request_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
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
        stream INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        price_input_nano INTEGER NOT NULL,
        price_cached_input_nano INTEGER NOT NULL,
        price_output_nano INTEGER NOT NULL,
        price_reasoning_nano INTEGER NOT NULL,
        reserved_nano INTEGER NOT NULL,
        cost_nano INTEGER NOT NULL,
        uncharged_nano INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        http_status INTEGER NOT NULL,
        error_code TEXT NOT NULL DEFAULT '',
        latency_ms INTEGER NOT NULL,
        ttft_ms INTEGER,
        created_at_ms INTEGER NOT NULL
    );
    CREATE INDEX usage_events_account ON usage_events(account_id, created_at_ms);
    """,
    """
    ALTER TABLE usage_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE upstream_attempts (
        request_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        operator TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        http_status INTEGER NOT NULL,
        latency_ms INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (request_id, attempt)
    );
    CREATE INDEX upstream_attempts_operator ON upstream_attempts(operator, created_at_ms);
    """,
    # Every transfer paid for two index entries that no query on the hot path reads; an account's
    # statement can add them back (or a covering index) when it is built.
    """
    DROP INDEX transfers_debit;
    DROP INDEX transfers_credit;
    """,
    # An account's default routing preferences: a JSON object of the request field "provider".
    """
    ALTER TABLE accounts ADD COLUMN routing TEXT;
    """,
    # Prompt-cache writes, a token class of their own (Anthropic-protocol operators report them).
    """
    ALTER TABLE usage_events ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_events ADD COLUMN price_cache_write_nano INTEGER NOT NULL DEFAULT 0;
    """,
    # The token economy (economy/): products, packs, subscriptions and their allowance windows, budgets,
    # token transfers between accounts. Balances live in the ledger; these tables say what each ledger
    # account is for. ``accounts.has_plans`` lets a pay-as-you-go account skip the funding look-ups.
    """
    CREATE TABLE products (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        listed_by TEXT NOT NULL,
        listed_at_ms INTEGER NOT NULL,
        retired_at_ms INTEGER
    );
    CREATE TABLE packs (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        product_id TEXT NOT NULL REFERENCES products(id),
        tokens INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        origin TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        forfeited_at_ms INTEGER
    );
    CREATE INDEX packs_account ON packs(account_id, expires_at_ms);
    CREATE INDEX packs_expiry ON packs(expires_at_ms) WHERE forfeited_at_ms IS NULL;
    CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        product_id TEXT NOT NULL REFERENCES products(id),
        anchor_ms INTEGER NOT NULL,
        period_start_ms INTEGER NOT NULL,
        period_end_ms INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER
    );
    CREATE UNIQUE INDEX subscriptions_current ON subscriptions(account_id) WHERE ended_at_ms IS NULL;
    CREATE TABLE allowance_windows (
        subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
        window TEXT NOT NULL,
        unit TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        PRIMARY KEY (subscription_id, window, unit, start_ms)
    );
    CREATE TABLE budgets (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        key_id TEXT REFERENCES api_keys(id),
        period TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
        unit TEXT NOT NULL CHECK (unit IN ('cny', 'tokens')),
        amount INTEGER NOT NULL CHECK (amount > 0),
        created_at_ms INTEGER NOT NULL,
        removed_at_ms INTEGER
    );
    CREATE INDEX budgets_account ON budgets(account_id) WHERE removed_at_ms IS NULL;
    CREATE TABLE account_trust (
        account_id TEXT NOT NULL REFERENCES accounts(id),
        trusted_id TEXT NOT NULL REFERENCES accounts(id),
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, trusted_id)
    );
    CREATE TABLE token_transfers (
        id TEXT PRIMARY KEY,
        from_pack TEXT NOT NULL REFERENCES packs(id),
        to_pack TEXT NOT NULL REFERENCES packs(id),
        tokens INTEGER NOT NULL,
        memo TEXT NOT NULL,
        made_by TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    ALTER TABLE accounts ADD COLUMN funding TEXT;
    ALTER TABLE accounts ADD COLUMN has_plans INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_events ADD COLUMN funding TEXT;
    """,
    # Enterprise contracts: postpaid up to a credit limit (the wallet's floor), graduated volume tiers.
    """
    CREATE TABLE contracts (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id),
        credit_limit_nano INTEGER NOT NULL CHECK (credit_limit_nano >= 0),
        tiers TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    """,
    # Price versions set while the platform runs (an operator's price change), added to the catalog's.
    """
    CREATE TABLE price_versions (
        offer_id TEXT NOT NULL,
        effective_from_ms INTEGER NOT NULL,
        spec TEXT NOT NULL,
        set_by TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (offer_id, effective_from_ms)
    );
    """,
    # Admin keys become several, named and revocable, each with its origin: the one configured in
    # SUANLI_ADMIN_KEY, the one generated at first start, or one created since. Keys from before cannot be
    # told apart, so they count as configured: the next SUANLI_ADMIN_KEY that differs retires them.
    """
    ALTER TABLE admin_keys RENAME TO admin_keys_unnamed;
    CREATE TABLE admin_keys (
        id TEXT PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('configured', 'generated', 'created')),
        created_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER
    );
    INSERT INTO admin_keys (id, hash, prefix, name, origin, created_at_ms)
        SELECT 'adm_' || lower(hex(randomblob(8))), hash, '', 'from before names', 'configured', created_at_ms
        FROM admin_keys_unnamed;
    DROP TABLE admin_keys_unnamed;
    """,
    # "window" is a reserved word in PostgreSQL (and in standard SQL): the column is renamed so that one
    # schema serves both stores.
    """
    ALTER TABLE allowance_windows RENAME COLUMN window TO window_name;
    """,
    OWNER_MIGRATION,
    PRICE_WINDOW_MIGRATION,
    TOPUPS_MIGRATION,
    # Console sessions (gateway/sessions.py): a browser's sign-in, kept as the SHA-256 of its random id, the
    # key it stands for (re-checked at each request) and its CSRF token; the sweep deletes expired ones.
    """
    CREATE TABLE console_sessions (
        id_hash BLOB PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('account', 'admin')),
        key_id TEXT NOT NULL,
        account_id TEXT,
        csrf_token TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER
    );
    CREATE INDEX console_sessions_expiry ON console_sessions(expires_at_ms);
    """,
    OPERATOR_SETTLEMENTS_MIGRATION,
    STATEMENTS_MIGRATION,
    # Alerts and their webhooks (store/outbox_schema.py says how the triggers write them).
    SQLITE_ALERTS_MIGRATION,
    CUSTOMER_TRANSFERS_MIGRATION,
)
