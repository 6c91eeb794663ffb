"""The platform object: every long-lived service, built once at start-up and passed to whoever needs it.

There are no module globals: the ASGI app's lifespan builds a ``Platform``, starts it, and stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from suanli.catalog import TIERS, Catalog, load_catalog
from suanli.economy import names as economy_names
from suanli.economy.alerts import expiring_packs_job
from suanli.economy.market import expire_packs_job, renew_due_job
from suanli.economy.products import Product, parse_product
from suanli.economy.store import list_product, load_products
from suanli.errors import BadRequest, ConfigError, StoreUnavailable
from suanli.gateway.admin_keys import AdminKeyStart, admin_key_path, ensure_admin_key
from suanli.gateway.auth import KeyCache
from suanli.gateway.counting import PromptCounter
from suanli.gateway.health import HealthRegistry
from suanli.gateway.lease import LeaseKeeper
from suanli.gateway.metrics import Metrics
from suanli.gateway.price_versions import stored_versions, with_versions
from suanli.gateway.quoting import PriceClock
from suanli.gateway.recovery import RecoveryReport, once, reclaim_job, recover, resolve_stale_job
from suanli.gateway.sessions import delete_expired_job
from suanli.gateway.webhook_delivery import DeliverySettings, WebhookDelivery
from suanli.ledger import ASSET_CNY, StoreLedger
from suanli.ledger import names as ledger_names
from suanli.limits import (
    CLIENT_WRITE_TIMEOUT_S,
    CONSOLE_SESSION_TTL_MAX_S,
    CONSOLE_SESSION_TTL_S,
    HEALTH_PROBE_INTERVAL_S,
    HEALTH_PROBE_TIMEOUT_S,
    PACK_EXPIRY_SWEEP_S,
    RESERVATION_STALE_S,
    SETTING_SECONDS_MAX,
    STORE_READ_TIMEOUT_S,
    WORKER_RECLAIM_INTERVAL_S,
)
from suanli.providers.http1 import Http1Upstream
from suanli.store.cluster import notify
from suanli.store.conn import Conn
from suanli.store.db import now_ms, open_database, transaction
from suanli.store.owner import DatabaseOwner
from suanli.store.pg import is_postgres, limit_reads
from suanli.store.writer import GroupCommitWriter, Writer, dialect_for

log = logging.getLogger("suanli")
DEFAULT_DATABASE_PATH = Path("suanli-data") / "suanli.db"
DURABILITY_LEVELS = ("full", "process")
PROBE_PATHS = {"openai": "/models", "anthropic": "/v1/models"}  # an Anthropic base URL stops before /v1


def demo_catalog_path() -> Path:
    return Path(str(files("suanli") / "demo" / "catalog.toml"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the platform keeps its state and reads its catalog (docs/configuration.md)."""

    database_path: Path  # the SQLite file; with a URL, where the admin key file is kept beside
    catalog_path: Path
    database_url: str | None = field(default=None, repr=False)  # PostgreSQL: may hold a password
    admin_key: str | None = field(default=None, repr=False)  # a secret: never in a repr, nor a log
    durability: str = "full"  # "full": settlements are fsynced; "process": they survive the process only
    client_write_timeout_s: float = CLIENT_WRITE_TIMEOUT_S  # a stream's write to a client that stopped reading
    sweep_interval_s: float = PACK_EXPIRY_SWEEP_S  # pack expiry, renewals, stale reservations
    console_session_ttl_s: float = CONSOLE_SESSION_TTL_S  # a console session ends this long after sign-in
    webhooks: DeliverySettings = field(default_factory=DeliverySettings)  # retries and waits of alert deliveries

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_path=Path(env.get("SUANLI_DATABASE", str(DEFAULT_DATABASE_PATH))),
            catalog_path=Path(env.get("SUANLI_CATALOG", str(demo_catalog_path()))),
            database_url=_database_url(env.get("SUANLI_DATABASE_URL") or None),
            admin_key=env.get("SUANLI_ADMIN_KEY") or None,
            durability=_durability(env.get("SUANLI_DURABILITY", "full")),
            client_write_timeout_s=_seconds(env, "SUANLI_CLIENT_WRITE_TIMEOUT_S", CLIENT_WRITE_TIMEOUT_S),
            sweep_interval_s=_seconds(env, "SUANLI_SWEEP_INTERVAL_S", PACK_EXPIRY_SWEEP_S),
            console_session_ttl_s=_seconds(
                env, "SUANLI_CONSOLE_SESSION_TTL_S", CONSOLE_SESSION_TTL_S, CONSOLE_SESSION_TTL_MAX_S
            ),
            webhooks=DeliverySettings.from_env(env),
        )

    @property
    def database(self) -> str | Path:
        """What the store opens: the PostgreSQL URL if one is set, else the SQLite file."""
        return self.database_url or self.database_path

    @property
    def on_postgres(self) -> bool:
        return self.database_url is not None


