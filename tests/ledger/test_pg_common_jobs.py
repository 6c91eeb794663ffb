"""The batch's common jobs, run as a set (store/pg_flat.sql), against the same jobs run one by one by the
generic functions (``suanli_entry``, ``suanli_settle``), on two databases given the same batches.

Each batch's jobs touch one customer account each, so their order in it does not matter, and every answer,
and afterwards every transfer, balance, open reservation, usage event and alert, must be the same. The batches
mix what the set-based path must hand to the generic one or refuse as it would: replays, ids taken by another
transfer, wallets that cannot cover a reservation or do not exist, an account that has taken up plans (a
reservation job answers 'plans'), reservations of another asset, settlements
of an unknown or mismatched reservation or for more than it holds, voids, payments on to a missing account,
balances asked of another account, and top-ups between them. Many jobs on one account in one batch are
``test_batched_ledger_properties.py``'s; the cases where order within a batch matters are the examples at the
end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.ledger import ASSET_CNY, Kind, Transfer, names, postgres
from suanli.ledger.postgres import all_balances
from suanli.ledger.sqlite import apply_entry, open_account, verify
from suanli.store.conn import Conn
from suanli.store.db import open_database
from tests.pg import shared_server
from tests.stores import examples
from tests.usage_events import usage_event

WALLETS = 6  # each example's own, funded with FUNDS; the third may go 500 below zero (a credit limit)
FUNDS = 1_000
ALERTED = 1  # the wallet that alerts when its balance goes below ALERT_BELOW (most settlements of it cross)
ALERT_BELOW = FUNDS - 10
WITH_PLANS = 5  # the wallet whose account has taken up plans
MISSING = "w9"  # no ledger account
PACK = "pack:p0"  # an account of another asset
OWNER = "wrk_common"
_ids = itertools.count()

Job = tuple[Any, ...]  # (what, wallet index, amount, variant, reservation index)

jobs = st.tuples(
    st.sampled_from(["reserve", "reserve_job", "settle", "topup"]),
    st.integers(min_value=0, max_value=WALLETS),  # a wallet (the last: one that is missing)
    st.integers(min_value=0, max_value=700),
    st.integers(min_value=0, max_value=9),  # a variant of the job, below
    st.integers(min_value=0, max_value=30),  # which earlier reservation a settlement names
)
batches = st.lists(st.lists(jobs, min_size=1, max_size=12), min_size=1, max_size=6)


Pair = tuple[Conn, Conn]


@pytest.fixture(scope="module", name="pair")
def databases() -> Iterator[Pair]:
    """The two databases, made once: the first runs suanli_batch, the second the generic functions job by job."""
    made = [open_database(shared_server().new_database()) for _ in range(2)]
    try:
        for conn in made:
            _set_up(conn)
        yield made[0], made[1]
    finally:
        for conn in made:
            conn.close()


def _set_up(conn: Conn) -> None:
    conn.execute("BEGIN")
    open_account(conn, names.ESCROW, ASSET_CNY, names.ESCROW_FLOOR_NANO)
    open_account(conn, names.sales("op"), ASSET_CNY, None)
    open_account(conn, names.TOPUP_SOURCE, ASSET_CNY, None)
    open_account(conn, "platform:other", ASSET_CNY, None)
    open_account(conn, PACK, "tokens", 0)
    conn.execute("COMMIT")


def _open_wallets(conn: Conn, wallets: list[str]) -> None:
    """An example's wallets, funded; one of them alerts, and the account of another has taken up plans."""
    conn.execute("BEGIN")
    for n, wallet in enumerate(wallets):
        open_account(conn, names.wallet(wallet), ASSET_CNY, -500 if n == 2 else 0)
        fund = Transfer(f"fund.{wallet}", Kind.POSTED, names.TOPUP_SOURCE, names.wallet(wallet), ASSET_CNY, FUNDS)
        apply_entry(conn, [fund])
    for n in (ALERTED, WITH_PLANS):
        conn.execute(
            "INSERT INTO accounts (id, name, tier, created_at_ms, has_plans) VALUES (?, ?, 'enterprise', 0, ?)",
            (wallets[n], wallets[n], int(n == WITH_PLANS)),
        )
    conn.execute(
        "INSERT INTO alert_settings (account_id, balance_below_nano, updated_at_ms) VALUES (?, ?, 0)",
        (wallets[ALERTED], ALERT_BELOW),
    )
    conn.execute("COMMIT")


def _reservation(request_id: str, wallet: str, amount: int, variant: int) -> Transfer:
    debit = PACK if variant == 9 else names.wallet(wallet)
    asset = "tokens" if variant == 9 else ASSET_CNY
    credit = "platform:nowhere" if variant == 8 else names.ESCROW
    return Transfer(f"{request_id}.reserve", Kind.PENDING, debit, credit, asset, amount)


