"""Shared fixtures: real servers on real sockets.

The simulator and the gateway run as subprocesses (``suanli simulate`` and ``suanli serve``), exactly as
an operator of the platform runs them; tests reach them over HTTP with the official SDKs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from suanli.cli import main as cli_main
from tests.pg import pg_url, postgres_server  # noqa: F401  (fixtures: pg_server, pg_url)
from tests.stores import database_env, fresh_database

START_TIMEOUT_S = 30.0
ADMIN_KEY = "sk-admin-test-0123456789"

TEST_CATALOG = """
[operators.alpha]
base_url = "${SIM_URL}/alpha/v1"
api_key_env = "ALPHA_KEY"
commission_bp = 500
[operators.beta]
base_url = "${SIM_URL}/beta/v1"
[operators.faulty]
base_url = "${SIM_URL}/faulty/v1"
first_byte_timeout_s = 1
[operators.nowhere]
base_url = "http://127.0.0.1:9/v1"
[operators.gamma]
protocol = "anthropic"
base_url = "${SIM_URL}/gamma"
api_key_env = "GAMMA_KEY"
[operators.delta]
base_url = "${SIM_URL}/delta/v1"
anthropic_base_url = "${SIM_URL}/delta"
# Played in every wire style real servers use (tests/gateway/test_wire_styles.py): OpenAI's protocol only,
# and both protocols.
[operators.rough]
base_url = "${SIM_URL}/rough/v1"
[operators.roughdual]
base_url = "${SIM_URL}/roughdual/v1"
anthropic_base_url = "${SIM_URL}/roughdual"

[models."deepseek-v3.2"]
[models."glm-5"]
[models."faulty-model"]
[models."dead-model"]
[models."household-only"]
[models.multi]
[models.embed]
kind = "embedding"
[models.painter]
kind = "image"
[models."fallback-test"]
[models."retry-test"]
[models.coder]
[models."anthropic-only"]
[models.dual]
[models.styled]
[models.styled-dual]
[models.styled-tight]

[[offers]]
operator = "alpha"
model = "deepseek-v3.2"
upstream_model = "deepseek-chat"
context_window = 128000
max_output_tokens = 8192
price = { input = "2", cached_input = "0.2", output = "3" }

[[offers]]
operator = "beta"
model = "glm-5"
context_window = 200000
max_output_tokens = 16384
price = { input = "4", cached_input = "1", output = "18" }

[[offers]]
operator = "faulty"
model = "faulty-model"
context_window = 1000
max_output_tokens = 100
price = { input = "1", output = "2" }

[[offers]]
operator = "nowhere"
model = "dead-model"
context_window = 1000
max_output_tokens = 100
price = { input = "1", output = "2" }

[[offers]]
operator = "alpha"
model = "multi"
context_window = 100000
max_output_tokens = 1000
price = { input = "1", output = "2" }

[[offers]]
operator = "beta"
model = "multi"
upstream_model = "multi-beta"
context_window = 100000
max_output_tokens = 1000
price = { input = "2", output = "4" }

[[offers]]
operator = "nowhere"
model = "fallback-test"
context_window = 100000
max_output_tokens = 1000
price = { input = "0.5", output = "1" }

[[offers]]
operator = "alpha"
model = "fallback-test"
context_window = 100000
max_output_tokens = 1000
price = { input = "1", output = "2" }

[[offers]]
operator = "faulty"
model = "retry-test"
context_window = 100000
max_output_tokens = 1000
price = { input = "0.5", output = "1" }

[[offers]]
operator = "beta"
model = "retry-test"
context_window = 100000
max_output_tokens = 1000
price = { input = "1", output = "2" }

[[offers]]
operator = "alpha"
model = "embed"
context_window = 8192
max_output_tokens = 1
price = { input = "0.5", output = "0" }

[[offers]]
operator = "beta"
model = "embed"
context_window = 8192
max_output_tokens = 1
price = { input = "0.7", output = "0" }

[[offers]]
operator = "alpha"
model = "painter"
context_window = 4000
max_output_tokens = 50000
price = { input = "10", output = "40" }
[offers.image_tokens]
"1024x1024" = { low = 272, medium = 1056, high = 4160 }
"1024x1536" = { low = 408, medium = 1584, high = 6240 }

[[offers]]
operator = "gamma"
model = "coder"
upstream_model = "claude-coder"
context_window = 200000
max_output_tokens = 4096
price = { input = "1", cached_input = "0.1", cache_write = "1.25", output = "5" }

[[offers]]
operator = "alpha"
model = "coder"
context_window = 200000
max_output_tokens = 4096
price = { input = "3", cached_input = "0.3", output = "15" }

[[offers]]
operator = "gamma"
model = "anthropic-only"
context_window = 200000
max_output_tokens = 4096
price = { input = "1", output = "5" }

[[offers]]
operator = "delta"
model = "dual"
context_window = 200000
max_output_tokens = 4096
price = { input = "1", cached_input = "0.1", cache_write = "1.25", output = "5" }

[[offers]]
operator = "rough"
model = "styled"
context_window = 200000
max_output_tokens = 1000
input_margin_percent = 25  # its operator's tokenizer counts up to 20 % more than the gateway's
price = { input = "1", cached_input = "0.5", output = "2" }

