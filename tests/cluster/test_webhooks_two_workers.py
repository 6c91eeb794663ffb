"""Two gateways on one PostgreSQL database deliver the alerts' outbox side by side, and each alert exactly once
(docs/statements.md, *Retries*: each worker claims due deliveries with ``FOR UPDATE SKIP LOCKED``).

Accounts with a balance threshold and a webhook cross it by calls through either gateway, and a burst of
events is written straight into the outbox in one transaction, so that both workers, polling every 50 ms,
find the same due deliveries at once. The receiver is real (HTTP on 127.0.0.1), answers 200 at once, and
notes which gateway sent each request: with nothing failing there is no reason for any second POST.

Whether two workers' claims meet within the same milliseconds is left to chance there (a claim without its
row locks was caught in about one run of three), so the second test makes them meet: one claim is held open
while the other runs, as two workers' would be at the worst moment.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from suanli.economy import alerts
from suanli.gateway import accounts, webhooks
from suanli.gateway.webhook_delivery import Claimed, claim_job
from suanli.store.conn import Conn
from suanli.store.db import now_ms, open_database, run_in_transaction, transaction
from tests.cluster.helpers import Cluster, account_id, chat, query, running_cluster
from tests.conftest import Simulator
from tests.pg import shared_server
from tests.stores import inspect
from tests.webhook_receiver import Receiver, receiving, verify

WORKERS = 2
ACCOUNTS = 4  # each crosses its threshold once, by a call
BURST = 240  # events written at once: several claim batches (WEBHOOK_DELIVERY_BATCH_MAX) for each worker
# A call of deepseek-v3.2 costs ¥0.00006 (tests/cluster/test_acceptance_overspend.py): ¥10 goes below this at
# the first call.
THRESHOLD_CNY = "9.99999"
WAIT_S = 15.0
SETTLE_S = 0.5  # after the last delivery is recorded: time for a second POST, if one were on its way
# The second test's two claims, of BATCH deliveries each. A claim that skips locked rows returns in
# milliseconds; one that waited on them would get them once the holder commits after CLAIM_WAIT_S, well
# within the store's statement timeout (5 s): a double claim, not a timeout.
BATCH = 10
CLAIM_WAIT_S = 2.0
CLAIM_MS = 60_000
ZONE = ZoneInfo("Asia/Shanghai")


@dataclass
class Attributing(Receiver):
    """Accepts every request at once and notes which gateway process sent it (by its socket, through /proc:
    the request's connection is open while it is answered)."""

    pids: Sequence[int] = ()
    senders: Counter[int] = field(default_factory=Counter)

    def answer(self, event_id: str, signature: str, body: bytes, sender_port: int = 0) -> int:
        self.record(event_id, signature, body)
        pid = _process_of(sender_port, self.pids)
        with self.lock:
            self.senders[pid] += 1
        return 200


def _process_of(port: int, pids: Sequence[int]) -> int:
    """Which of ``pids`` holds the socket bound to 127.0.0.1:``port`` (0: none of them)."""
    local = f"0100007F:{port:04X}"
    inodes = {f.split()[9] for f in Path("/proc/net/tcp").read_text().splitlines()[1:] if f.split()[1] == local}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").removesuffix("]") in inodes:
                        return pid
    return 0


@pytest.fixture
def cluster(simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("SUANLI_WEBHOOK_POLL_S", "0.05")  # both workers look often: their claims overlap
    with running_cluster(tmp_path, simulator, shared_server().new_database(), WORKERS) as running:
        yield running


def _hooked_accounts(cluster: Cluster, url: str) -> tuple[dict[str, str], list[str]]:
    """``ACCOUNTS`` accounts, set up through either gateway, each with a webhook to ``url`` and a threshold:
    their webhooks' secrets by account id, and their API keys."""
    secrets, keys = {}, []
    for i in range(ACCOUNTS):
        gateway, name = cluster[i % WORKERS], f"hooked{i}"
        key = gateway.account(name, topup_cny="10")
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
            made = api.post("/v1/webhooks", json={"url": url})
            assert made.status_code == 201, made.text
            assert api.put("/v1/alerts/settings", json={"balance_below": THRESHOLD_CNY}).status_code == 200
        secrets[account_id(gateway, name)] = str(made.json()["secret"])
        keys.append(key)
    return secrets, keys


def _cross(cluster: Cluster, keys: Sequence[str]) -> None:
    """One call per account, through the other gateway than the one that set it up."""
    for i, key in enumerate(keys):
        gateway = cluster[(i + 1) % WORKERS]
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json=chat("deepseek-v3.2", 10),
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )
        assert response.status_code == 200, response.text


