"""Every limit the platform enforces, as a named constant with its unit in the name.

Unbounded queues and buffers are bugs: anything that grows with traffic is capped here, and the cap is
documented in docs/configuration.md (a test checks that each name below appears there).
"""

from __future__ import annotations

# Requests from clients.
CLIENT_BODY_TIMEOUT_S = 30.0  # a request's whole body must arrive within this of its start; then 408
COUNT_ON_LOOP_BYTES_MAX = 64 * 1024  # a larger prompt is counted in a worker thread, not on the event loop
COUNTING_THREADS_MAX = 1  # worker threads counting large prompts at once: a core at most, of the machine's
COUNTING_WAIT_S = 10.0  # a large prompt waits at most this for a counting thread (then 503)
CLIENT_WRITE_TIMEOUT_S = 30.0  # a stream's write to a client that stopped reading (SUANLI_CLIENT_WRITE_TIMEOUT_S)
SETTING_SECONDS_MAX = 3600.0  # the longest a wait given in a setting may be
REQUEST_BODY_BYTES_MAX = 4 * 1024 * 1024  # a chat request larger than this gets 413
MESSAGES_COUNT_MAX = 4096  # messages in one chat request
MAX_TOKENS_DEFAULT_CAP = 1_000_000  # a client's max_tokens above this is refused outright

# Upstream calls.
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
UPSTREAM_FIRST_BYTE_TIMEOUT_S = 60.0  # time to the response headers (and so to the first token)
UPSTREAM_IDLE_TIMEOUT_S = 60.0  # largest gap between two stream chunks
UPSTREAM_TOTAL_TIMEOUT_S = 600.0  # a whole call, streamed or not
UPSTREAM_CONNECTIONS_PER_OPERATOR_MAX = 256  # pooled keep-alive connections per operator
UPSTREAM_POOL_ACQUIRE_TIMEOUT_S = 3.0  # waiting for a free pooled connection; then 503 upstream_busy
UPSTREAM_KEEPALIVE_EXPIRY_S = 4.0  # an idle pooled connection is closed after this (servers often close at 5 s)
UPSTREAM_BODY_BYTES_MAX = 32 * 1024 * 1024  # a non-streamed upstream answer larger than this is refused
STREAM_EVENT_BYTES_MAX = 1024 * 1024  # one SSE event from an upstream
STREAM_DELIVERED_BYTES_KEPT_MAX = 16 * 1024 * 1024  # kept to count a cut stream's delivered tokens
REPORTED_TOKENS_MAX = 10**9  # an operator's token count above this is malformed: the local estimate is charged
OPERATOR_MESSAGE_CHARS_MAX = 300  # an operator's error message, sanitized, as a client sees it

# The gateway's own HTTP server (its clients' connections).
CLIENT_HEADER_TIMEOUT_S = 10.0  # a request's head (a new connection's first) must arrive whole within this
CLIENT_HEADER_BYTES_MAX = 64 * 1024  # a request's head larger than this gets 431
CLIENT_KEEPALIVE_TIMEOUT_S = 75  # an idle keep-alive connection is closed after this (load balancers close first)
CLIENT_CONNECTIONS_MAX = 10_000  # connections (or requests in flight) beyond this get 503 at once
SHUTDOWN_GRACE_S = 10  # calls in flight get this long after SIGTERM, then are cut (and settled for what they got)

# Ledger and store.
LEDGER_BATCH_OPS_MAX = 512  # operations committed together in one transaction (group commit)
LEDGER_QUEUE_DEPTH_MAX = 20_000  # operations waiting for the writer; beyond, admission gets 503
SQLITE_BUSY_TIMEOUT_MS = 10_000  # connections other than the writer's wait this long for a lock
STORE_RETRY_FOR_S = 30.0  # a job whose batch the store failed is tried again, alone, for this long
STORE_RETRY_BACKOFF_S = 0.01  # the first wait before such a try; it doubles each time
STORE_RETRY_BACKOFF_MAX_S = 1.0

# Caches.
KEY_CACHE_TTL_S = 2.0  # a key revoked from another process is refused within this time
KEY_CACHE_ENTRIES_MAX = 100_000

# The web console (api/console.py, gateway/sessions.py).
CONSOLE_SESSION_TTL_S = 12 * 3600  # a console session ends this long after sign-in (SUANLI_CONSOLE_SESSION_TTL_S)
CONSOLE_SESSION_TTL_MAX_S = 30 * 24 * 3600  # the longest that setting may be
CONSOLE_SESSION_KEPT_S = 24 * 3600  # an expired session's row stays this long (its page says "expired"), then goes

# Reservation estimate: the tokenizer count of the prompt, plus this margin for upstreams whose
# tokenizer counts differently, plus a fixed overhead per message for the chat template.
# The default of an offer's ``input_margin_percent`` (catalog), rounded up to a whole token.
INPUT_ESTIMATE_MARGIN_PERCENT = 10
INPUT_MARGIN_PERCENT_MAX = 100
TOKENS_PER_MESSAGE_OVERHEAD = 4
TOKENS_PER_REQUEST_OVERHEAD = 3
IMAGE_INPUT_TOKENS = 1600  # an image in a prompt, counted as this many tokens (above OpenAI's 765 per 1024²)
CHOICES_MAX = 16  # a chat request's ``n``: answers generated for one prompt

