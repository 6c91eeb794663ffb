"""CLI commands that run things: ``suanli serve``, ``suanli simulate`` and ``suanli demo``."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE

from suanli.api.app import build_app
from suanli.catalog import Catalog, load_catalog, parse_catalog
from suanli.demo_key import demo_key, demo_key_path
from suanli.errors import ConfigError
from suanli.gateway import accounts as ops
from suanli.gateway import log_redaction
from suanli.gateway.admin_keys import admin_key_path, ensure_admin_key
from suanli.gateway.metrics import MULTIPROCESS_DIR_ENV
from suanli.gateway.platform import Settings
from suanli.http_server import GatewayServer, raise_fd_limit, run_workers, server_config
from suanli.money import cny_to_nano
from suanli.providers.simulator import (
    OVER_CAP_POLICIES,
    STREAM_USAGE_STYLES,
    SimProfile,
    operator_profiles,
    parse_operator_override,
    run,
)
from suanli.store.accounts import find_account
from suanli.store.db import open_database, run_in_transaction, transaction
from suanli.store.owner import DatabaseOwner

Common = Callable[[argparse.ArgumentParser], None]
DEMO_OPERATORS = ("telecom", "mobile", "unicom")
DEMO_ACCOUNT = "demo"
DEMO_TIER = "enterprise"  # may buy every offer of the demo catalog; the example calls use offers it may buy
DEMO_TOPUP_CNY = "100"
DEMO_ADMIN_KEY_KEPT = "Admin key: the one set in SUANLI_ADMIN_KEY or shown at first start."
SIMULATOR_START_TIMEOUT_S = 30.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("suanli")


class _Server(GatewayServer):
    """uvicorn's server, telling ``on_ready`` once it listens (after the platform started and the socket
    is bound), so nothing says the gateway is up before it is."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready()


def serve_gateway(
    settings: Settings, host: str, port: int, log_level: str = "warning", on_ready: Callable[[], None] | None = None
) -> None:
    # Read the catalog before the server starts, so a mistake in it is one clear line (exit status 2),
    # not a start-up traceback from inside the server.
    catalog = load_catalog(settings.catalog_path)
    check_database(settings)
    # Likewise: a second gateway on this SQLite file is one line. PostgreSQL's workers hold leases instead.
    owner = None if settings.on_postgres else DatabaseOwner.take(settings.database_path)
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    app = build_app(settings, catalog=catalog, owner=owner)
    raise_fd_limit()
    config = server_config(app, host, port, log_level)  # every wait a client can impose bounded (http_server.py)
    log_redaction.install()  # after uvicorn set up its loggers, so their handlers get the filter too
    _Server(config, on_ready).run()


def check_database(settings: Settings) -> None:
    """PostgreSQL: reach the database, check its release and migrate it (once, under its lock), then let go;
    so an unreachable or unusable one is one line (exit status 2) before any worker starts, not a traceback
    from each. SQLite's file is opened by the gateway itself, after it took the file (store/owner.py)."""
    if settings.on_postgres:
        open_database(settings.database).close()


def serve_workers(settings: Settings, host: str, port: int, log_level: str, workers: int) -> int:
    """``serve --workers N``: N processes on one socket under uvicorn's supervisor (http_server.py), which
    starts a new one when one dies. Everything a worker needs is checked here first, each mistake one line:
    the store, the catalog and the database. Returns the exit status."""
    if not settings.on_postgres:
        raise ConfigError(
            f"--workers {workers} needs PostgreSQL (set SUANLI_DATABASE_URL); one SQLite file is served by one process"
        )
    tables = read_catalog_tables(settings.catalog_path)
    parse_catalog(tables, os.environ)  # as each worker will
    check_database(settings)
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    raise_fd_limit()  # the workers inherit the limit
    # Each worker is a fresh interpreter: it gets the settings and the catalog's tables read here (pickled),
    # so a worker started later to replace a dead one serves the same catalog as the others.
    factory = partial(worker_app, settings, tables, log_level)
    config = server_config(factory, host, port, log_level, workers=workers)
    log_redaction.install()
    with metrics_directory():
        return run_workers(config)


