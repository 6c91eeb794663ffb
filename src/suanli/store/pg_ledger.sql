-- The ledger's rules on PostgreSQL (store/schema_pg.py explains; ledger/postgres.py calls them).

-- suanli_entry checks every account and reservation a transfer names before its transaction can commit;
-- foreign keys would check them again at each insert, which measured half the function's time.
ALTER TABLE transfers
    DROP CONSTRAINT transfers_debit_account_fkey,
    DROP CONSTRAINT transfers_credit_account_fkey,
    DROP CONSTRAINT transfers_pending_id_fkey;
ALTER TABLE open_pending DROP CONSTRAINT open_pending_transfer_id_fkey;

-- No foreign key either: every writer's slot row of escrow would take a share lock on escrow's own row,
-- and several writers sharing that lock (a multixact) queue on each other.
CREATE TABLE ledger_account_slots (
    account_id TEXT NOT NULL,
    slot TEXT NOT NULL,
    asset TEXT NOT NULL,
    debits_pending BIGINT NOT NULL DEFAULT 0,
    debits_posted BIGINT NOT NULL DEFAULT 0,
    credits_pending BIGINT NOT NULL DEFAULT 0,
    credits_posted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, slot)
);

CREATE FUNCTION suanli_slotted(p_account TEXT) RETURNS BOOLEAN LANGUAGE sql IMMUTABLE AS $$
    SELECT left(p_account, 9) = 'platform:' OR left(p_account, 6) = 'sales:' OR left(p_account, 6) = 'plans:'
$$;