def _database_url(value: str | None) -> str | None:
    if value is not None and not is_postgres(value):
        raise ConfigError("SUANLI_DATABASE_URL must be a postgresql:// URL (unset it to use the SQLite file)")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, maximum: float = SETTING_SECONDS_MAX) -> float:
    value = env.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= maximum:
        raise ConfigError(f"{name} must be a number of seconds above 0 and at most {maximum:g}")
    return seconds


def _durability(value: str) -> str:
    if value not in DURABILITY_LEVELS:
        raise ConfigError(f"SUANLI_DURABILITY must be one of {', '.join(DURABILITY_LEVELS)}, not {value!r}")
    return value


class Platform:
    def __init__(self, settings: Settings, catalog: Catalog | None = None, owner: DatabaseOwner | None = None) -> None:
        self.settings = settings
        self._owner = owner  # the lock on the database; taken at start if not given
        self.catalog = self._file_catalog = catalog or load_catalog(settings.catalog_path)
        self._price_rows: list[tuple[str, int, str]] = []
        self.reader: Conn = open_database(settings.database)
        # PostgreSQL: this worker's lease, and its ear for what other workers change (gateway/lease.py)
        self.lease = LeaseKeeper(settings.database_url, self.on_notice) if settings.database_url else None
        self.writer: Writer = GroupCommitWriter(
            settings.database,
            sync_money=settings.durability == "full",
            dialect=dialect_for(settings.database, self.lease.worker_id if self.lease else ""),
        )
        self.ledger = StoreLedger(self.writer, self.reader, pipelined=settings.on_postgres)
        self.keys = KeyCache(self.reader)
        self.health = HealthRegistry(self.catalog.offers)
        self.metrics = Metrics(self.health)
        self.upstreams = {  # by operator and protocol: an operator may speak both
            (name, protocol): Http1Upstream(op, protocol=protocol)
            for name, op in self.catalog.operators.items()
            for protocol in op.endpoints
        }
        self.zone = ZoneInfo(self.catalog.timezone)
        self.price_clock = PriceClock(self.catalog)
        self.products: dict[str, Product] = {}  # the shelf: the catalog's products and those listed since
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prober: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._reclaimer: asyncio.Task[None] | None = None
        self.webhooks = WebhookDelivery(self.writer, self.zone, settings.webhooks)  # the alerts' outbox, sent
        self._deliverer: asyncio.Task[None] | None = None
        self.admin_key_start = AdminKeyStart()  # what this start did to the admin keys (never logs a key)
        self.calls_in_flight = 0  # admitted and not yet settled
        self.counter = PromptCounter()  # large prompts are counted off the event loop

    async def start(self) -> RecoveryReport:
        """Take the database (one gateway per file), resolve what a previous process left reserved, then
        open for business."""
        if self.lease is None:  # SQLite: one gateway per file; what is open at start is a dead process's
            self._owner = self._owner or DatabaseOwner.take(self.settings.database_path)
            report = recover(self.reader)
        else:  # PostgreSQL: other workers' reservations are theirs; a dead one's are reclaimed by the sweep
            self.lease.start(asyncio.get_running_loop())
            report = RecoveryReport(0, 0)
        key_file = admin_key_path(self.settings.database_path)
        self.admin_key_start = ensure_admin_key(self.reader, self.settings.admin_key, key_file)
        self.reload_prices()
        with transaction(self.reader):
            list_catalog_products(self.reader, self.catalog)
        self.reload_products()
        self.writer.start()
        loop = asyncio.get_running_loop()
        self._prober = loop.create_task(self._forever("probe", self._probe_once, HEALTH_PROBE_INTERVAL_S))
        self._sweeper = loop.create_task(self._forever("sweep", self._sweep_once, self.settings.sweep_interval_s))
        self._deliverer = loop.create_task(
            self._forever("webhooks", self.webhooks.deliver_once, self.settings.webhooks.poll_s)
        )
        if self.lease is not None:
            self._reclaimer = loop.create_task(self._forever("reclaim", self._reclaim_once, WORKER_RECLAIM_INTERVAL_S))
        await self.ledger.open_account(ledger_names.TOPUP_SOURCE, ASSET_CNY, None)
        await self.ledger.open_account(ledger_names.UNCHARGED, ASSET_CNY, None)
        await self.ledger.open_account(ledger_names.ESCROW, ASSET_CNY, ledger_names.ESCROW_FLOOR_NANO)
        for operator in self.catalog.operators:
            await self.ledger.open_account(ledger_names.sales(operator), ASSET_CNY, None)
        await self.ledger.open_account(economy_names.PLANS, ASSET_CNY, None)
        limit_reads(self.reader, STORE_READ_TIMEOUT_S)  # its reads run on the event loop: bounded (PostgreSQL)
        return report

    def reload_prices(self) -> None:
        """Add the price versions set since start (or by another process) to the catalog's price book."""
        rows = stored_versions(self.reader)
        if rows != self._price_rows:
            self._price_rows = rows
            self.catalog = with_versions(self._file_catalog, rows)
            self.price_clock = PriceClock(self.catalog)

    def reload_products(self) -> None:
        """Read the shelf again (after a product was listed or retired)."""
        self.products = load_products(self.reader, frozenset(self.catalog.models), TIERS)

    async def _sweep_once(self) -> None:
        """Forfeit what is left of expired packs, renew (or lapse) subscriptions whose month ended, resolve
        reservations older than any call can last or left by a dead worker, delete expired console sessions,
        and read what another process changed. On PostgreSQL one worker of the cluster does the first two
        and the sessions in a round (``once``)."""
        await self.writer.run(once(expire_packs_job()))
        await self.writer.run(once(renew_due_job(self.products, self.zone)))
        await self.writer.run(once(expiring_packs_job()))
        await self.writer.run(once(delete_expired_job(now_ms())), durable=False)
        stale = await self.writer.run(resolve_stale_job(now_ms() - int(RESERVATION_STALE_S * 1000)))
        if stale.posted or stale.voided:
            log.warning("resolved stale reservations: %d posted, %d voided", stale.posted, stale.voided)
        if self.lease is not None:
            orphans = await self.writer.run(reclaim_job)
            if orphans.posted or orphans.voided:
                log.warning(
                    "resolved a dead worker's reservations: %d posted, %d voided", orphans.posted, orphans.voided
                )
        self.reload_products()  # products listed from the CLI, by another process
        self.reload_prices()  # and prices set from it

    async def _reclaim_once(self) -> None:
        """Reclaim the leases of workers that stopped renewing and resolve what they left reserved."""
        if self.lease is not None:
            self.health.workers = self.lease.live_workers
        orphans = await self.writer.run(reclaim_job)
        if orphans.posted or orphans.voided:
            log.warning("resolved dead workers' reservations: %d posted, %d voided", orphans.posted, orphans.voided)

    def on_notice(self, what: str) -> None:
        """Another worker (or this one) changed something this worker may have cached (store/cluster.py)."""
        kind, _, ident = what.partition(":")
        if kind == "key":
            self.keys.forget(ident)
        elif kind == "account":
            self.keys.forget_account(ident)
        elif kind == "products":
            self.reload_products()
        elif kind == "prices":
            self.reload_prices()
        else:  # "*": notices may have been missed
            self.keys.forget_all()
            self.reload_products()
            self.reload_prices()

    def changed(self, what: str) -> None:
        """This worker changed ``what``: drop it here at once and tell the other workers."""
        self.on_notice(what)
        if self.lease is not None:
            notify(self.reader, what)

    def store_problem(self) -> str | None:
        """Why this worker may not admit calls now, or None (``/healthz``)."""
        if self.writer.store_down:
            return "the store could not be reached by the last write"
        if self.lease is not None and not self.lease.healthy():
            return "this worker's lease on the database is not current"
        return None

    def admitting(self) -> None:
        """Raise 503 if this worker may not admit a call now: its lease is not current (PostgreSQL)."""
        if self.lease is not None and not self.lease.healthy():
            raise StoreUnavailable("This worker cannot reach the store; nothing was reserved or charged.")

    async def _probe_once(self) -> None:
        """Probe operators whose breakers are not closed: one that failed a probe and answers again is given
        real trial calls at once (health.py), without waiting out its open period."""
        for operator in self.health.operators_to_probe():
            protocol = self.catalog.operators[operator].protocol
            ok = await self.upstreams[operator, protocol].probe(PROBE_PATHS[protocol], HEALTH_PROBE_TIMEOUT_S)
            if ok is not None:
                self.health.probed(operator, ok)

    async def _forever(self, name: str, step: Callable[[], Awaitable[None]], interval_s: float) -> None:
        """Run ``step`` every ``interval_s``; a failure is logged and counted, and the loop carries on."""
        while True:
            try:
                await step()
            except Exception:
                self.metrics.background_failed(name)
                log.exception("the %s loop failed; it carries on", name)
            await asyncio.sleep(interval_s)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run work that must finish even if the request that started it is cancelled (settlement)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in (self._prober, self._sweeper, self._reclaimer, self._deliverer):
            if task is not None:
                task.cancel()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for upstream in self.upstreams.values():
            await upstream.close()
        await self.webhooks.close()
        self.counter.close()
        self.writer.close()
        if self.lease is not None:
            self.lease.stop()
        self.reader.close()
        if self._owner is not None:
            self._owner.release()  # only now may another gateway recover what this one left


def list_catalog_products(conn: Conn, catalog: Catalog) -> None:
    """Put the catalog's products on the shelf; one already listed keeps the terms it was sold under."""
    for product_id, spec in catalog.products.items():
        try:
            product = parse_product(product_id, spec, models=frozenset(catalog.models), tiers=TIERS)
        except BadRequest as exc:
            raise ConfigError(f"catalog: {exc.message}") from None
        list_product(conn, product, spec, listed_by="catalog")
