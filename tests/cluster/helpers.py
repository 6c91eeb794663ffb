"""A cluster for the acceptance tests: N gateway processes on one PostgreSQL database, and what they wrote.

Each gateway is a separate ``suanli serve`` process with a port of its own (tests/conftest.py
``start_gateway``), as on N machines; they start together, as a process manager starts them, so the
migrations and the first admin key are raced for as in production. ``query`` and ``books`` read what they
wrote through a plain connection (tests/stores.py ``inspect``); ``storm`` sends many calls at once and
``Load`` keeps calls going in the background while a test breaks something.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from suanli.ledger.sqlite import verify
from tests.conftest import TEST_CATALOG, Gateway, Simulator, start_gateway, stop
from tests.stores import inspect


def query(database: str, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Every row of ``sql`` on ``database``, as plain tuples (a connection of its own, closed after)."""
    conn = inspect(database)
    try:
        return [tuple(row) for row in conn.execute(sql, tuple(parameters)).fetchall()]
    finally:
        conn.close()


def scalar(database: str, sql: str, parameters: Sequence[Any] = ()) -> Any:
    (row,) = query(database, sql, parameters)
    return row[0]


@dataclass
class Cluster:
    database: str
    gateways: list[Gateway]
    directory: Path
    simulator: Simulator
    catalog_text: str

    def __getitem__(self, index: int) -> Gateway:
        return self.gateways[index]

    def worker_id(self, gateway: Gateway) -> str:
        """The lease id the gateway registered (its pid names it: every gateway here runs on this host)."""
        return str(
            scalar(self.database, "SELECT id FROM workers WHERE pid = ? AND ended_at IS NULL", (gateway.process.pid,))
        )

    def add(self) -> Gateway:
        """Start one more gateway on the same database (a new worker, under a new lease)."""
        (gateway,) = _start(
            self.directory, self.simulator, self.database, self.catalog_text, count=1, first=len(self.gateways)
        )
        self.gateways.append(gateway)
        return gateway

    def stop(self) -> None:
        """Stop every gateway (SIGTERM, as a process manager does), all at once."""
        with ThreadPoolExecutor(len(self.gateways)) as pool:
            list(pool.map(lambda gateway: stop(gateway.process), self.gateways))


def _start(
    directory: Path, simulator: Simulator, database: str, catalog_text: str, *, count: int, first: int
) -> list[Gateway]:
    """Start ``count`` gateways at once, each in a directory of its own (catalog file, unused SQLite path);
    if one fails to start, the others are stopped and the failure raised."""
    dirs = [directory / f"worker{first + i}" for i in range(count)]
    for path in dirs:
        path.mkdir()
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(start_gateway, path, simulator, database, catalog_text) for path in dirs]
    started = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for gateway in started:
            stop(gateway.process)
        raise RuntimeError(f"{len(failed)} of {count} gateways did not start") from failed[0]
    return started


@contextlib.contextmanager
def running_cluster(
    directory: Path, simulator: Simulator, database: str, count: int, catalog_text: str = TEST_CATALOG
) -> Iterator[Cluster]:
    """``count`` gateways on ``database`` (a PostgreSQL URL) while the block runs; all stopped after."""
    gateways = _start(directory, simulator, database, catalog_text, count=count, first=0)
    cluster = Cluster(database, gateways, directory, simulator, catalog_text)
    try:
        yield cluster
    finally:
        cluster.stop()


def account_id(gateway: Gateway, name: str) -> str:
    response = gateway.admin("GET", f"/admin/v1/accounts/{name}")
    response.raise_for_status()
    return str(response.json()["account"]["id"])


@dataclass(frozen=True, slots=True)
class Books:
    """What one account's calls cost and where the ledger put it (nano-CNY)."""

    events: int  # usage events of the account
    cost_nano: int  # their cost, summed
    to_sales_nano: int  # what its requests' transfers paid the operators (sales:*), from any source
    from_wallet_nano: int  # what its wallet paid for calls (posted debits of its requests' transfers)


def books(database: str, account: str) -> Books:
    """The account's usage events beside the CNY transfers its requests made (ids ``{request_id}.…``; a
    request id holds no dot)."""
    events, cost = query(
        database, "SELECT count(*), coalesce(sum(cost_nano), 0) FROM usage_events WHERE account_id = ?", (account,)
    )[0]
    moved = query(
        database,
        "SELECT coalesce(sum(t.amount) FILTER (WHERE t.credit_account LIKE 'sales:%'), 0), "
        "coalesce(sum(t.amount) FILTER (WHERE t.debit_account = ? AND t.kind IN ('post', 'posted')), 0) "
        "FROM transfers t JOIN usage_events u ON split_part(t.id, '.', 1) = u.request_id "
        "WHERE u.account_id = ? AND t.asset = 'CNY'",
        (f"wallet:{account}", account),
    )[0]
    return Books(int(events), int(cost), int(moved[0]), int(moved[1]))


