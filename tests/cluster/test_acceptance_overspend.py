"""Overspend 0 on four workers: 1,000 concurrent calls on a wallet, a budget, a Coding Plan window and a pack
that each cover far fewer; every call is charged once or refused free, and the books balance (issue 11).

The four workers are four ``suanli serve`` processes on one PostgreSQL database, as on four machines. The
simulator answers at once, so the calls race each other at admission and settlement, not upstream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from suanli.money import cny_to_nano, nano_to_cny
from tests.cluster.helpers import (
    Cluster,
    Outcome,
    account_id,
    books,
    chat,
    open_reservations,
    query,
    running_cluster,
    scalar,
    storm,
    verify_ledger,
)
from tests.conftest import Simulator
from tests.pg import shared_server

WORKERS = 4
CALLS = 1_000
# deepseek-v3.2 on the simulator: this prompt is 15 tokens at ¥2/M, 10 output tokens at ¥3/M, so a call
# costs ¥0.00006 and reserves ¥0.000064 (its prompt bound is a little above the count).
CALL_COST_NANO = 60_000
CHEAP = chat("deepseek-v3.2", 10)
# Product bugs that fail these storms in most runs but not all (so the marks are not strict); each is pinned
# down deterministically, under a strict mark, by the test named.


@pytest.fixture(scope="module")
def cluster(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    database = shared_server().new_database()
    with running_cluster(tmp_path_factory.mktemp("overspend"), simulator, database, WORKERS) as running:
        yield running


def _settled_each_once(cluster: Cluster, outcomes: Sequence[Outcome]) -> list[str]:
    """Every call answered was charged once (200) or not at all (any refusal); the served calls' request ids."""
    assert all(o.request_id for o in outcomes), Counter((o.status, o.code) for o in outcomes)
    served = [o.request_id for o in outcomes if o.status == 200]
    refused = [o.request_id for o in outcomes if o.status != 200]
    db = cluster.database
    # A refused call wrote nothing: no transfer (not even a voided reservation) and no usage event.
    assert scalar(db, "SELECT count(*) FROM transfers WHERE split_part(id, '.', 1) = ANY(?)", (refused,)) == 0
    assert scalar(db, "SELECT count(*) FROM usage_events WHERE request_id = ANY(?)", (refused,)) == 0
    # A served call has one usage event, and its transfers paid the operators exactly that event's cost.
    per_request = query(
        db,
        "SELECT u.request_id, u.cost_nano, u.outcome, coalesce(sum(t.amount) FILTER (WHERE t.asset = 'CNY' "
        "AND t.credit_account LIKE 'sales:%'), 0) FROM usage_events u "
        "LEFT JOIN transfers t ON split_part(t.id, '.', 1) = u.request_id WHERE u.request_id = ANY(?) "
        "GROUP BY u.request_id, u.cost_nano, u.outcome",
        (served,),
    )
    assert len(per_request) == len(served)
    wrong = [row for row in per_request if not (row[2] == "ok" and row[1] > 0 and row[3] == row[1])]
    assert wrong == [], wrong[:5]
    return served


def _refusals_are(outcomes: Sequence[Outcome], expected: set[tuple[int, str]]) -> None:
    """Every call not served was refused for the funding it lacked, never for the store (503) or a failure."""
    statuses = Counter((o.status, o.code) for o in outcomes)
    assert set(statuses) - {(200, "")} <= expected, statuses


def _books_balance(cluster: Cluster, account: str, served: int) -> int:
    """The account's usage events and what the ledger moved agree; nothing is left reserved anywhere, no
    floor is broken (``ledger verify``). Returns what the calls cost."""
    ledger = books(cluster.database, account)
    assert ledger.events == served
    assert ledger.to_sales_nano == ledger.cost_nano
    assert open_reservations(cluster.database) == 0
    below = query(  # customers' accounts, each one row (the platform's are spread over writer slots)
        cluster.database,
        "SELECT id FROM ledger_accounts WHERE floor IS NOT NULL AND split_part(id, ':', 1) IN "
        "('wallet', 'pack', 'allow', 'budget') AND credits_posted - debits_posted - debits_pending < floor",
    )
    assert below == []
    verify_ledger(cluster.database)
    return ledger.cost_nano


def test_a_wallet_for_100_calls_pays_for_no_more_of_1000_concurrent_calls(cluster: Cluster, unique: str) -> None:
    funding_nano = 100 * CALL_COST_NANO
    key = cluster[0].account(unique, topup_cny=nano_to_cny(funding_nano))
    account = account_id(cluster[0], unique)
    outcomes = storm(cluster, key, CHEAP, CALLS)
    served = _settled_each_once(cluster, outcomes)
    assert 90 <= len(served) <= 100, len(served)
    cost = _books_balance(cluster, account, len(served))
    assert books(cluster.database, account).from_wallet_nano == cost <= funding_nano
    wallet = cluster[1].admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["reserved_nano"] == 0 and cny_to_nano(wallet["available"]) == funding_nano - cost >= 0
    _refusals_are(outcomes, {(402, "insufficient_balance")})


