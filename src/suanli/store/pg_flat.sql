-- The batch's two common jobs as a set (store/schema_pg.py explains): a reservation from a customer's account
-- to a platform account, and its settlement (the post or void, then at most the payment on between platform
-- accounts). A statement costs PostgreSQL more to start than to run on one row, so these jobs are written a
-- table at a time: their transfers in one INSERT, the customer accounts they move read once (locked, in id
-- order) and written once, the floors checked job by job in memory, in the batch's order, the platform
-- accounts' slot rows written once. Anything else, and any of these that meets something other than the plain
-- case (a replay, an id taken, an unknown account), is run after them by suanli_entry and suanli_settle, whose
-- checks and answers they give the same. Jobs in one batch are concurrent (none of their callers has had an
-- answer), so running the common ones first is one order they could have run in.

-- Whether a job's entry is one of the common two: a pending transfer from a customer's account to a platform
-- account (kind 'entry' or 'reserve'); or (kind 'settle') a post or void from a customer's account to a
-- platform account, then at most one posted transfer of the same asset between two platform accounts.
CREATE FUNCTION suanli_common_job(p_kind TEXT, p_entry JSONB) RETURNS BOOLEAN LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce((p_entry->0->>5)::BIGINT >= 0 AND NOT suanli_slotted(p_entry->0->>2) AND suanli_slotted(p_entry->0->>3)
        AND CASE
            WHEN p_kind <> 'settle' THEN jsonb_array_length(p_entry) = 1 AND p_entry->0->>1 = 'pending'
            ELSE p_entry->0->>1 IN ('post', 'void') AND (jsonb_array_length(p_entry) = 1
                OR jsonb_array_length(p_entry) = 2 AND p_entry->1->>1 = 'posted' AND (p_entry->1->>5)::BIGINT >= 0
                    AND p_entry->1->>2 <> p_entry->1->>3 AND suanli_slotted(p_entry->1->>2)
                    AND suanli_slotted(p_entry->1->>3) AND p_entry->1->>4 = p_entry->0->>4)
        END, FALSE)
$$;

-- The common jobs of a batch (p_common: their numbers in p_jobs, from 1, in order): the answer of each, as
-- suanli_batch gives it, or NULL for one to run the generic way, with nothing of it written.
CREATE FUNCTION suanli_common(p_jobs JSONB, p_common INTEGER[], p_owner TEXT, p_now BIGINT) RETURNS JSON[]
LANGUAGE plpgsql AS $$
DECLARE
    answers JSON[] := array_fill(NULL::JSON, ARRAY[cardinality(p_common)]);
    k INTEGER;
    i INTEGER;
    amt BIGINT;
    refusal TEXT;
    acct TEXT;
    answer JSON;
    every_added BOOLEAN;  -- no id was taken: every job's transfers are its own
    -- per job: a settlement?, its transfer, the payment on (settlements), request, usage event, balance asked
    settle BOOLEAN[]; t_id TEXT[]; t_kind TEXT[]; t_debit TEXT[]; t_credit TEXT[]; t_asset TEXT[]; t_amount BIGINT[];
    t_pending TEXT[]; t_memo TEXT[]; y_id TEXT[]; y_debit TEXT[]; y_credit TEXT[]; y_amount BIGINT[]; y_memo TEXT[];
    request TEXT[]; event JSONB[]; balance_of TEXT[];
    -- the reservation a settlement resolves, and whether this transaction made it (then this batch did: the
    -- settlement runs the generic way, after the common jobs, once the reservation stands or was refused)
    r_debit TEXT[]; r_credit TEXT[]; r_asset TEXT[]; r_amount BIGINT[]; r_new BOOLEAN[];
    added TEXT[];  -- the transfers inserted (a job whose are not all is not common after all)
    found TEXT[];  -- the platform accounts named, as 'id asset', that exist
    -- the customer accounts named, locked and read, then moved here: dpo0 is the posted debits before
    a_id TEXT[]; a_asset TEXT[]; a_floor BIGINT[]; a_dp BIGINT[]; a_dpo BIGINT[]; a_cp BIGINT[]; a_cpo BIGINT[];
    a_dpo0 BIGINT[];
    -- what the jobs leave to write: transfers taken back, reservations opened and resolved, usage events
    dropped TEXT[] := '{}'; opened INTEGER[] := '{}'; resolved TEXT[] := '{}'; events JSONB[] := '{}';
    -- the platform accounts' moves, per account
    m_account TEXT[] := '{}'; m_asset TEXT[] := '{}'; m_dpo BIGINT[] := '{}'; m_cp BIGINT[] := '{}';
    m_cpo BIGINT[] := '{}';