def _settlement(
    request_id: str, pending: Transfer, amount: int, variant: int, other: str = ""
) -> tuple[list[Transfer], str]:
    """A settlement of ``pending`` in one of its variants, and the account whose balance it asks (variant 7:
    ``other``'s)."""
    kind = Kind.VOID if variant == 1 else Kind.POST
    cost = 0 if variant == 1 else min(amount, pending.amount) if variant != 2 else pending.amount + 1
    pending_id = f"nobody{request_id}.reserve" if variant == 3 else pending.id
    credit = "platform:other" if variant == 4 else pending.credit_account
    post = Transfer(f"{request_id}.settle", kind, pending.debit_account, credit, pending.asset, cost, pending_id)
    pay_to = "sales:nobody" if variant == 5 else names.sales("op")
    settle = (
        [post]
        if variant in (1, 6)
        else [post, Transfer(f"{request_id}.pay", Kind.POSTED, names.ESCROW, pay_to, pending.asset, cost)]
    )
    balance_of = names.wallet(other) if variant == 7 else pending.debit_account
    return settle, balance_of


def _calls(plan: list[list[Job]], wallets: list[str]) -> Iterator[list[list[Any]]]:
    """Each batch's jobs, as the writer sends them, one per customer account."""
    reserved: list[tuple[str, str, Transfer]] = []  # of earlier batches: (request, wallet, transfer)
    for batch in plan:
        calls: list[list[Any]] = []
        touched: set[str] = set()
        made: list[tuple[str, str, Transfer]] = []
        for what, wallet_n, amount, variant, which in batch:
            wallet = (*wallets, MISSING)[wallet_n]
            request_id = f"c{next(_ids)}"
            if what == "settle" and reserved:
                request_id, wallet, pending = reserved[which % len(reserved)]
            # the accounts the job touches: its wallet, and the first for a settlement asking its balance
            needs = {wallet, wallets[0]} if what == "settle" and variant == 7 else {wallet}
            if needs & touched or (what == "settle" and not reserved):
                continue
            touched |= needs
            if what in ("reserve", "reserve_job"):
                pending = _reservation(request_id, wallet, amount, variant)
                made.append((request_id, wallet, pending))
                if what == "reserve_job":
                    calls.append(postgres.reserve_statement(wallet, True, pending)())
                else:
                    calls.append(postgres.entry_statement([pending], request_id)())
            elif what == "topup":
                fund = Transfer(
                    f"{request_id}.top", Kind.POSTED, names.TOPUP_SOURCE, names.wallet(wallet), ASSET_CNY, amount
                )
                calls.append(postgres.entry_statement([fund], request_id)())
            else:
                transfers, balance_of = _settlement(request_id, pending, amount, variant, wallets[0])
                event = usage_event(request_id, wallet, cost_nano=transfers[0].amount)
                calls.append(postgres.settle_statement(transfers, event, balance_of)())
        reserved.extend(made)
        yield calls


def _by_batch(conn: Conn, calls: list[list[Any]], now: int) -> list[Any]:
    conn.execute("BEGIN")
    row = conn.execute(
        "SELECT suanli_batch(?::jsonb, ?, ?, ?::jsonb)",
        (orjson.dumps(calls).decode(), OWNER, now, orjson.dumps([None] * len(calls)).decode()),
    ).fetchone()
    conn.execute("COMMIT")
    return list(row[0])


def _one_by_one(conn: Conn, calls: list[list[Any]], now: int) -> list[Any]:
    """The same jobs through the generic functions, one by one (a reservation job through ``suanli_reserve``,
    which checks the account's plans first)."""
    conn.execute("BEGIN")
    answers = [_generic(conn, call, now) for call in calls]
    conn.execute("COMMIT")
    return answers


def _generic(conn: Conn, call: list[Any], now: int) -> list[Any]:
    kind = call[0]
    if kind == "settle":
        row = conn.execute(
            "SELECT (s).refused, (s).b_asset, (s).b_floor, (s).b_dp, (s).b_dpo, (s).b_cp, (s).b_cpo "
            "FROM (SELECT suanli_settle(?::jsonb, ?, ?, ?, ?::jsonb, ?) AS s) AS x",
            (orjson.dumps(call[1]).decode(), call[2], OWNER, now, orjson.dumps(call[3]).decode(), call[4]),
        ).fetchone()
        return list(row)
    if kind == "reserve":
        row = conn.execute(
            "SELECT suanli_reserve(?, ?, ?::jsonb, ?, ?, ?)",
            (call[1], call[2], orjson.dumps(call[3]).decode(), call[4], OWNER, now),
        )
    else:
        row = conn.execute(
            "SELECT suanli_entry(?::jsonb, ?, ?, ?)", (orjson.dumps(call[1]).decode(), call[2], OWNER, now)
        )
    return [row.fetchone()[0]]


