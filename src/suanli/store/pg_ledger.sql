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

-- suanli_move, which every transfer below calls, is in pg_batch.sql (a later migration replaced it).

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