BEGIN
    SELECT array_agg(job->>0 = 'settle'), array_agg(e->0->>0), array_agg(e->0->>1), array_agg(e->0->>2),
           array_agg(e->0->>3), array_agg(e->0->>4), array_agg((e->0->>5)::BIGINT), array_agg(e->0->>6),
           array_agg(e->0->>7), array_agg(e->1->>0), array_agg(e->1->>2), array_agg(e->1->>3),
           array_agg((e->1->>5)::BIGINT), array_agg(e->1->>7),
           array_agg(CASE WHEN job->>0 = 'reserve' THEN job->>4 ELSE job->>2 END), array_agg(job->3),
           array_agg(job->>4)
    INTO settle, t_id, t_kind, t_debit, t_credit, t_asset, t_amount, t_pending, t_memo, y_id, y_debit, y_credit,
         y_amount, y_memo, request, event, balance_of
    FROM (SELECT job, CASE WHEN job->>0 = 'reserve' THEN job->3 ELSE job->1 END AS e
          FROM unnest(p_common) WITH ORDINALITY AS c(j, k), LATERAL (SELECT p_jobs->(c.j - 1) AS job) AS x
          ORDER BY c.k) AS jobs;
    WITH rows AS (
        SELECT * FROM unnest(t_id, t_kind, t_debit, t_credit, t_asset, t_amount, t_pending, t_memo)
            AS t(id, kind, debit, credit, asset, amount, pending, memo)
        UNION ALL
        SELECT id, 'posted', debit, credit, asset, amount, NULL, memo
        FROM unnest(y_id, y_debit, y_credit, t_asset, y_amount, y_memo) AS y(id, debit, credit, asset, amount, memo)
        WHERE id IS NOT NULL
    ), inserted AS (
        INSERT INTO transfers (id, kind, debit_account, credit_account, asset, amount, pending_id, memo, created_at_ms)
        SELECT id, kind, debit, credit, asset, amount, CASE WHEN kind = 'pending' THEN NULL ELSE pending END, memo, p_now
        FROM rows ON CONFLICT DO NOTHING RETURNING id
    ) SELECT coalesce(array_agg(id), '{}') INTO added FROM inserted;
    every_added := cardinality(added) = cardinality(t_id) + cardinality(array_remove(y_id, NULL));
    SELECT array_agg(id || ' ' || asset) INTO found FROM ledger_accounts WHERE id = ANY (t_credit || y_debit || y_credit);
    SELECT array_agg(t.debit_account ORDER BY u.k), array_agg(t.credit_account ORDER BY u.k),
           array_agg(t.asset ORDER BY u.k), array_agg(t.amount ORDER BY u.k),
           array_agg(t.xmin = pg_current_xact_id()::xid ORDER BY u.k)
    INTO r_debit, r_credit, r_asset, r_amount, r_new
    FROM unnest(t_pending) WITH ORDINALITY AS u(p, k) LEFT JOIN transfers t ON t.id = u.p AND t.kind = 'pending';
    SELECT array_agg(id), array_agg(asset), array_agg(floor), array_agg(debits_pending), array_agg(debits_posted),
           array_agg(credits_pending), array_agg(credits_posted)
    INTO a_id, a_asset, a_floor, a_dp, a_dpo, a_cp, a_cpo
    FROM (SELECT * FROM ledger_accounts WHERE id = ANY (t_debit) ORDER BY id FOR UPDATE) AS a;
    a_id := coalesce(a_id, '{}');  -- (an aggregate of no rows is NULL)
    found := coalesce(found, '{}');
    a_dpo0 := a_dpo;
    FOR k IN 1 .. cardinality(p_common) LOOP
        IF NOT every_added THEN
            -- an id was taken: a job is common only if it inserted all its transfers (claimed here, as two jobs
            -- of the batch may name one id); else suanli_entry tells a replay from a clash, after what it
            -- inserted is taken back
            IF t_id[k] = ANY (added) AND (y_id[k] IS NULL OR y_id[k] = ANY (added)) THEN
                added := array_remove(array_remove(added, t_id[k]), y_id[k]);
            ELSE
                dropped := dropped || CASE WHEN t_id[k] = ANY (added) THEN t_id[k] END
                                   || CASE WHEN y_id[k] = ANY (added) THEN y_id[k] END;
                added := array_remove(array_remove(added, t_id[k]), y_id[k]);
                CONTINUE;
            END IF;
        END IF;
        IF NOT ((t_credit[k] || ' ' || t_asset[k]) = ANY (found) AND (y_id[k] IS NULL
                   OR (y_debit[k] || ' ' || t_asset[k]) = ANY (found) AND (y_credit[k] || ' ' || t_asset[k]) = ANY (found)))
                OR coalesce(r_new[k], FALSE) THEN
            -- a platform account missing (suanli_entry refuses the job), or a reservation of this batch
            dropped := dropped || t_id[k] || y_id[k];
            CONTINUE;
        END IF;
        i := array_position(a_id, t_debit[k]);
        IF NOT settle[k] THEN
            amt := t_amount[k];
            IF i IS NULL OR a_asset[i] <> t_asset[k]
                    OR a_floor[i] IS NOT NULL AND a_cpo[i] - a_dpo[i] - a_dp[i] - amt < a_floor[i] THEN
                dropped := dropped || t_id[k];
                answers[k] := json_build_array(suanli_refusal(t_debit[k], t_asset[k], 'exceeds_floor') || ' ' || t_id[k]);
                CONTINUE;
            END IF;
            a_dp[i] := a_dp[i] + amt;
            opened := opened || k;
            answers[k] := json_build_array('');
        ELSE
            amt := CASE WHEN t_kind[k] = 'post' THEN t_amount[k] ELSE 0 END;
            refusal := CASE
                WHEN r_amount[k] IS NULL THEN 'pending_not_found'
                WHEN (r_debit[k], r_credit[k], r_asset[k]) IS DISTINCT FROM (t_debit[k], t_credit[k], t_asset[k])
                    THEN 'exists_with_different_fields'
                WHEN amt > r_amount[k] THEN 'exceeds_pending_amount'
            END;
            IF refusal IS NOT NULL THEN
                dropped := dropped || t_id[k] || y_id[k];
                answers[k] := json_build_array(refusal || ' ' || t_id[k], NULL, NULL, NULL, NULL, NULL, NULL);
                CONTINUE;
            END IF;
            IF i IS NOT NULL AND a_asset[i] = r_asset[k] THEN
                a_dp[i] := a_dp[i] - r_amount[k];
                a_dpo[i] := a_dpo[i] + amt;
            END IF;
            resolved := resolved || t_pending[k];
            events := array_append(events, event[k]);
            i := array_position(a_id, balance_of[k]);
            IF i IS NOT NULL THEN
                answers[k] := json_build_array('', a_asset[i], a_floor[i], a_dp[i], a_dpo[i], a_cp[i], a_cpo[i]);
            ELSE
                SELECT json_build_array('', asset, floor, debits_pending, debits_posted, credits_pending, credits_posted)
                INTO answer FROM ledger_accounts WHERE id = balance_of[k];
                answers[k] := coalesce(answer, json_build_array('', NULL, NULL, NULL, NULL, NULL, NULL));
            END IF;
        END IF;
        -- the platform accounts' moves: the transfer's credit, the payment on's debit and credit
        FOR i IN 1 .. CASE WHEN y_id[k] IS NULL THEN 1 ELSE 3 END LOOP
            acct := CASE i WHEN 1 THEN t_credit[k] WHEN 2 THEN y_debit[k] ELSE y_credit[k] END;
            IF NOT acct = ANY (m_account) THEN
                m_account := m_account || acct;
                m_asset := m_asset || t_asset[k];
                m_dpo := m_dpo || 0::BIGINT;
                m_cp := m_cp || 0::BIGINT;
                m_cpo := m_cpo || 0::BIGINT;
            END IF;
        END LOOP;
        i := array_position(m_account, t_credit[k]);
        IF settle[k] THEN
            m_cp[i] := m_cp[i] - r_amount[k];
            m_cpo[i] := m_cpo[i] + amt;
            IF y_id[k] IS NOT NULL THEN
                i := array_position(m_account, y_debit[k]);
                m_dpo[i] := m_dpo[i] + y_amount[k];
                i := array_position(m_account, y_credit[k]);
                m_cpo[i] := m_cpo[i] + y_amount[k];
            END IF;
        ELSE
            m_cp[i] := m_cp[i] + amt;
        END IF;
    END LOOP;
    PERFORM suanli_common_write(a_id, a_dp, a_dpo, a_dpo0, a_cpo, p_owner, m_account, m_asset, m_dpo, m_cp, m_cpo);
    IF dropped <> '{}' THEN
        DELETE FROM transfers WHERE id = ANY (dropped);
    END IF;
    INSERT INTO open_pending (transfer_id, request_id, created_at_ms, owner)
    SELECT t_id[o.q], request[o.q], p_now, p_owner FROM unnest(opened) AS o(q);
    DELETE FROM open_pending WHERE transfer_id = ANY (resolved);
    INSERT INTO usage_events SELECT r.* FROM unnest(events) AS e, jsonb_populate_record(NULL::usage_events, e) AS r
    ON CONFLICT (request_id) DO NOTHING;
    RETURN answers;