[[offers]]
operator = "roughdual"
model = "styled-dual"
context_window = 200000
max_output_tokens = 1000
input_margin_percent = 25
price = { input = "1", cached_input = "0.5", cache_write = "1.25", output = "2" }

[[offers]]
operator = "rough"
model = "styled-tight"
context_window = 200000
max_output_tokens = 1000
input_margin_percent = 0  # a margin too small for its operator: what it counts beyond is charged from the balance
price = { input = "1", cached_input = "0.5", output = "2" }

[products.pack-small]
kind = "pack"
title = "Small pack"
price = "1"
tokens = 3000
models = ["deepseek-v3.2"]
valid_days = 30
weights = { input = "1", cached_input = "0.1", output = "2" }

[products.pack-late]
kind = "pack"
title = "Long-lived pack"
price = "2"
tokens = 100000
models = ["deepseek-v3.2"]
valid_days = 365

[products.household-pack]
kind = "pack"
tiers = ["household"]
price = "0.5"
tokens = 1000
models = ["deepseek-v3.2"]
valid_days = 30

[products.coding-lite]
kind = "subscription"
title = "Coding Plan Lite"
price = "49"
models = ["coder", "glm-5"]
allowances = [{ window = "5h", requests = 80 }, { window = "week", requests = 800 }]

[products.coding-pro]
kind = "subscription"
title = "Coding Plan Pro"
price = "149"
models = ["coder", "glm-5"]
allowances = [{ window = "5h", requests = 400 }, { window = "week", requests = 4000 }]

[products.plan-50]
kind = "subscription"
title = "Fifty a window"
price = "1"
models = ["multi"]
allowances = [{ window = "5h", requests = 50 }]

[[offers]]
operator = "alpha"
model = "household-only"
tiers = ["household"]
context_window = 1000
max_output_tokens = 100
price = { input = "1", output = "2" }
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered at {url}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Simulator:
    url: str

    def set(self, operator: str, **knobs: object) -> None:
        httpx.put(f"{self.url}/_sim/operators/{operator}", json=knobs).raise_for_status()

    def reset(self, operator: str) -> None:
        httpx.post(f"{self.url}/_sim/operators/{operator}/reset").raise_for_status()


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "suanli.cli",
        "simulate",
        "--port",
        str(port),
        "--operators",
        "alpha",
        "beta",
        "faulty",
        "gamma",
        "delta",
        "rough",
        "roughdual",
    ]
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/models", process)
        yield Simulator(url)
    finally:
        stop(process)


@dataclass
class Gateway:
    url: str
    database: str  # a file path, or a PostgreSQL URL (tests/stores.py)
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path | None = None  # its output, where start_gateway was asked to keep it

    def log_text(self) -> str:
        assert self.log is not None, "this gateway's output is not kept: start it with log=PATH"
        return self.log.read_text(errors="replace")

    def cli(self, *args: str) -> int:
        return cli_main([*args, "--database", str(self.database)])

    def account(self, name: str, tier: str = "enterprise", topup_cny: str | None = "10") -> str:
        """Create an account (funded if asked) and return a fresh API key for it."""
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        response = httpx.post(f"{self.url}/admin/v1/accounts", json={"name": name, "tier": tier}, headers=headers)
        response.raise_for_status()
        if topup_cny is not None:
            httpx.post(
                f"{self.url}/admin/v1/accounts/{name}/topup", json={"amount": topup_cny}, headers=headers
            ).raise_for_status()
        key = httpx.post(f"{self.url}/admin/v1/accounts/{name}/keys", json={}, headers=headers)
        key.raise_for_status()
        return str(key.json()["key"])

    def admin(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, **kwargs)  # type: ignore[arg-type]


def start_gateway(
    tmp: Path,
    simulator: Simulator,
    database: str | Path | None = None,
    catalog_text: str = TEST_CATALOG,
    *,
    log: Path | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Gateway:
    """``suanli serve`` on a free port against the simulator; its output goes to ``log`` if given (for tests
    that read it), ``args`` and ``env`` added to its command line and environment."""
    catalog = tmp / "catalog.toml"
    catalog.write_text(catalog_text)
    port = free_port()
    database = str(database or fresh_database(tmp))
    env = {
        **os.environ,
        "SIM_URL": simulator.url,
        "ALPHA_KEY": "sk-upstream-alpha-secret",
        "GAMMA_KEY": "sk-upstream-gamma-secret",
        "SUANLI_ADMIN_KEY": ADMIN_KEY,
        "SUANLI_CATALOG": str(catalog),
        **database_env(database, tmp),
        **(env or {}),
    }
    command = [sys.executable, "-m", "suanli.cli", "serve", "--port", str(port), *args]
    if log is None:
        process = subprocess.Popen(command, env=env)
    else:
        with log.open("wb") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", process)
    return Gateway(url, database, env, process, log)


@pytest.fixture(scope="session")
def gateway(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    running = start_gateway(tmp_path_factory.mktemp("gateway"), simulator)
    try:
        yield running
    finally:
        stop(running.process)


_names = iter(range(1_000_000))


@pytest.fixture
def unique() -> str:
    """A name no other test in this session uses."""
    return f"t{os.getpid()}-{next(_names)}"
