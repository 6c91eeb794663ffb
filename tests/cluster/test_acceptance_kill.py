"""kill -9 one of four workers under load: the others resolve what it had reserved, and nothing of theirs
(issue 11).

The simulator answers after ``TTFT_MS``, so every worker holds open reservations at any moment. The dead
worker's lease expires ``WORKER_LEASE_TTL_S`` after its last renewal; a live worker records the first
sighting and, one TTL later, ends the lease and resolves its reservations (store/cluster.py): about 22 s
after the kill at most, inside the issue's 25 s.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.cluster.helpers import (
    Cluster,
    Load,
    Outcome,
    chat,
    open_reservations,
    query,
    running_cluster,
    scalar,
    verify_ledger,
)
from tests.conftest import Simulator
from tests.pg import shared_server

WORKERS = 4
TTFT_MS = 400
CLIENTS_PER_WORKER = 6
RESOLVED_WITHIN_S = 25.0
CALL_TIMEOUT_S = 10.0
BODY = chat("deepseek-v3.2", 10)


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``condition`` until true; the seconds it took, or raise after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s:g} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _live_calls_untouched(database: str, live: list[Outcome]) -> None:
    """The live workers answered every call with 200, before, during and after the reclaim; each was charged
    once, at its cost, and none was voided or recovered by the reclaim."""
    assert Counter(o.status for o in live) == {200: len(live)}, Counter((o.status, o.code) for o in live)
    served = [o.request_id for o in live]
    rows = query(
        database,
        "SELECT outcome, count(*), min(cost_nano) FROM usage_events WHERE request_id = ANY(?) GROUP BY outcome",
        (served,),
    )
    assert len(rows) == 1 and rows[0][0] == "ok" and rows[0][1] == len(served) and rows[0][2] > 0, rows
    touched = scalar(
        database,
        "SELECT count(*) FROM transfers WHERE split_part(id, '.', 1) = ANY(?) AND (kind = 'void' OR id LIKE "
        "'%.recovered')",
        (served,),
    )
    assert touched == 0


def _dead_workers_resolved(database: str, victim_id: str, live_ids: list[str], orphans: int) -> None:
    """What the dead worker had reserved was resolved as recovery does (voided, with a "recovered" usage
    event); its lease ended, the others' did not; nothing is left reserved; the ledger verifies."""
    assert scalar(database, "SELECT count(*) FROM usage_events WHERE outcome = 'recovered'") == orphans
    assert query(database, "SELECT ended_at IS NOT NULL FROM workers WHERE id = ?", (victim_id,)) == [(True,)]
    live = query(database, "SELECT count(*) FROM workers WHERE id = ANY(?) AND ended_at IS NULL", (live_ids,))
    assert live == [(len(live_ids),)]
    assert open_reservations(database) == 0
    verify_ledger(database)


def _new_worker_serves(cluster: Cluster, key: str, old_ids: set[str]) -> None:
    fresh = cluster.add()
    assert cluster.worker_id(fresh) not in old_ids  # a lease of its own
    answer = httpx.post(
        f"{fresh.url}/v1/chat/completions",
        json=BODY,
        timeout=CALL_TIMEOUT_S,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200, answer.text
    reserved = f"{answer.headers['x-request-id']}.reserve"
    assert scalar(cluster.database, "SELECT count(*) FROM transfers WHERE id = ?", (reserved,)) == 1


def test_a_killed_workers_reservations_are_resolved_by_the_others(simulator: Simulator, tmp_path: Path) -> None:
    database = shared_server().new_database()
    simulator.set("alpha", ttft_ms=TTFT_MS)
    try:
        with running_cluster(tmp_path, simulator, database, WORKERS) as cluster:
            key = cluster[0].account("load", topup_cny="100")
            victim = cluster[0]
            victim_id = cluster.worker_id(victim)
            live_ids = [cluster.worker_id(g) for g in cluster.gateways[1:]]
            with Load([g.url for g in cluster.gateways], key, BODY, CLIENTS_PER_WORKER, CALL_TIMEOUT_S) as load:
                _wait_for(lambda: open_reservations(database, victim_id) >= CLIENTS_PER_WORKER // 2, 10)
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait()
                killed_at = time.monotonic()
                time.sleep(0.5)  # a commit on its way when it died has landed (or been rolled back) by now
                orphans = open_reservations(database, victim_id)
                assert orphans > 0
                took_s = _wait_for(lambda: open_reservations(database, victim_id) == 0, RESOLVED_WITHIN_S - 0.5) + 0.5
                time.sleep(1.0)  # the live workers keep serving after the reclaim
            print(f"kill -9: {orphans} reservations of the dead worker resolved {took_s:.1f} s after the kill")
            live = [o for o in load.outcomes if o.worker != 0]
            assert any(o.started_s > killed_at + took_s for o in live)
            _live_calls_untouched(database, live)
            _dead_workers_resolved(database, victim_id, live_ids, orphans)
            _new_worker_serves(cluster, key, {victim_id, *live_ids})
    finally:
        simulator.reset("alpha")
    verify_ledger(database)