def _state(conn: Conn) -> tuple[Any, ...]:
    return (
        conn.execute(
            "SELECT id, kind, debit_account, credit_account, asset, amount, pending_id, memo FROM transfers ORDER BY id"
        ).fetchall(),
        sorted(all_balances(conn), key=lambda b: b.account_id),
        conn.execute("SELECT transfer_id, request_id, owner FROM open_pending ORDER BY transfer_id").fetchall(),
        conn.execute("SELECT request_id, cost_nano FROM usage_events ORDER BY request_id").fetchall(),
        conn.execute(
            "SELECT id, account_id, type, subject, level, amount, total FROM alert_events ORDER BY id"
        ).fetchall(),
    )


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=batches)
def test_the_common_jobs_as_a_set_answer_and_write_as_the_generic_functions_one_by_one(
    pair: Pair, plan: list[list[Job]]
) -> None:
    by_batch, one_by_one = pair
    wallets = [f"e{next(_ids)}w{n}" for n in range(WALLETS)]
    for conn in pair:
        _open_wallets(conn, wallets)
    for n, calls in enumerate(_calls(plan, wallets)):
        if not calls:
            continue
        now = 1_000 + n
        assert _by_batch(by_batch, calls, now) == _one_by_one(one_by_one, calls, now), calls
    assert _state(by_batch) == _state(one_by_one)
    verify(by_batch)


def _fresh_wallet(conn: Conn, funds: int) -> str:
    wallet = f"o{next(_ids)}"
    conn.execute("BEGIN")
    open_account(conn, names.wallet(wallet), ASSET_CNY, 0)
    apply_entry(
        conn, [Transfer(f"fund.{wallet}", Kind.POSTED, names.TOPUP_SOURCE, names.wallet(wallet), ASSET_CNY, funds)]
    )
    conn.execute("COMMIT")
    return wallet


def _reserve(wallet: str, amount: int) -> tuple[str, Transfer, list[Any]]:
    request_id = f"c{next(_ids)}"
    pending = _reservation(request_id, wallet, amount, 0)
    return request_id, pending, postgres.entry_statement([pending], request_id)()


def _settle(request_id: str, wallet: str, pending: Transfer, cost: int) -> list[Any]:
    transfers, balance_of = _settlement(request_id, pending, cost, 0)
    return postgres.settle_statement(transfers, usage_event(request_id, wallet, cost_nano=cost), balance_of)()


def _pending_debits(conn: Conn, wallet: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT debits_pending, debits_posted FROM ledger_accounts WHERE id = ?", (names.wallet(wallet),)
    ).fetchone()
    return row[0], row[1]


def test_reservations_of_one_wallet_in_one_batch_are_covered_in_the_batch_s_order(pair: Pair) -> None:
    conn, _ = pair
    wallet = _fresh_wallet(conn, 2_000)
    (_, _, a), (_, second, b), (_, _, c) = (_reserve(wallet, n) for n in (1_500, 800, 400))
    assert _by_batch(conn, [a, b, c], 1) == [[""], [f"exceeds_floor {second.id}"], [""]]
    assert _pending_debits(conn, wallet) == (1_900, 0)
    verify(conn)


def test_a_job_twice_in_one_batch_is_applied_once(pair: Pair) -> None:
    conn, _ = pair
    wallet = _fresh_wallet(conn, 2_000)
    (_, _, covered), (_, refused, too_much) = _reserve(wallet, 600), _reserve(wallet, 5_000)
    answers = _by_batch(conn, [covered, covered, too_much, too_much], 1)
    assert answers == [[""], [""], [f"exceeds_floor {refused.id}"], [f"exceeds_floor {refused.id}"]]
    assert _pending_debits(conn, wallet) == (600, 0)
    assert conn.execute("SELECT count(*) FROM transfers WHERE id = ?", (refused.id,)).fetchone()[0] == 0
    verify(conn)


def test_a_settlement_in_its_reservation_s_batch_settles_it_once_it_stands(pair: Pair) -> None:
    conn, _ = pair
    wallet = _fresh_wallet(conn, 2_000)
    request_id, pending, reserve = _reserve(wallet, 900)
    refused_id, refused, too_much = _reserve(wallet, 5_000)
    answers = _by_batch(
        conn,
        [_settle(request_id, wallet, pending, 300), reserve, _settle(refused_id, wallet, refused, 10), too_much],
        1,
    )
    assert answers[0] == ["", ASSET_CNY, 0, 0, 300, 0, 2_000]  # after its reservation, which came later
    assert answers[1] == [""]
    assert answers[2] == [f"pending_not_found {refused_id}.settle", None, None, None, None, None, None]
    assert answers[3] == [f"exceeds_floor {refused.id}"]
    assert _pending_debits(conn, wallet) == (0, 300)
    verify(conn)