def read_catalog_tables(path: Path) -> dict[str, Any]:
    """The catalog file's tables, read once for every worker (``load_catalog`` reads and parses)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read catalog {path}: {exc}") from exc


def worker_app(settings: Settings, catalog_tables: dict[str, Any], log_level: str) -> Starlette:
    """One worker's application, built in the worker by uvicorn, with the parent's logging set-up (after
    uvicorn's own, so the redacting filter reaches its handlers too)."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    log_redaction.install()
    try:
        return build_app(settings, catalog=parse_catalog(catalog_tables, os.environ))
    except Exception:
        # uvicorn's supervisor replaces a worker that dies, except one that exits with STARTUP_FAILURE: then
        # it stops, rather than starting workers that fail alike for ever (as one failing in the lifespan).
        log.exception("this worker cannot build the gateway")
        raise SystemExit(STARTUP_FAILURE) from None


@contextmanager
def metrics_directory() -> Iterator[None]:
    """A fresh directory where the workers' metrics meet (prometheus-client's multiprocess mode, read at
    ``/metrics``: gateway/metrics.py), named to them in the environment they inherit; removed at the end."""
    directory = tempfile.mkdtemp(prefix="suanli-metrics-")
    before = os.environ.get(MULTIPROCESS_DIR_ENV)
    os.environ[MULTIPROCESS_DIR_ENV] = directory
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        else:
            os.environ[MULTIPROCESS_DIR_ENV] = before
        shutil.rmtree(directory, ignore_errors=True)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be 1 or more, not {args.workers}")
    if args.workers > 1:
        return serve_workers(settings, args.host, args.port, args.log_level, args.workers)
    serve_gateway(settings, args.host, args.port, args.log_level)
    return 0


def _profile(args: argparse.Namespace) -> SimProfile:
    return SimProfile(
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        error_rate_percent=args.error_rate,
        error_status=args.error_status,
        hang=args.hang,
        drop_after_chunks=args.drop_after_chunks,
        stream_done=not args.no_done,
        stream_usage=args.stream_usage,
        close_delimited=args.close_delimited,
        prompt_tokens_percent=args.prompt_tokens_percent,
        output_cap_tokens=args.output_cap,
        over_cap=args.over_cap,
    )


def simulate(args: argparse.Namespace, settings: Settings) -> int:
    operators = [name for part in args.operators for name in part.split(",") if name]
    try:
        # Each --operator-profile gives one operator its own knobs over the flags' profile (the last wins).
        overrides = dict(parse_operator_override(spec) for spec in args.operator_profiles)
        profiles = operator_profiles(operators, _profile(args), overrides)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    run(args.host, args.port, profiles)
    return 0


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SIMULATOR_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the simulator exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the simulator did not answer at {url}")


def _demo_key(settings: Settings) -> tuple[str, str | None]:
    """Make sure the demo account exists and is funded; return its key (the one kept from an earlier start
    while it still works, demo_key.py) and the admin key if this start made one (only the first does)."""
    conn = open_database(settings.database)
    try:
        admin_key = ensure_admin_key(conn, settings.admin_key, admin_key_path(settings.database_path)).generated
        with transaction(conn):
            exists = conn.execute("SELECT 1 FROM accounts WHERE name = ?", (DEMO_ACCOUNT,)).fetchone()
        if not exists:
            run_in_transaction(conn, ops.create_account_job(DEMO_ACCOUNT, DEMO_TIER))
            run_in_transaction(conn, ops.topup_job(DEMO_ACCOUNT, cny_to_nano(DEMO_TOPUP_CNY), "demo-initial"))
        account = find_account(conn, DEMO_ACCOUNT)
        return demo_key(conn, account.id, demo_key_path(settings.database_path)), admin_key
    finally:
        conn.close()


def demo_chat_models(catalog: Catalog) -> list[str]:
    """The chat models the demo account may buy, in the catalog's offer order: the example calls' models."""
    offered = (o.model for o in catalog.offers if DEMO_TIER in o.tiers and catalog.models[o.model].kind == "chat")
    return list(dict.fromkeys(offered))


def demo_instructions(base: str, key: str, admin_key: str | None, catalog: Catalog, store: str = "SQLite") -> str:
    """What the demo prints once the gateway listens: where it is, the key, and calls that work with the
    catalog it runs (its operators, and chat models it offers), then how to see the cost."""
    admin = f"Admin key (shown once, keep it): {admin_key}" if admin_key else DEMO_ADMIN_KEY_KEPT
    models = ", ".join(f"{m.name} ({m.kind})" for m in catalog.models.values() if catalog.offers_for(m.name))
    return f"""
Suanli is running on {store}; the simulator plays the operators {", ".join(catalog.operators)}.

Gateway:  {base}/v1   (OpenAI-compatible)
Console:  {base}/console   (sign in with the demo key, or the admin key for the platform's pages)
Models:   {models}
Demo key: {key}   (account "{DEMO_ACCOUNT}", ¥{DEMO_TOPUP_CNY} on first start; reused at each start)
{admin}
{_demo_examples(base, key, demo_chat_models(catalog))}
See what it cost:  .venv/bin/suanli usage {DEMO_ACCOUNT}     Balance: .venv/bin/suanli balance {DEMO_ACCOUNT}
Stop with Ctrl-C.
"""


def _demo_examples(base: str, key: str, chat_models: list[str]) -> str:
    """A curl call to the first chat model and an SDK call to the second (or the first again)."""
    if not chat_models:
        return "\nThis catalog offers the demo account no chat model, so there is no example call.\n"
    first, second = chat_models[0], chat_models[1 % len(chat_models)]
    return f"""
Try it with curl:

curl -s {base}/v1/chat/completions -H "Authorization: Bearer {key}" \\
  -H "Content-Type: application/json" \\
  -d '{{"model": "{first}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

or with the openai SDK (pip install openai):

python3 - <<'PY'
from openai import OpenAI
client = OpenAI(base_url="{base}/v1", api_key="{key}")
reply = client.chat.completions.create(model="{second}", messages=[{{"role": "user", "content": "Hi"}}])
print(reply.choices[0].message.content, reply.usage)
PY
"""


def _simulator_command(catalog: Catalog, port: int) -> list[str]:
    """``suanli simulate`` playing the operators of the catalog the demo runs (not a fixed list), each in
    the style its ``simulator`` table sets. The tables are checked here first, as the simulator checks
    them, so a mistake stops the demo with one line naming the operator, before anything starts."""
    styles = {name: operator.simulator for name, operator in catalog.operators.items() if operator.simulator}
    try:
        operator_profiles(catalog.operators, SimProfile(), styles)
    except ValueError as exc:
        raise ConfigError(f"the catalog's simulator tables: {exc}") from None
    command = [sys.executable, "-m", "suanli.cli", "simulate", "--port", str(port), "--operators", *catalog.operators]
    for name, knobs in styles.items():
        command += ["--operator-profile", f"{name}={orjson.dumps(dict(knobs)).decode()}"]
    return command


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # uvicorn re-raises the signal that stopped it once it is done; exiting through SystemExit (rather than
    # dying of the signal) lets ``demo`` stop the simulator it started.
    raise SystemExit(128 + signum)


def demo(args: argparse.Namespace, settings: Settings) -> int:
    simulator_url = f"http://127.0.0.1:{args.simulator_port}"
    os.environ.setdefault("SUANLI_SIMULATOR_URL", simulator_url)
    catalog = load_catalog(settings.catalog_path)  # read first: a mistake in it stops the demo before it starts
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    simulator = subprocess.Popen(_simulator_command(catalog, args.simulator_port))
    try:
        _wait_until_up(f"{simulator_url}/v1/models", simulator)
        key, admin_key = _demo_key(settings)
        store = "PostgreSQL" if settings.on_postgres else "SQLite"

        def ready() -> None:
            sys.stdout.write(demo_instructions(f"http://{args.host}:{args.port}", key, admin_key, catalog, store))
            sys.stdout.flush()

        serve_gateway(settings, args.host, args.port, on_ready=ready)
    finally:
        simulator.terminate()
        simulator.wait()
    return 0


def add_commands(commands: Any, common: Common) -> None:
    p = commands.add_parser("serve", help="run the gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--catalog", help="catalog TOML (default: $SUANLI_CATALOG or the demo catalog)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.add_argument("--workers", type=int, default=1, help="processes serving the port (above 1: PostgreSQL only)")
    p.set_defaults(handler=serve)
    common(p)

    p = commands.add_parser("simulate", help="run the simulated operators (a real HTTP server)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--operators", nargs="+", default=list(DEMO_OPERATORS), help="operator names")
    p.add_argument("--ttft-ms", type=int, default=0, help="time to first token")
    p.add_argument("--tokens-per-s", type=float, default=0.0, help="stream pace (0: as fast as possible)")
    p.add_argument("--error-rate", type=int, default=0, help="percent of requests answered with an error")
    p.add_argument("--error-status", type=int, default=500)
    p.add_argument("--hang", action="store_true", help="accept requests and never answer")
    p.add_argument("--drop-after-chunks", type=int, default=None, help="cut streams after N chunks")
    p.add_argument("--no-done", action="store_true", help="end OpenAI streams without data: [DONE]")
    p.add_argument("--stream-usage", default="chunk", choices=STREAM_USAGE_STYLES, help="where streams put usage")
    p.add_argument("--close-delimited", action="store_true", help="frame streams by closing the connection")
    p.add_argument("--prompt-tokens-percent", type=int, default=100, help="the operator's prompt count vs cl100k")
    p.add_argument("--output-cap", type=int, default=None, help="the operator's longest answer in tokens")
    p.add_argument("--over-cap", default="honour", choices=OVER_CAP_POLICIES, help="max_tokens above the cap")
    p.add_argument(
        "--operator-profile",
        action="append",
        default=[],
        dest="operator_profiles",
        metavar="NAME=JSON",
        help="one operator's knobs as a JSON object, over the flags' (repeatable)",
    )
    p.set_defaults(handler=simulate)
    common(p)

    p = commands.add_parser("demo", help="run the simulator and the gateway with a funded demo account")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--simulator-port", type=int, default=9100)
    p.add_argument("--catalog", help="catalog TOML (default: the demo catalog)")
    p.set_defaults(handler=demo)
    common(p)