END $$;

-- The common jobs' moves, written once: the customer accounts' sums (locked by the caller), with the alerts
-- their posted debits crossed, and the platform accounts' moves added to this writer's slot rows.
CREATE FUNCTION suanli_common_write(
    a_id TEXT[], a_dp BIGINT[], a_dpo BIGINT[], a_dpo0 BIGINT[], a_cpo BIGINT[], p_owner TEXT,
    m_account TEXT[], m_asset TEXT[], m_dpo BIGINT[], m_cp BIGINT[], m_cpo BIGINT[]
) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    i INTEGER;
BEGIN
    UPDATE ledger_accounts AS a SET debits_pending = u.dp, debits_posted = u.dpo
    FROM unnest(a_id, a_dp, a_dpo) AS u(id, dp, dpo)
    WHERE a.id = u.id AND (a.debits_pending, a.debits_posted) IS DISTINCT FROM (u.dp, u.dpo);
    -- alerts, as suanli_move finds them: a customer's posted debits changed
    FOR i IN SELECT u.i FROM unnest(a_id, a_dpo, a_dpo0) WITH ORDINALITY AS u(id, dpo, dpo0, i)
             WHERE u.dpo <> u.dpo0 AND (left(u.id, 7) <> 'wallet:'
                                        OR EXISTS (SELECT 1 FROM alert_settings WHERE account_id = substr(u.id, 8)))
    LOOP
        PERFORM suanli_alerts(a_id[i], a_dpo0[i], a_dpo[i], a_cpo[i]);
    END LOOP;
    INSERT INTO ledger_account_slots AS l
        (account_id, slot, asset, debits_pending, debits_posted, credits_pending, credits_posted)
    SELECT a, p_owner, x, 0, dpo, cp, cpo FROM unnest(m_account, m_asset, m_dpo, m_cp, m_cpo) AS u(a, x, dpo, cp, cpo)
    ORDER BY a
    ON CONFLICT (account_id, slot) DO UPDATE SET
        debits_posted = l.debits_posted + excluded.debits_posted,
        credits_pending = l.credits_pending + excluded.credits_pending,
        credits_posted = l.credits_posted + excluded.credits_posted;
