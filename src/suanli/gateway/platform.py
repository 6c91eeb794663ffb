"""The platform object: every long-lived service, built once at start-up and passed to whoever needs it.

There are no module globals: the ASGI app's lifespan builds a ``Platform``, starts it, and stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from suanli.catalog import TIERS, Catalog, load_catalog
from suanli.economy import names as economy_names
from suanli.economy.market import expire_packs_job, renew_due_job
from suanli.economy.products import Product, parse_product
from suanli.economy.store import list_product, load_products
from suanli.errors import BadRequest, ConfigError
from suanli.gateway.admin_keys import AdminKeyStart, admin_key_path, ensure_admin_key
from suanli.gateway.auth import KeyCache
from suanli.gateway.counting import PromptCounter
from suanli.gateway.health import HealthRegistry
from suanli.gateway.metrics import Metrics
from suanli.gateway.price_versions import stored_versions, with_versions
from suanli.gateway.quoting import PriceClock
from suanli.gateway.recovery import RecoveryReport, recover, resolve_stale_job
from suanli.ledger import ASSET_CNY, SqliteLedger
from suanli.ledger import names as ledger_names
from suanli.limits import (
    CLIENT_WRITE_TIMEOUT_S,
    HEALTH_PROBE_INTERVAL_S,
    HEALTH_PROBE_TIMEOUT_S,
    PACK_EXPIRY_SWEEP_S,
    RESERVATION_STALE_S,
    SETTING_SECONDS_MAX,
)
from suanli.providers.http1 import Http1Upstream
from suanli.store.db import now_ms, open_database, transaction
from suanli.store.owner import DatabaseOwner
from suanli.store.writer import GroupCommitWriter, Writer

log = logging.getLogger("suanli")
DEFAULT_DATABASE_PATH = Path("suanli-data") / "suanli.db"
DURABILITY_LEVELS = ("full", "process")
PROBE_PATHS = {"openai": "/models", "anthropic": "/v1/models"}  # an Anthropic base URL stops before /v1


def demo_catalog_path() -> Path:
    return Path(str(files("suanli") / "demo" / "catalog.toml"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the platform keeps its state and reads its catalog (docs/configuration.md)."""

    database_path: Path
    catalog_path: Path
    admin_key: str | None = field(default=None, repr=False)  # a secret: never in a repr, nor a log
    durability: str = "full"  # "full": settlements are fsynced; "process": they survive the process only
    client_write_timeout_s: float = CLIENT_WRITE_TIMEOUT_S  # a stream's write to a client that stopped reading

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_path=Path(env.get("SUANLI_DATABASE", str(DEFAULT_DATABASE_PATH))),
            catalog_path=Path(env.get("SUANLI_CATALOG", str(demo_catalog_path()))),
            admin_key=env.get("SUANLI_ADMIN_KEY") or None,
            durability=_durability(env.get("SUANLI_DURABILITY", "full")),
            client_write_timeout_s=_seconds(env, "SUANLI_CLIENT_WRITE_TIMEOUT_S", CLIENT_WRITE_TIMEOUT_S),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= SETTING_SECONDS_MAX:
        raise ConfigError(f"{name} must be a number of seconds above 0 and at most {SETTING_SECONDS_MAX:g}")
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
        self.reader: sqlite3.Connection = open_database(settings.database_path)
        self.writer: Writer = GroupCommitWriter(settings.database_path, sync_money=settings.durability == "full")
        self.ledger = SqliteLedger(self.writer, self.reader)
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
        self.admin_key_start = AdminKeyStart()  # what this start did to the admin keys (never logs a key)
        self.calls_in_flight = 0  # admitted and not yet settled
        self.counter = PromptCounter()  # large prompts are counted off the event loop

    async def start(self) -> RecoveryReport:
        """Take the database (one gateway per file), resolve what a previous process left reserved, then
        open for business."""
        self._owner = self._owner or DatabaseOwner.take(self.settings.database_path)
        report = recover(self.reader)
        key_file = admin_key_path(self.settings.database_path)
        self.admin_key_start = ensure_admin_key(self.reader, self.settings.admin_key, key_file)
        self.reload_prices()
        with transaction(self.reader):
            list_catalog_products(self.reader, self.catalog)
        self.reload_products()
        self.writer.start()
        loop = asyncio.get_running_loop()
        self._prober = loop.create_task(self._forever("probe", self._probe_once, HEALTH_PROBE_INTERVAL_S))
        self._sweeper = loop.create_task(self._forever("sweep", self._sweep_once, PACK_EXPIRY_SWEEP_S))
        await self.ledger.open_account(ledger_names.TOPUP_SOURCE, ASSET_CNY, None)
        await self.ledger.open_account(ledger_names.UNCHARGED, ASSET_CNY, None)
        await self.ledger.open_account(ledger_names.ESCROW, ASSET_CNY, ledger_names.ESCROW_FLOOR_NANO)
        for operator in self.catalog.operators:
            await self.ledger.open_account(ledger_names.sales(operator), ASSET_CNY, None)
        await self.ledger.open_account(economy_names.PLANS, ASSET_CNY, None)
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
        reservations older than any call can last, and read what another process changed."""
        await self.writer.run(expire_packs_job())
        await self.writer.run(renew_due_job(self.products, self.zone))
        stale = await self.writer.run(resolve_stale_job(now_ms() - int(RESERVATION_STALE_S * 1000)))
        if stale.posted or stale.voided:
            log.warning("resolved stale reservations: %d posted, %d voided", stale.posted, stale.voided)
        self.reload_products()  # products listed from the CLI, by another process
        self.reload_prices()  # and prices set from it

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
        for task in (self._prober, self._sweeper):
            if task is not None:
                task.cancel()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for upstream in self.upstreams.values():
            await upstream.close()
        self.counter.close()
        self.writer.close()
        self.reader.close()
        if self._owner is not None:
            self._owner.release()  # only now may another gateway recover what this one left


def list_catalog_products(conn: sqlite3.Connection, catalog: Catalog) -> None:
    """Put the catalog's products on the shelf; one already listed keeps the terms it was sold under."""
    for product_id, spec in catalog.products.items():
        try:
            product = parse_product(product_id, spec, models=frozenset(catalog.models), tiers=TIERS)
        except BadRequest as exc:
            raise ConfigError(f"catalog: {exc.message}") from None
        list_product(conn, product, spec, listed_by="catalog")