def test_a_budget_for_50_calls_is_never_overshot_by_1000_concurrent_calls(cluster: Cluster, unique: str) -> None:
    key = cluster[0].account(unique, topup_cny="10")
    account = account_id(cluster[0], unique)
    budget_nano = 50 * CALL_COST_NANO
    budget = cluster[1].admin(
        "POST",
        f"/admin/v1/accounts/{unique}/budgets",
        json={"period": "day", "unit": "cny", "amount": nano_to_cny(budget_nano)},
    )
    assert budget.status_code == 201, budget.text
    outcomes = storm(cluster, key, CHEAP, CALLS)
    served = _settled_each_once(cluster, outcomes)
    assert 45 <= len(served) <= 50, len(served)
    cost = _books_balance(cluster, account, len(served))
    assert cost <= budget_nano
    (used,) = query(
        cluster.database,
        "SELECT debits_posted, debits_pending FROM ledger_accounts WHERE id LIKE 'budget:' || ? || ':%'",
        (budget.json()["id"],),
    )
    assert used == (cost, 0)
    assert books(cluster.database, account).from_wallet_nano == cost  # the wallet paid, the budget limited
    _refusals_are(outcomes, {(429, "budget_exhausted")})


def test_a_coding_plan_window_of_80_prompts_serves_80_of_1000_concurrent_calls(cluster: Cluster, unique: str) -> None:
    key = cluster[0].account(unique, topup_cny="49")  # Coding Plan Lite's fee: the wallet is then empty
    account = account_id(cluster[0], unique)
    subscribed = cluster[1].admin("POST", f"/admin/v1/accounts/{unique}/subscription", json={"product": "coding-lite"})
    assert subscribed.status_code == 201, subscribed.text
    outcomes = storm(cluster, key, chat("glm-5", 10), CALLS)
    served = _settled_each_once(cluster, outcomes)
    windows = query(
        cluster.database,
        "SELECT w.start_ms, l.credits_posted, l.debits_posted, l.debits_pending FROM allowance_windows w "
        "JOIN subscriptions s ON s.id = w.subscription_id JOIN ledger_accounts l "
        "ON l.id = 'allow:' || s.id || ':5h:requests:' || w.start_ms WHERE s.account_id = ? AND w.window_name = '5h'",
        (account,),
    )
    assert len(served) == 80, f"{len(served)} prompts served; 5-hour windows (start, granted, drawn, held): {windows}"
    assert [row[1:] for row in windows] == [(80, 80, 0)]  # one window opened, granted once, drawn to zero
    cost = _books_balance(cluster, account, len(served))
    assert books(cluster.database, account).from_wallet_nano == 0  # the plan paid the operator, not the wallet
    plans_paid = scalar(
        cluster.database,
        "SELECT coalesce(sum(amount), 0) FROM transfers WHERE debit_account = 'platform:plans' "
        "AND split_part(id, '.', 1) = ANY(?)",
        (served,),
    )
    assert plans_paid == cost
    wallet = cluster[2].admin("GET", f"/admin/v1/accounts/{unique}").json()["wallet"]
    assert wallet["available"] == "0" and wallet["reserved_nano"] == 0
    _refusals_are(outcomes, {(429, "allowance_exhausted")})


def test_a_pack_for_60_calls_pays_for_no_more_of_1000_concurrent_calls(cluster: Cluster, unique: str) -> None:
    key = cluster[0].account(unique, topup_cny="1")  # pack-small's price: the wallet is then empty
    account = account_id(cluster[0], unique)
    bought = cluster[1].admin("POST", f"/admin/v1/accounts/{unique}/packs", json={"product": "pack-small"})
    assert bought.status_code == 201, bought.text
    pack = bought.json()["pack"]["id"]
    # pack-small: 3,000 tokens, a prompt token draws 1, an output token 2: 15 + 2 × 17 ≈ 50 a call.
    outcomes = storm(cluster, key, chat("deepseek-v3.2", 17), CALLS)
    served = _settled_each_once(cluster, outcomes)
    assert 55 <= len(served) <= 75, len(served)
    _books_balance(cluster, account, len(served))
    assert books(cluster.database, account).from_wallet_nano == 0
    (held,) = query(
        cluster.database,
        "SELECT credits_posted, debits_posted, debits_pending FROM ledger_accounts WHERE id = ?",
        (f"pack:{pack}",),
    )
    assert held[0] == 3000 and held[1] <= 3000 and held[2] == 0
    drawn = query(
        cluster.database,
        "SELECT u.input_tokens + 2 * u.output_tokens FROM usage_events u WHERE u.account_id = ?",
        (account,),
    )
    assert sum(row[0] for row in drawn) == held[1]  # the pack gave exactly what the served calls drew
    # Out of tokens the call is refused 402 (the wallet is empty), or 402 not_covered_by_plans.
    _refusals_are(outcomes, {(402, "insufficient_balance"), (402, "not_covered_by_plans")})