END $$;

-- A writer's batch of hot-path jobs in one call (store/deferred.py), answering as before (pg_batch.sql): every
-- job's turn first, in the batch's order; then the common jobs together (suanli_common); then the rest, and
-- any common job that was not plain after all, one by one.
-- Sequential scans are off in it: open_pending is small and churns, so its statistics say a scan of it is cheap,
-- while its pages are mostly dead rows between vacuums; a batch deletes its settled reservations through the
-- index, whatever they say.
CREATE OR REPLACE FUNCTION suanli_batch(p_jobs JSONB, p_owner TEXT, p_now BIGINT, p_turns JSONB)
RETURNS JSON LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    n INTEGER := jsonb_array_length(p_jobs);
    answers JSON[] := array_fill(NULL::JSON, ARRAY[n]);
    common INTEGER[] := '{}';
    rest INTEGER[] := '{}';
    found JSON[];
    m INTEGER;
    job JSONB;
    turn JSONB;
    s RECORD;
BEGIN
    FOR j IN 1 .. n LOOP
        turn := p_turns->(j - 1);
        job := p_jobs->(j - 1);
        IF jsonb_typeof(turn) = 'array' AND NOT suanli_turn(turn->>0, (turn->>1)::BOOLEAN) THEN
            CONTINUE;  -- another writer's open batch has its account: answered NULL, sent again
        ELSIF job->>0 = 'reserve' AND (job->>2)::BIGINT <> 0
                AND EXISTS (SELECT 1 FROM accounts WHERE id = job->>1 AND has_plans <> 0) THEN
            answers[j] := json_build_array('plans');
        ELSIF suanli_common_job(job->>0, CASE WHEN job->>0 = 'reserve' THEN job->3 ELSE job->1 END) THEN
            common := common || j;
        ELSE
            rest := rest || j;
        END IF;
    END LOOP;
    IF common <> '{}' THEN
        found := suanli_common(p_jobs, common, p_owner, p_now);
        FOR k IN 1 .. cardinality(common) LOOP
            IF found[k] IS NULL THEN
                rest := rest || common[k];
            ELSE
                answers[common[k]] := found[k];
            END IF;
        END LOOP;
        SELECT array_agg(j ORDER BY j) INTO rest FROM unnest(rest) AS j;
    END IF;
    FOREACH m IN ARRAY coalesce(rest, '{}') LOOP
        job := p_jobs->(m - 1);
        IF job->>0 = 'entry' THEN
            answers[m] := json_build_array(suanli_entry(job->1, job->>2, p_owner, p_now));
        ELSIF job->>0 = 'reserve' THEN
            answers[m] := json_build_array(suanli_entry(job->3, job->>4, p_owner, p_now));
        ELSE
            SELECT * INTO s FROM suanli_settle(job->1, job->>2, p_owner, p_now, job->3, job->>4);
            answers[m] := json_build_array(s.refused, s.b_asset, s.b_floor, s.b_dp, s.b_dpo, s.b_cp, s.b_cpo);
        END IF;
    END LOOP;
    RETURN array_to_json(answers);
END $$;

-- The same for an entry sent on its own (a Python job of the writer's, store/deferred.py's FALLBACK).
ALTER FUNCTION suanli_entry(JSONB, TEXT, TEXT, BIGINT) SET enable_seqscan = off;