-- Add to an account's four sums; a debit that must keep the floor is conditional. False: no such
-- account of that asset, or (check_floor) the floor would be crossed.
CREATE FUNCTION suanli_move(
    p_account TEXT, p_slot TEXT, p_asset TEXT, dp BIGINT, dpo BIGINT, cp BIGINT, cpo BIGINT, check_floor BOOLEAN
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
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
        AND (NOT check_floor OR floor IS NULL OR credits_posted - debits_posted - debits_pending - dp - dpo >= floor);
    RETURN FOUND;
END $$;

-- Why a move was refused, as ledger/sqlite.py names it.
CREATE FUNCTION suanli_refusal(p_account TEXT, p_asset TEXT, p_floor_reason TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    found_asset TEXT;
BEGIN
    SELECT asset INTO found_asset FROM ledger_accounts WHERE id = p_account;
    IF NOT FOUND THEN
        RETURN 'account_not_found';
    ELSIF found_asset <> p_asset THEN
        RETURN 'asset_mismatch';
    END IF;
    RETURN p_floor_reason;
END $$;

-- A posted or pending transfer, written and checked; NULL, 'conflict' (its id is taken: the caller tells a
-- replay from a clash), or why it was refused, with nothing of it written.
CREATE FUNCTION suanli_single(
    p_id TEXT, k TEXT, p_debit TEXT, p_credit TEXT, p_asset TEXT, amt BIGINT, p_memo TEXT, p_request TEXT,
    p_owner TEXT, p_now BIGINT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    pending BIGINT := CASE WHEN k = 'pending' THEN amt ELSE 0 END;
    posted BIGINT := CASE WHEN k = 'posted' THEN amt ELSE 0 END;
BEGIN
    INSERT INTO transfers (id, kind, debit_account, credit_account, asset, amount, pending_id, memo, created_at_ms)
    VALUES (p_id, k, p_debit, p_credit, p_asset, amt, NULL, p_memo, p_now) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'conflict';
    END IF;
    IF NOT suanli_move(p_debit, p_owner, p_asset, pending, posted, 0, 0, TRUE) THEN
        DELETE FROM transfers WHERE id = p_id;
        RETURN suanli_refusal(p_debit, p_asset, 'exceeds_floor');
    END IF;
    IF NOT suanli_move(p_credit, p_owner, p_asset, 0, 0, pending, posted, FALSE) THEN
        PERFORM suanli_move(p_debit, p_owner, p_asset, -pending, -posted, 0, 0, FALSE);
        DELETE FROM transfers WHERE id = p_id;
        RETURN suanli_refusal(p_credit, p_asset, 'asset_mismatch');
    END IF;
    IF k = 'pending' THEN
        INSERT INTO open_pending (transfer_id, request_id, created_at_ms, owner) VALUES (p_id, p_request, p_now, p_owner);
    END IF;
    RETURN NULL;
END $$;

-- A post or void of a reservation, written and checked (its open_pending row is removed by the caller once
-- the whole entry stands); NULL, 'conflict' (its id or its reservation's resolution is taken), or why it
-- was refused, with nothing of it written.
CREATE FUNCTION suanli_resolve(
    p_id TEXT, k TEXT, p_debit TEXT, p_credit TEXT, p_asset TEXT, p_amount BIGINT, p_pending TEXT, p_memo TEXT,
    p_owner TEXT, p_now BIGINT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
    amt BIGINT := CASE WHEN k = 'post' THEN p_amount ELSE 0 END;
    refusal TEXT;
BEGIN
    INSERT INTO transfers (id, kind, debit_account, credit_account, asset, amount, pending_id, memo, created_at_ms)
    VALUES (p_id, k, p_debit, p_credit, p_asset, p_amount, p_pending, p_memo, p_now) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'conflict';
    END IF;
    SELECT debit_account, credit_account, asset, amount INTO r FROM transfers WHERE id = p_pending AND kind = 'pending';
    IF NOT FOUND THEN
        refusal := 'pending_not_found';
    ELSIF (r.debit_account, r.credit_account, r.asset) IS DISTINCT FROM (p_debit, p_credit, p_asset) THEN
        refusal := 'exists_with_different_fields';
    ELSIF amt > r.amount THEN
        refusal := 'exceeds_pending_amount';
    END IF;
    IF refusal IS NOT NULL THEN
        DELETE FROM transfers WHERE id = p_id;
        RETURN refusal;
    END IF;
    PERFORM suanli_move(r.debit_account, p_owner, r.asset, -r.amount, amt, 0, 0, FALSE);
    PERFORM suanli_move(r.credit_account, p_owner, r.asset, 0, 0, -r.amount, amt, FALSE);
    RETURN NULL;
END $$;

-- Take back a transfer this entry wrote (a later one of the entry was refused).
CREATE FUNCTION suanli_undo(p_id TEXT, p_owner TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    t RECORD;
    p RECORD;
    amt BIGINT;
BEGIN
    SELECT kind, debit_account, credit_account, asset, amount, pending_id INTO t FROM transfers WHERE id = p_id;
    IF t.kind IN ('posted', 'pending') THEN
        PERFORM suanli_move(t.debit_account, p_owner, t.asset, CASE WHEN t.kind = 'pending' THEN -t.amount ELSE 0 END,
                            CASE WHEN t.kind = 'posted' THEN -t.amount ELSE 0 END, 0, 0, FALSE);
        PERFORM suanli_move(t.credit_account, p_owner, t.asset, 0, 0, CASE WHEN t.kind = 'pending' THEN -t.amount ELSE 0 END,
                            CASE WHEN t.kind = 'posted' THEN -t.amount ELSE 0 END, FALSE);
        DELETE FROM open_pending WHERE transfer_id = p_id;
    ELSE
        SELECT amount INTO p FROM transfers WHERE id = t.pending_id;
        amt := CASE WHEN t.kind = 'post' THEN t.amount ELSE 0 END;
        PERFORM suanli_move(t.debit_account, p_owner, t.asset, p.amount, -amt, 0, 0, FALSE);
        PERFORM suanli_move(t.credit_account, p_owner, t.asset, 0, 0, p.amount, -amt, FALSE);
    END IF;
    DELETE FROM transfers WHERE id = p_id;
END $$;

-- Apply an entry; '' when applied (or replayed), else 'rejection transfer-id' with nothing written. The
-- entry is a JSON array of transfers, each [id, kind, debit, credit, asset, amount, pending_id, memo] (one
-- text parameter: the driver adapts it in C, where eight arrays cost more to send than the call to run).
-- There is no subtransaction (an EXCEPTION block): a platform row changed by many subtransactions of one
-- batch grows a multixact at each change, which measured slower than the work itself. Each transfer is
-- checked before it is written, and a refusal part-way through an entry takes back the transfers before it.
CREATE FUNCTION suanli_entry(p_entry JSON, p_request TEXT, p_owner TEXT, p_now BIGINT) RETURNS TEXT
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
        FROM json_array_elements(p_entry) AS e
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
CREATE FUNCTION suanli_reserve(
    p_account TEXT, p_check_plans BIGINT, p_entry JSON, p_request TEXT, p_owner TEXT, p_now BIGINT
) RETURNS TEXT LANGUAGE plpgsql AS $$
BEGIN
    IF p_check_plans <> 0 AND EXISTS (SELECT 1 FROM accounts WHERE id = p_account AND has_plans <> 0) THEN
        RETURN 'plans';
    END IF;
    RETURN suanli_entry(p_entry, p_request, p_owner, p_now);
END $$;

-- A settlement: its entry, then its usage event (a replay records nothing twice), then the balance of one
-- account after it; 'refused' names the rejection, with nothing written.
CREATE FUNCTION suanli_settle(
    p_entry JSON, p_request TEXT, p_owner TEXT, p_now BIGINT, p_event JSONB, p_balance_of TEXT,
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

-- A writer's batch of hot-path jobs in one call (store/deferred.py): each job is [kind, ...], its answer the
-- row its caller reads — an entry or a reservation: [code]; a settlement: [refused, asset, floor, debits
-- pending, debits posted, credits pending, credits posted]. One call a batch instead of one a job: the
-- per-statement work of the protocol and of the driver, not the ledger's, measured most of a job's cost.
CREATE FUNCTION suanli_batch(p_jobs JSON, p_owner TEXT, p_now BIGINT) RETURNS JSON LANGUAGE plpgsql AS $$
DECLARE
    answers JSON[] := '{}';
    job JSON;
    s RECORD;
BEGIN
    FOR job IN SELECT value FROM json_array_elements(p_jobs) LOOP
        IF job->>0 = 'entry' THEN
            answers := answers || json_build_array(suanli_entry(job->1, job->>2, p_owner, p_now));
        ELSIF job->>0 = 'reserve' THEN
            answers := answers || json_build_array(
                suanli_reserve(job->>1, (job->>2)::BIGINT, job->3, job->>4, p_owner, p_now));
        ELSE
            SELECT * INTO s FROM suanli_settle(job->1, job->>2, p_owner, p_now, (job->3)::JSONB, job->>4);
            answers := answers || json_build_array(s.refused, s.b_asset, s.b_floor, s.b_dp, s.b_dpo, s.b_cp, s.b_cpo);
        END IF;
    END LOOP;
    RETURN array_to_json(answers);
END $$;
