"""The alerts' outbox on the real store (both): an event is written, in the ledger movement's transaction, iff
a level was crossed, once per crossing; an entry refused part-way leaves none; renewal failures and expiring
packs are written by their jobs once."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.economy import alerts, names
from suanli.economy import store as econ
from suanli.ledger import ASSET_CNY, Kind, Transfer
from suanli.ledger import names as ledger_names
from suanli.ledger.sqlite import apply_entry, apply_if_covered, open_account, verify
from suanli.store.conn import Conn
from suanli.store.db import now_ms, open_database, run_in_transaction, transaction
from suanli.store.outbox_schema import ALERT_LEVELS
from tests.stores import examples, fresh_database

SINK = "platform:sink"
BUDGET_ASSET = names.BUDGET_ASSETS["cny"]
_ids = itertools.count()


@pytest.fixture(scope="module")
def conn() -> Iterator[Conn]:
    with tempfile.TemporaryDirectory() as directory:
        db = open_database(fresh_database(Path(directory), "alerts.db"))
        with transaction(db):
            open_account(db, ledger_names.TOPUP_SOURCE, ASSET_CNY, None)
            open_account(db, SINK, ASSET_CNY, None)
            open_account(db, names.spent(BUDGET_ASSET), BUDGET_ASSET, None)
            open_account(db, names.grants(BUDGET_ASSET), BUDGET_ASSET, None)
        yield db
        db.close()


class Account:
    """A fresh account with a wallet, a CNY budget of ``granted`` and alert settings; the model of its events."""

    def __init__(self, conn: Conn, threshold: int, granted: int) -> None:
        self.id = f"acct_{next(_ids)}"
        self.wallet, self.budget_id = ledger_names.wallet(self.id), f"bdg_{self.id}"
        self.budget = names.budget(self.budget_id, 0)
        self.threshold, self.granted = threshold, granted
        self.credits = self.debits = self.spent = 0
        self.expected: set[str] = set()
        now = now_ms()

        def setup(c: Conn) -> None:
            c.execute(
                "INSERT INTO accounts (id, name, tier, created_at_ms) VALUES (?, ?, 'enterprise', ?)",
                (self.id, self.id, now),
            )
            econ.insert_budget(c, econ.Budget(self.budget_id, self.id, None, "day", "cny", granted, now))
            econ.grant(c, self.budget, BUDGET_ASSET, granted)
            open_account(c, self.wallet, ASSET_CNY, 0)
            alerts.save_settings(c, self.id, alerts.AlertSettings(balance_below_nano=threshold))

        run_in_transaction(conn, setup)

    def top_up(self, amount: int) -> list[Transfer]:
        self.credits += amount
        return [
            Transfer(f"{self.id}.t{next(_ids)}", Kind.POSTED, ledger_names.TOPUP_SOURCE, self.wallet, ASSET_CNY, amount)
        ]

    def spend(self, amount: int) -> list[Transfer]:
        """A wallet payment and the same amount off the budget, as a reservation then its post."""
        if amount > self.credits - self.debits or amount > self.granted - self.spent:
            return []
        old = self.credits - self.debits
        if old >= self.threshold > old - amount:
            self.expected.add(f"evt:balance.below:{self.wallet}:{self.credits}")
        for percent in ALERT_LEVELS["budget"]:
            level = -(-percent * self.granted // 100)
            if self.spent < level <= self.spent + amount:
                self.expected.add(f"evt:budget.used:{self.budget}:{self.granted}:{percent}")
        self.debits += amount
        self.spent += amount
        pending = Transfer(
            f"{self.id}.r{next(_ids)}", Kind.PENDING, self.budget, names.spent(BUDGET_ASSET), BUDGET_ASSET, amount
        )
        return [
            Transfer(f"{self.id}.p{next(_ids)}", Kind.POSTED, self.wallet, SINK, ASSET_CNY, amount),
            pending,
            Transfer(
                f"{pending.id}.post",
                Kind.POST,
                self.budget,
                names.spent(BUDGET_ASSET),
                BUDGET_ASSET,
                amount,
                pending.id,
            ),
        ]

    def refused(self, amount: int) -> list[Transfer]:
        """A wallet payment, then an overdraft of the budget in the same entry: nothing of it stands."""
        return [
            Transfer(f"{self.id}.x{next(_ids)}", Kind.POSTED, self.wallet, SINK, ASSET_CNY, amount),
            Transfer(
                f"{self.id}.o{next(_ids)}",
                Kind.POSTED,
                self.budget,
                names.spent(BUDGET_ASSET),
                BUDGET_ASSET,
                self.granted + 1,
            ),
        ]


def events_of(conn: Conn, account_id: str) -> list[str]:
    return [
        row[0] for row in conn.execute("SELECT id FROM alert_events WHERE account_id = ? ORDER BY id", (account_id,))
    ]


steps = st.lists(st.tuples(st.sampled_from(["top_up", "spend", "refused"]), st.integers(1, 3_000)), max_size=25)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(threshold=st.integers(1, 5_000), granted=st.integers(1, 10_000), steps=steps)
def test_an_event_is_written_iff_a_level_is_crossed_and_once(
    conn: Conn, threshold: int, granted: int, steps: list[tuple[str, int]]
) -> None:
    account = Account(conn, threshold, granted)
    for what, amount in steps:
        entry = getattr(account, what)(amount)
        if entry:
            applied = run_in_transaction(conn, lambda c, e=entry: apply_if_covered(c, e))
            assert applied == (what != "refused")
    assert events_of(conn, account.id) == sorted(account.expected)
    run_in_transaction(conn, verify)


def test_no_settings_no_events_and_a_replay_adds_none(conn: Conn) -> None:
    account = Account(conn, threshold=100, granted=150)
    run_in_transaction(conn, lambda c: apply_entry(c, account.top_up(200)))
    entry = account.spend(150)
    for _ in range(2):  # the replay of the same transfers crosses nothing again
        run_in_transaction(conn, lambda c: apply_entry(c, entry))
    assert len(events_of(conn, account.id)) == 4  # below ¥threshold; the budget's 50, 80 and 100 %
    quiet = Account(conn, threshold=100, granted=150)
    conn.execute("DELETE FROM alert_settings WHERE account_id = ?", (quiet.id,))
    run_in_transaction(conn, lambda c: apply_entry(c, quiet.top_up(200) + quiet.spend(150)))
    assert events_of(conn, quiet.id) == []


def test_an_expiring_pack_and_a_failed_renewal_are_written_once(conn: Conn) -> None:
    account = Account(conn, threshold=1, granted=1)
    now = now_ms()
    product = "p" + account.id
    asset = names.pack_asset(product)

    def setup(c: Conn) -> econ.Pack:
        c.execute(
            "INSERT INTO products (id, spec, listed_by, listed_at_ms) VALUES (?, '{}', 'test', ?)", (product, now)
        )
        pack = econ.create_pack(c, account.id, product, tokens=10, expires_at_ms=now + 2 * 86_400_000, origin="t")
        open_account(c, names.issue(product), asset, None)
        apply_entry(
            c, [Transfer(f"{pack.id}.issue", Kind.POSTED, names.issue(product), names.pack(pack.id), asset, 10)]
        )
        sub = econ.Subscription(f"sub_{account.id}", account.id, product, now, now, now + 1, now, None)
        econ.insert_subscription(c, sub)
        alerts.renewal_failed(c, sub, now + 1, 5, now)
        alerts.renewal_failed(c, sub, now + 1, 5, now)
        return pack

    pack = run_in_transaction(conn, setup)
    assert run_in_transaction(conn, alerts.expiring_packs_job()) == 1
    assert run_in_transaction(conn, alerts.expiring_packs_job()) == 0
    assert sorted(events_of(conn, account.id)) == [
        f"evt:pack.expiring:{pack.id}",
        f"evt:subscription.renewal_failed:sub_{account.id}:{now + 1}",
    ]


@dataclass(frozen=True)
class Drawn:
    """A 5-request window and two packs of 10 tokens (the second past its expiry), and where draws go."""

    window: str
    requests: str
    pack: str
    expired: str
    sink: str
    asset: str


def window_and_packs(conn: Conn, account_id: str) -> Drawn:
    now = now_ms()
    product, sub_id = "w" + account_id, f"sub_w{account_id}"
    asset, requests = names.pack_asset(product), names.allowance_asset("requests")
    window = names.allowance(sub_id, "5h", "requests", now)
    sink = "plans:used:" + product

    def setup(c: Conn) -> Drawn:
        c.execute(
            "INSERT INTO products (id, spec, listed_by, listed_at_ms) VALUES (?, '{}', 'test', ?)", (product, now)
        )
        econ.insert_subscription(c, econ.Subscription(sub_id, account_id, product, now, now, now + 1, now, None))
        econ.grant(c, window, requests, 5)
        open_account(c, names.issue(product), asset, None)
        open_account(c, sink, asset, None)
        packs = []
        for expires_at_ms in (now + 86_400_000, now - 1):  # the second is past its expiry: what it loses is forfeit
            pack = econ.create_pack(c, account_id, product, tokens=10, expires_at_ms=expires_at_ms, origin="t")
            issue = Transfer(f"{pack.id}.issue", Kind.POSTED, names.issue(product), names.pack(pack.id), asset, 10)
            apply_entry(c, [issue])
            packs.append(names.pack(pack.id))
        return Drawn(window, requests, packs[0], packs[1], sink, asset)

    return run_in_transaction(conn, setup)


def test_a_window_and_a_pack_cross_80_and_100_percent_once_and_a_refused_entry_or_a_forfeit_crosses_nothing(
    conn: Conn,
) -> None:
    account = Account(conn, threshold=1, granted=1)
    d = window_and_packs(conn, account.id)
    window, requests, pack, expired, sink, asset = d.window, d.requests, d.pack, d.expired, d.sink, d.asset

    def draw(amount: int, from_pack: int = 0, refused: bool = False) -> None:
        entry = [Transfer(f"{account.id}.w{next(_ids)}", Kind.POSTED, window, names.spent(requests), requests, amount)]
        if from_pack:
            entry.append(Transfer(f"{account.id}.k{next(_ids)}", Kind.POSTED, pack, sink, asset, from_pack))
        if refused:  # the budget's overdraft comes last: on PostgreSQL the draws before it are taken back
            entry += account.refused(0)[1:]
        assert run_in_transaction(conn, lambda c: apply_if_covered(c, entry)) is not refused

    draw(4, from_pack=10, refused=True)  # would cross every level of both, but nothing of it stands
    assert events_of(conn, account.id) == []
    draw(3, from_pack=7)  # 3 of 5 requests, 7 of 10 tokens: below 80 % (ceil(4) and 8)
    forfeit = Transfer(f"{account.id}.f{next(_ids)}", Kind.POSTED, expired, sink, asset, 10)
    run_in_transaction(conn, lambda c: apply_entry(c, [forfeit]))
    assert events_of(conn, account.id) == []
    draw(1, from_pack=1)
    at_80 = [f"evt:pack.used:{pack}:10:80", f"evt:window.used:{window}:5:80"]
    assert events_of(conn, account.id) == at_80
    draw(1, from_pack=2)
    assert events_of(conn, account.id) == sorted(
        [*at_80, f"evt:pack.used:{pack}:10:100", f"evt:window.used:{window}:5:100"]
    )
    rows = conn.execute("SELECT id, level, amount, total FROM alert_events WHERE account_id = ?", (account.id,))
    assert {row[0]: tuple(row[1:]) for row in rows} == {  # percent, used and granted, as the data shows them
        f"evt:pack.used:{pack}:10:80": (80, 8, 10),
        f"evt:pack.used:{pack}:10:100": (100, 10, 10),
        f"evt:window.used:{window}:5:80": (80, 4, 5),
        f"evt:window.used:{window}:5:100": (100, 5, 5),
    }
    run_in_transaction(conn, verify)
