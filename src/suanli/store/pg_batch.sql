-- The ledger's hot-path calls on PostgreSQL (store/schema_pg.py explains; ledger/postgres.py and store/pg.py
-- call them): a move of an account's sums, an entry, a reservation, a settlement, and a writer's batch of them.
-- They take JSONB, parsed once per call: a JSON argument is text, parsed again by every `->` that reads a field
-- of it, and a batch's jobs were read that way field by field. The first version of these functions took JSON,
-- and its alerts were a row trigger on ledger_accounts (store/outbox_schema.py); both are replaced here.
DROP FUNCTION IF EXISTS suanli_batch(JSON, TEXT, BIGINT);
DROP FUNCTION IF EXISTS suanli_batch(JSONB, TEXT, BIGINT);
DROP FUNCTION IF EXISTS suanli_settle(JSON, TEXT, TEXT, BIGINT, JSONB, TEXT);
DROP FUNCTION IF EXISTS suanli_reserve(TEXT, BIGINT, JSON, TEXT, TEXT, BIGINT);
DROP FUNCTION IF EXISTS suanli_entry(JSON, TEXT, TEXT, BIGINT);

-- Add to an account's four sums; a debit that must keep the floor is conditional. False: no such
-- account of that asset, or (check_floor) the floor would be crossed.
CREATE OR REPLACE FUNCTION suanli_move(
    p_account TEXT, p_slot TEXT, p_asset TEXT, dp BIGINT, dpo BIGINT, cp BIGINT, cpo BIGINT, check_floor BOOLEAN
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    posted BIGINT;
    credits BIGINT;
BEGIN
    IF suanli_slotted(p_account) THEN
        UPDATE ledger_account_slots SET
            debits_pending = debits_pending + dp, debits_posted = debits_posted + dpo,
            credits_pending = credits_pending + cp, credits_posted = credits_posted + cpo
        WHERE account_id = p_account AND slot = p_slot AND asset = p_asset;
        IF FOUND THEN  -- the writer's row exists: the account does, with this asset
            RETURN TRUE;
        END IF;
        PERFORM 1 FROM ledger_accounts WHERE id = p_account AND asset = p_asset;
        IF NOT FOUND THEN
            RETURN FALSE;
        END IF;
        INSERT INTO ledger_account_slots AS s VALUES (p_account, p_slot, p_asset, dp, dpo, cp, cpo)
        ON CONFLICT (account_id, slot) DO UPDATE SET
            debits_pending = s.debits_pending + dp, debits_posted = s.debits_posted + dpo,
            credits_pending = s.credits_pending + cp, credits_posted = s.credits_posted + cpo;
        RETURN TRUE;
    END IF;
    UPDATE ledger_accounts SET
        debits_pending = debits_pending + dp, debits_posted = debits_posted + dpo,
        credits_pending = credits_pending + cp, credits_posted = credits_posted + cpo
    WHERE id = p_account AND asset = p_asset
        AND (NOT check_floor OR floor IS NULL OR credits_posted - debits_posted - debits_pending - dp - dpo >= floor)
    RETURNING debits_posted, credits_posted INTO posted, credits;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    -- A customer's posted debits changed: the alerts it crossed (store/outbox_schema.py), in this transaction.
    IF dpo <> 0 AND (left(p_account, 7) <> 'wallet:'
                     OR EXISTS (SELECT 1 FROM alert_settings WHERE account_id = substr(p_account, 8))) THEN
        PERFORM suanli_alerts(p_account, posted - dpo, posted, credits);
    END IF;
    RETURN TRUE;
END $$;

-- Apply an entry; '' when applied (or replayed), else 'rejection transfer-id' with nothing written. The
-- entry is a JSON array of transfers, each [id, kind, debit, credit, asset, amount, pending_id, memo] (one
-- text parameter: the driver adapts it in C, where eight arrays cost more to send than the call to run).
-- There is no subtransaction (an EXCEPTION block): a platform row changed by many subtransactions of one
-- batch grows a multixact at each change, which measured slower than the work itself. Each transfer is
-- checked before it is written, and a refusal part-way through an entry takes back the transfers before it.
CREATE OR REPLACE FUNCTION suanli_entry(p_entry JSONB, p_request TEXT, p_owner TEXT, p_now BIGINT) RETURNS TEXT
LANGUAGE plpgsql AS $$
DECLARE
    written TEXT[] := '{}';  -- the ids this call wrote, to take back on a refusal
    resolved TEXT[] := '{}';  -- the reservations it resolved
    refusal TEXT;
    failed TEXT;
    t RECORD;
    r RECORD;
BEGIN
    FOR t IN
        SELECT e->>0 AS id, e->>1 AS kind, e->>2 AS debit, e->>3 AS credit, e->>4 AS asset, (e->>5)::BIGINT AS amount,
               e->>6 AS pending, e->>7 AS memo
        FROM jsonb_array_elements(p_entry) AS e
    LOOP
        failed := t.id;
        IF t.amount < 0 THEN
            refusal := 'negative_amount';
            EXIT;
        ELSIF t.debit = t.credit THEN
            refusal := 'same_account';
            EXIT;
        END IF;
        IF t.kind IN ('posted', 'pending') THEN
            refusal := suanli_single(t.id, t.kind, t.debit, t.credit, t.asset, t.amount, t.memo, p_request, p_owner,
                                     p_now);
        ELSE
            refusal := suanli_resolve(t.id, t.kind, t.debit, t.credit, t.asset, t.amount, t.pending, t.memo, p_owner,
                                      p_now);
        END IF;
        IF refusal = 'conflict' THEN  -- a replay of a transfer applied before, or a clash
            SELECT kind, debit_account, credit_account, asset, amount, pending_id INTO r FROM transfers WHERE id = t.id;
            IF NOT FOUND THEN
                refusal := 'pending_already_resolved';
            ELSIF (r.kind, r.debit_account, r.credit_account, r.asset, r.amount, r.pending_id)
                    IS DISTINCT FROM (t.kind, t.debit, t.credit, t.asset, t.amount, t.pending) THEN
                refusal := 'exists_with_different_fields';
            ELSE
                refusal := NULL;
                CONTINUE;  -- the same transfer, applied before
            END IF;
        END IF;
        EXIT WHEN refusal IS NOT NULL;
        IF t.pending IS NOT NULL THEN
            resolved := resolved || t.pending;
        END IF;
        written := written || t.id;
    END LOOP;
    IF refusal IS NULL THEN
        IF resolved <> '{}' THEN
            DELETE FROM open_pending WHERE transfer_id = ANY (resolved);
        END IF;
        RETURN '';
    END IF;
    FOR j IN REVERSE coalesce(array_length(written, 1), 0) .. 1 LOOP
        PERFORM suanli_undo(written[j], p_owner);
    END LOOP;
    RETURN refusal || ' ' || failed;
END $$;

-- A pay-as-you-go reservation: the entry, unless the account has taken up plans since the worker cached it
-- ('plans': the caller then funds it the long way, reading the account's plans). p_check_plans is 0 or 1:
-- booleans travel as the integers the schema stores.
CREATE OR REPLACE FUNCTION suanli_reserve(
    p_account TEXT, p_check_plans BIGINT, p_entry JSONB, p_request TEXT, p_owner TEXT, p_now BIGINT
) RETURNS TEXT LANGUAGE plpgsql AS $$
BEGIN
    IF p_check_plans <> 0 AND EXISTS (SELECT 1 FROM accounts WHERE id = p_account AND has_plans <> 0) THEN
        RETURN 'plans';
    END IF;
    RETURN suanli_entry(p_entry, p_request, p_owner, p_now);
END $$;

-- A settlement: its entry, then its usage event (a replay records nothing twice), then the balance of one
-- account after it; 'refused' names the rejection, with nothing written.
CREATE OR REPLACE FUNCTION suanli_settle(
    p_entry JSONB, p_request TEXT, p_owner TEXT, p_now BIGINT, p_event JSONB, p_balance_of TEXT,
    OUT refused TEXT, OUT b_asset TEXT, OUT b_floor BIGINT, OUT b_dp BIGINT, OUT b_dpo BIGINT, OUT b_cp BIGINT,
    OUT b_cpo BIGINT
) LANGUAGE plpgsql AS $$
BEGIN
    refused := suanli_entry(p_entry, p_request, p_owner, p_now);
    IF refused <> '' THEN
        RETURN;
    END IF;
    INSERT INTO usage_events SELECT * FROM jsonb_populate_record(NULL::usage_events, p_event)
    ON CONFLICT (request_id) DO NOTHING;
    -- A customer's account (never slotted): its row alone.
    SELECT asset, floor, debits_pending, debits_posted, credits_pending, credits_posted
    INTO b_asset, b_floor, b_dp, b_dpo, b_cp, b_cpo
    FROM ledger_accounts WHERE id = p_balance_of;
END $$;

-- A customer account's turn in this transaction: an advisory lock on its name (memory only, released at commit),
-- which every writer's batch takes before it touches the account's row, waiting for it or, if p_skip, not:
-- false when another writer's open batch has it.
CREATE OR REPLACE FUNCTION suanli_turn(p_account TEXT, p_skip BOOLEAN) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
BEGIN
    IF p_skip THEN
        RETURN pg_try_advisory_xact_lock(2, hashtext(p_account));
    END IF;
    PERFORM pg_advisory_xact_lock(2, hashtext(p_account));
    RETURN TRUE;
END $$;

-- A writer's batch of hot-path jobs in one call (store/deferred.py): each job is [kind, ...], its answer the
-- row its caller reads — an entry or a reservation: [code]; a settlement: [refused, asset, floor, debits
-- pending, debits posted, credits pending, credits posted]. One call a batch instead of one a job: the
-- per-statement work of the protocol and of the driver, not the ledger's, measured most of a job's cost.
-- p_turns gives, for each job, null or [the customer account it touches, whether it may be skipped]: a job
-- that may, whose account another writer's open batch has, is not run and answers null, so the writer sends
-- it again in its next batch (then waiting) instead of this batch waiting, with every row it holds, for the
-- other to commit.
CREATE OR REPLACE FUNCTION suanli_batch(p_jobs JSONB, p_owner TEXT, p_now BIGINT, p_turns JSONB)
RETURNS JSON LANGUAGE plpgsql AS $$
DECLARE
    answers JSON[] := '{}';
    job JSONB;
    turn JSONB;
    n INTEGER := 0;
    s RECORD;
BEGIN
    FOR job IN SELECT value FROM jsonb_array_elements(p_jobs) LOOP
        turn := p_turns->n;
        n := n + 1;
        IF jsonb_typeof(turn) = 'array' AND NOT suanli_turn(turn->>0, (turn->>1)::BOOLEAN) THEN
            answers := answers || NULL::JSON;
        ELSIF job->>0 = 'entry' THEN
            answers := answers || json_build_array(suanli_entry(job->1, job->>2, p_owner, p_now));
        ELSIF job->>0 = 'reserve' THEN
            answers := answers || json_build_array(
                suanli_reserve(job->>1, (job->>2)::BIGINT, job->3, job->>4, p_owner, p_now));
        ELSE
            SELECT * INTO s FROM suanli_settle(job->1, job->>2, p_owner, p_now, job->3, job->>4);
            answers := answers || json_build_array(s.refused, s.b_asset, s.b_floor, s.b_dp, s.b_dpo, s.b_cp, s.b_cpo);
        END IF;
    END LOOP;
    RETURN array_to_json(answers);
END $$;