def _renewals_failed(account_ids: Sequence[str], count: int) -> Callable[[Conn], None]:
    """``count`` failed renewals spread over ``account_ids``, written in the job's one transaction."""
    now = now_ms()

    def write(conn: Conn) -> None:
        for i in range(count):
            account, sub = account_ids[i % len(account_ids)], f"sub_burst{i}"
            event_id = f"evt:subscription.renewal_failed:{sub}:{now}"
            event = alerts.Event(event_id, account, "subscription.renewal_failed", sub, now, 1_000, 0, now)
            assert alerts.insert_event(conn, event)

    return write


def _burst(database: str, account_ids: Sequence[str]) -> None:
    """``BURST`` failed renewals in one transaction: due all at once."""
    conn = inspect(database)
    try:
        run_in_transaction(conn, _renewals_failed(account_ids, BURST))
    finally:
        conn.close()


def _delivered(database: str, expected: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while (states := dict(query(database, "SELECT state, count(*) FROM webhook_deliveries GROUP BY state"))) != {
        "delivered": expected
    }:
        assert time.monotonic() < deadline, f"not all delivered within {WAIT_S} s: {states}"
        time.sleep(0.1)


def test_two_workers_deliver_every_alert_exactly_once(cluster: Cluster) -> None:
    pids = [g.process.pid for g in cluster.gateways]
    with receiving(Attributing(pids=pids)) as receiver:
        secrets, keys = _hooked_accounts(cluster, receiver.url)
        _cross(cluster, keys)
        _burst(cluster.database, list(secrets))
        expected = ACCOUNTS + BURST
        _delivered(cluster.database, expected)
        time.sleep(SETTLE_S)
        cluster.stop()

    events = dict(query(cluster.database, "SELECT id, type FROM alert_events"))
    assert Counter(events.values()) == {"balance.below": ACCOUNTS, "subscription.renewal_failed": BURST}
    sent = Counter(event_id for event_id, _, _ in receiver.requests)
    assert set(sent) == set(events)  # every event arrived
    assert [i for i, n in sent.items() if n > 1] == []  # and none twice
    for event_id, signature, body in receiver.requests:
        fields = orjson.loads(body)
        assert fields["id"] == event_id and verify(secrets[fields["account"]], signature, body)
    rows = query(cluster.database, "SELECT state, attempts, last_status FROM webhook_deliveries")
    assert Counter(rows) == {("delivered", 1, 200): expected}
    assert sorted(receiver.senders) == sorted(pids), receiver.senders  # both delivered, and only they


def _claimed(claims: Sequence[Claimed]) -> list[tuple[str, str]]:
    return sorted((c.event_id, c.webhook_id) for c in claims)


def test_a_claim_skips_the_deliveries_another_worker_holds_and_never_takes_them_again() -> None:
    """Worker A's claim is made and not yet committed (its rows locked) while worker B claims: B takes the
    others at once, and A's commit adds none of A's to B's."""
    database = shared_server().new_database()
    setup = open_database(database)
    try:
        account = run_in_transaction(setup, accounts.create_account_job("claims", "enterprise"))
        run_in_transaction(setup, webhooks.create_job(account.id, "http://127.0.0.1:9/hooks", None))
        run_in_transaction(setup, _renewals_failed([account.id], 2 * BATCH))
        run_in_transaction(setup, alerts.prepare_job(ZONE))
    finally:
        setup.close()
    a, b = inspect(database), inspect(database)
    try:
        with ThreadPoolExecutor(1) as pool:
            with transaction(a):
                held = claim_job(now_ms(), CLAIM_MS, limit=BATCH)(a)
                other = pool.submit(run_in_transaction, b, claim_job(now_ms(), CLAIM_MS, limit=2 * BATCH))
                answered, _ = wait([other], timeout=CLAIM_WAIT_S)
            taken = other.result()
    finally:
        a.close()
        b.close()
    assert len(held) == BATCH and not set(_claimed(held)) & set(_claimed(taken))  # none claimed twice
    assert len(_claimed(held) + _claimed(taken)) == 2 * BATCH  # and every one claimed
    assert answered  # B did not wait for A's commit