def open_reservations(database: str, owner: str | None = None) -> int:
    if owner is None:
        return int(scalar(database, "SELECT count(*) FROM open_pending"))
    return int(scalar(database, "SELECT count(*) FROM open_pending WHERE owner = ?", (owner,)))


def verify_ledger(database: str) -> None:
    """``ledger verify``: every account's sums match its transfers, each asset nets to zero, no floor broken."""
    conn = inspect(database)
    try:
        verify(conn)
    finally:
        conn.close()


# Calls: a storm of them at once, or a steady load in the background.

PROMPT = [{"role": "user", "content": "Count the cost of concurrency."}]
CALL_TIMEOUT_S = 60.0  # a call that takes longer is reported as not answered (status 0)
REFUSED_PAUSE_S = 0.02  # a load client's pause after a call that was refused or not answered
# httpcore's pool looks at every connection it holds each time a response ends: 1,000 calls through one
# client took 24 s here, through 40 clients of 25 calls each 2 s, all still in flight at once.
POOL_CALLS_MAX = 25
LIMITS = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)


def chat(model: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": PROMPT, "max_tokens": max_tokens}


@dataclass(frozen=True, slots=True)
class Outcome:
    worker: int  # the index of the gateway called
    status: int  # 0: no answer (the connection failed, or CALL_TIMEOUT_S passed)
    code: str  # the error's code, '' for a success
    request_id: str  # x-request-id, '' without an answer
    started_s: float  # time.monotonic() when the call was sent
    elapsed_s: float


async def _call(
    client: httpx.AsyncClient, worker: int, url: str, key: str, *, body: dict[str, Any], timeout_s: float
) -> Outcome:
    started = time.monotonic()
    try:
        response = await client.post(
            f"{url}/v1/chat/completions", json=body, timeout=timeout_s, headers={"Authorization": f"Bearer {key}"}
        )
    except httpx.TransportError:
        return Outcome(worker, 0, "", "", started, time.monotonic() - started)
    code = ""
    if response.status_code != 200:
        try:
            code = str(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            code = "?"
    return Outcome(
        worker,
        response.status_code,
        code,
        response.headers.get("x-request-id", ""),
        started,
        time.monotonic() - started,
    )


async def _storm(urls: Sequence[str], key: str, body: dict[str, Any], calls: int) -> list[Outcome]:
    clients = [httpx.AsyncClient(limits=LIMITS) for _ in range(-(-calls // POOL_CALLS_MAX))]

    def call(index: int) -> Coroutine[Any, Any, Outcome]:
        worker = index % len(urls)
        client = clients[index // POOL_CALLS_MAX]
        return _call(client, worker, urls[worker], key, body=body, timeout_s=CALL_TIMEOUT_S)

    try:
        return await asyncio.gather(*(call(index) for index in range(calls)))
    finally:
        for client in clients:
            await client.aclose()


def storm(cluster: Cluster, key: str, body: dict[str, Any], calls: int) -> list[Outcome]:
    """``calls`` calls sent at once, spread evenly over the cluster's gateways."""
    return asyncio.run(_storm([g.url for g in cluster.gateways], key, body, calls))


class Load:
    """``per_worker`` clients per gateway, each calling again as soon as its last call is answered, in a
    thread of its own until ``stop``; every call's outcome is kept."""

    def __init__(self, urls: Sequence[str], key: str, body: dict[str, Any], per_worker: int, timeout_s: float) -> None:
        self._urls, self._key, self._body = list(urls), key, body
        self._per_worker, self._timeout_s = per_worker, timeout_s
        self._stop = threading.Event()
        self.outcomes: list[Outcome] = []
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="load")

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        self._thread.join()
        return self.outcomes

    async def _main(self) -> None:
        async with httpx.AsyncClient(limits=LIMITS) as client:
            clients = [
                self._client(client, worker) for worker in range(len(self._urls)) for _ in range(self._per_worker)
            ]
            await asyncio.gather(*clients)

    async def _client(self, client: httpx.AsyncClient, worker: int) -> None:
        while not self._stop.is_set():
            outcome = await _call(
                client, worker, self._urls[worker], self._key, body=self._body, timeout_s=self._timeout_s
            )
            self.outcomes.append(outcome)
            if outcome.status != 200:  # a dead gateway, or a refusal, comes back at once: do not spin on it
                await asyncio.sleep(REFUSED_PAUSE_S)