# Routing and failover.
FALLBACK_MODELS_MAX = 8  # models in a request's "models" fallback list beyond the first
ROUTE_ATTEMPTS_MAX = 3  # offers tried for one request before the client gets the error
ROUTE_DEADLINE_S = 90.0  # no new attempt starts after this long since the request arrived
# A reservation older than the longest a call can last (its attempts, the whole upstream call, and a
# minute of settling) is resolved by the sweep: the call that made it can no longer settle it.
RESERVATION_STALE_S = ROUTE_DEADLINE_S + UPSTREAM_TOTAL_TIMEOUT_S + 60.0
OFFER_CAPACITY_DEFAULT = 256  # calls in flight an offer takes before others are preferred (catalog: capacity)

# Health: a circuit breaker per offer, fed by every call and by probes.
HEALTH_WINDOW_S = 60.0  # the sliding window the error rate is computed over
HEALTH_WINDOW_CALLS_MAX = 500  # outcomes kept in the window
HEALTH_LATENCY_SAMPLES_MAX = 500  # latencies kept for the percentiles shown to admins
BREAKER_MIN_CALLS = 10  # calls in the window before the error rate can open the breaker
BREAKER_ERROR_RATE_PERCENT = 50  # error rate that opens the breaker
BREAKER_CONSECUTIVE_FAILURES = 5  # failures in a row that open it whatever the rate
BREAKER_OPEN_S = 5.0  # first wait before an open breaker lets a trial call through
BREAKER_OPEN_MAX_S = 60.0  # the wait doubles on each failed trial, up to this
BREAKER_HALF_OPEN_CALLS = 3  # trial calls, one at a time, that must all succeed to close it
HEALTH_PROBE_INTERVAL_S = 2.0  # how often operators with a breaker not closed are probed
HEALTH_PROBE_TIMEOUT_S = 2.0
RETRY_AFTER_MAX_S = 300.0  # an upstream's Retry-After is honoured up to this

# The token economy.
PACK_EXPIRY_SWEEP_S = 60.0  # how often what is left of expired packs is forfeited
PRICE_CHANGE_NOTICE_S = 300  # a price set while the platform runs takes effect at least this long after it is set
PRICE_VERSION_HORIZON_DAYS = 366  # a price version (catalog or set while running) starts at most this far ahead

# Amounts and instants a client or an administrator sends: beyond these, 400 (SQLite's integers end at 2^63).
AMOUNT_NANO_MAX = 10**18  # ¥1,000,000,000: a budget, a contract's credit limit or a tier's threshold
TOKENS_AMOUNT_MAX = 10**15  # a token budget or a token transfer
INSTANT_HORIZON_DAYS = 36_600  # an instant asked about (`at`, a key's `expires_at`): 1970 to about a century ahead

# Alerts and webhooks (economy/alerts.py, gateway/webhooks.py; docs/statements.md).
# A failed delivery is tried again after each of these waits in turn, then marked failed: 31 h 41 min in all.
WEBHOOK_RETRY_SCHEDULE_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800, 28800)
WEBHOOK_TIMEOUT_S = 10.0  # one delivery's whole exchange (SUANLI_WEBHOOK_TIMEOUT_S); then it counts as failed
WEBHOOK_POLL_S = 1.0  # how often each worker looks for due deliveries (SUANLI_WEBHOOK_POLL_S)
WEBHOOK_CLAIM_S = 60.0  # a delivery claimed by a worker that died while sending it is due again after this
WEBHOOK_DELIVERY_BATCH_MAX = 32  # deliveries one worker sends at once
WEBHOOK_PREPARE_BATCH_MAX = 100  # events whose body is fixed per round
WEBHOOKS_PER_ACCOUNT_MAX = 10
WEBHOOK_URL_CHARS_MAX = 2048
WEBHOOK_ERROR_CHARS_MAX = 200  # what a failed delivery's error says, as its account sees it
ALERT_PACK_EXPIRY_DAYS_MAX = 365  # the longest notice of a pack's expiry an account may ask for
ALERTS_LISTED_MAX = 100  # events `GET /v1/alerts` returns

# PostgreSQL (store/pg.py, docs/scaling.md)
STORE_CONNECT_TIMEOUT_S = 2  # libpq's smallest useful connect timeout
STORE_STATEMENT_TIMEOUT_S = 5.0  # a statement the database has not answered by then fails the job
STORE_READ_TIMEOUT_S = 1.0  # a serving worker's reads (key look-ups, views), made on its event loop
STORE_ADMISSION_RETRY_S = 0.5  # an admission the store failed is retried this long, then answered 503
STORE_IDLE_IN_TRANSACTION_S = 10  # a dead client's open transaction and row locks go after this
WORKER_LEASE_RENEW_S = 2.0  # each worker renews its lease this often
WORKER_LEASE_TTL_S = 10.0  # a lease not renewed for this long may be reclaimed by another worker
WORKER_RECLAIM_INTERVAL_S = 1.0  # how often each worker looks for expired leases (one small UPDATE)
CLOCK_SKEW_WARN_S = 1.0  # a worker whose clock is this far off the database's warns
