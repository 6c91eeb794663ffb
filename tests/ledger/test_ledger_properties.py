"""Hypothesis properties of the ledger, run against the real SQLite store.

A state machine moves money at random (top-ups, reservations, posts, voids, transfers, linked entries,
replays) and checks after every step that the store agrees with a plain model, that every asset nets to
zero, that no account is below its floor, that a post never exceeds its pending amount, and that each
reservation is resolved at most once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from suanli.ledger import Kind, LedgerRejected, Rejection, Transfer, entries, names
from suanli.ledger.sqlite import apply_entry, open_account, open_pending, read_balance, verify
from suanli.store.conn import Conn
from suanli.store.db import open_database, transaction
from tests.stores import examples, fresh_database

ASSET = "CNY"
SOURCE = "platform:topup"
SALES = "sales:op"
WALLETS = {"wallet:a": 0, "wallet:b": 0, "wallet:credit": -5_000}  # name -> floor
OPERATOR = "op2"
amounts = st.integers(min_value=0, max_value=20_000)


class LedgerMachine(RuleBasedStateMachine):
    pendings = Bundle("pendings")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.conn: Conn = open_database(fresh_database(Path(self.dir.name), "ledger.db"))
        with transaction(self.conn):
            open_account(self.conn, SOURCE, ASSET, None)
            open_account(self.conn, SALES, ASSET, None)
            open_account(self.conn, names.ESCROW, ASSET, names.ESCROW_FLOOR_NANO)
            open_account(self.conn, names.sales(OPERATOR), ASSET, None)
            for name, floor in WALLETS.items():
                open_account(self.conn, name, ASSET, floor)
        accounts = [SOURCE, SALES, names.ESCROW, names.sales(OPERATOR), *WALLETS]
        self.posted = {name: 0 for name in accounts}  # credits - debits, posted
        self.reserved = {name: 0 for name in WALLETS}
        self.pending_amount: dict[str, int] = {}
        self.resolved: set[str] = set()
        self.counter = 0

    def teardown(self) -> None:
        self.conn.close()
        self.dir.cleanup()

    def _id(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def _apply(self, transfers: list[Transfer]) -> Rejection | None:
        try:
            with transaction(self.conn):
                apply_entry(self.conn, transfers, "req")
        except LedgerRejected as exc:
            return exc.rejection
        return None

    def _available(self, wallet: str) -> int:
        return self.posted[wallet] - self.reserved[wallet] - WALLETS[wallet]

    @rule(wallet=st.sampled_from(sorted(WALLETS)), amount=amounts)
    def top_up(self, wallet: str, amount: int) -> None:
        assert self._apply([Transfer(self._id(), Kind.POSTED, SOURCE, wallet, ASSET, amount)]) is None
        self.posted[SOURCE] -= amount
        self.posted[wallet] += amount

    @rule(target=pendings, wallet=st.sampled_from(sorted(WALLETS)), amount=amounts)
    def reserve(self, wallet: str, amount: int) -> str:
        transfer_id = self._id()
        rejection = self._apply([Transfer(transfer_id, Kind.PENDING, wallet, SALES, ASSET, amount)])
        if amount > self._available(wallet):
            assert rejection is Rejection.EXCEEDS_FLOOR
            return "missing"
        assert rejection is None
        self.reserved[wallet] += amount
        self.pending_amount[transfer_id] = amount
        return f"{transfer_id}|{wallet}"

    @rule(pending=consumes(pendings), extra=st.integers(min_value=-20_000, max_value=100))
    def post(self, pending: str, extra: int) -> None:
        if pending == "missing":
            return
        transfer_id, wallet = pending.split("|")
        amount = max(0, self.pending_amount[transfer_id] + extra)
        rejection = self._apply([Transfer(self._id(), Kind.POST, wallet, SALES, ASSET, amount, transfer_id)])
        if amount > self.pending_amount[transfer_id]:
            assert rejection is Rejection.EXCEEDS_PENDING
            self._void(transfer_id, wallet)
            return
        assert rejection is None
        self._resolve(transfer_id, wallet, amount)

    @rule(pending=consumes(pendings))
    def void(self, pending: str) -> None:
        if pending != "missing":
            self._void(*pending.split("|"))

    def _void(self, transfer_id: str, wallet: str) -> None:
        assert self._apply([Transfer(self._id(), Kind.VOID, wallet, SALES, ASSET, 0, transfer_id)]) is None
        self._resolve(transfer_id, wallet, 0)

    def _resolve(self, transfer_id: str, wallet: str, amount: int) -> None:
        self.reserved[wallet] -= self.pending_amount[transfer_id]
        self.posted[wallet] -= amount
        self.posted[SALES] += amount
        self.resolved.add(transfer_id)
        # A second resolution of the same reservation is always refused.
        again = self._apply([Transfer(self._id(), Kind.VOID, wallet, SALES, ASSET, 0, transfer_id)])
        assert again is Rejection.PENDING_ALREADY_RESOLVED

    @rule(source=st.sampled_from(sorted(WALLETS)), to=st.sampled_from(sorted(WALLETS)), amount=amounts)
    def move(self, source: str, to: str, amount: int) -> None:
        rejection = self._apply([Transfer(self._id(), Kind.POSTED, source, to, ASSET, amount)])
        if source == to:
            assert rejection is Rejection.SAME_ACCOUNT
        elif amount > self._available(source):
            assert rejection is Rejection.EXCEEDS_FLOOR
        else:
            assert rejection is None
            self.posted[source] -= amount
            self.posted[to] += amount

    @rule(wallet=st.sampled_from(sorted(WALLETS)), first=amounts, second=amounts)
    def linked_entry_is_all_or_nothing(self, wallet: str, first: int, second: int) -> None:
        entry = [
            Transfer(self._id(), Kind.POSTED, wallet, SALES, ASSET, first),
            Transfer(self._id(), Kind.POSTED, wallet, SALES, ASSET, second),
        ]
        rejection = self._apply(entry)
        if first + second > self._available(wallet):
            assert rejection is Rejection.EXCEEDS_FLOOR  # and neither transfer applied
        else:
            assert rejection is None
            self.posted[wallet] -= first + second
            self.posted[SALES] += first + second

    @rule(account=st.sampled_from(["a", "b"]), reserved=amounts, cost=amounts)
    def request_through_escrow(self, account: str, reserved: int, cost: int) -> None:
        """The gateway's own entries: reserve into escrow, then post the cost and pay it on to the
        operator, or void when it cost nothing; settling twice is refused."""
        wallet = names.wallet(account)
        request_id = self._id()
        rejection = self._apply([entries.reservation(request_id, account, reserved)])
        if reserved > self._available(wallet):
            assert rejection is Rejection.EXCEEDS_FLOOR
            return
        assert rejection is None
        pending = entries.reservation(request_id, account, reserved)
        cost = min(cost, reserved)  # the gateway never settles above its reservation (pricing.charge)
        assert self._apply(entries.settlement(request_id, pending, OPERATOR, cost)) is None
        self.posted[wallet] -= cost
        self.posted[names.sales(OPERATOR)] += cost
        again = self._apply(entries.settlement(request_id, pending, OPERATOR, cost))
        assert again is None  # the same entry replayed: idempotent, nothing moves twice
        other = entries.settlement(request_id + "x", pending, OPERATOR, 0)
        assert self._apply(other) is Rejection.PENDING_ALREADY_RESOLVED

    @rule(amount=amounts)
    def replay_is_idempotent(self, amount: int) -> None:
        transfer = Transfer(self._id(), Kind.POSTED, SOURCE, "wallet:a", ASSET, amount)
        assert self._apply([transfer]) is None
        assert self._apply([transfer]) is None  # the same id again: applied once
        changed = Transfer(transfer.id, Kind.POSTED, SOURCE, "wallet:a", ASSET, amount + 1)
        assert self._apply([changed]) is Rejection.EXISTS_WITH_DIFFERENT_FIELDS
        self.posted[SOURCE] -= amount
        self.posted["wallet:a"] += amount

    @invariant()
    def store_matches_model_and_invariants_hold(self) -> None:
        verify(self.conn)  # sums match transfers, every asset nets to zero, floors hold
        for name, posted in self.posted.items():
            balance = read_balance(self.conn, name)
            assert balance is not None and balance.posted == posted
            if name in WALLETS:
                assert balance.debits_pending == self.reserved[name]
                assert balance.available >= WALLETS[name]
        escrow = read_balance(self.conn, names.ESCROW)
        assert escrow is not None and escrow.posted == 0  # escrow passes money on, never keeps it
        open_ids = {t.id for t, _ in open_pending(self.conn)}
        assert open_ids == set(self.pending_amount) - self.resolved
        assert sum(self.posted.values()) == 0


TestLedger = LedgerMachine.TestCase
TestLedger.settings = settings(
    max_examples=examples(60), stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
