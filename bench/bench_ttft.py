"""Streaming latency the gateway adds: time to first token and to end of stream, gateway vs simulator direct.

    .venv/bin/python bench/bench_ttft.py [--requests 300] [--gateway-cpu 1]

It starts ``suanli simulate`` (no time-to-first-token, no pacing, so the simulator's own latency is as
small as it gets) and ``suanli serve`` on free ports, the gateway with a fresh database in a temporary
folder, a catalog whose one operator is the simulator, and a funded account and key made with the CLI
before the gateway starts. One client then sends the same streamed request, one at a time, straight to
the simulator and through the gateway, alternating between the two so that drift in the machine's speed
during the run lands on both sides alike. Per request it times the first ``data:`` event whose delta
carries content, and the end of the body.

With ``--gateway-cpu N`` the gateway runs alone on CPU N (taskset) and this script and the simulator
stay off it, as in the shared peer harness. A benchmark, not a test: CI does not run it.

Output, one ``key=value`` line each: ``direct``, ``gateway`` and ``added`` (gateway minus direct, per
percentile). Compare figures within one run only; run twice to see the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

MODEL = "deepseek-v3.2"
OPERATOR = "bench"
ACCOUNT = "bench"
ADMIN_KEY = "sk-admin-bench-ttft"
TOPUP_CNY = "1000000"  # far more than any run spends, so the wallet never refuses a request
MAX_TOKENS = 64
REQUESTS_DEFAULT = 300
WARMUP_REQUESTS = 20  # per side, untimed: connection set-up, imports and caches warm before timing
PERCENTILES = (50, 90, 99)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 4000
_MS_PER_S = 1000.0
_DONE_EVENT = b"data: [DONE]"
_USAGE_FIELD = b'"total_tokens"'

CATALOG = """
[operators.{operator}]
base_url = "{simulator_url}/{operator}/v1"
[models."{model}"]
[[offers]]
operator = "{operator}"
model = "{model}"
context_window = 128000
max_output_tokens = 8192
price = {{ input = "2", cached_input = "0.2", output = "3" }}
"""


@dataclass(frozen=True)
class Target:
    """One side of the comparison: where the streamed request goes and with which headers."""

    name: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Timing:
    first_content_s: float
    total_s: float


# ---- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def suanli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "suanli.cli", *args]


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` under ``taskset -c cpu``; unchanged when no CPU is asked for or taskset is missing."""
    if cpu is None:
        return command
    if shutil.which("taskset") is None:
        print("# taskset not found: the gateway runs unpinned", file=sys.stderr)
        return command
    return ["taskset", "-c", str(cpu), *command]


def keep_off_cpu(cpu: int | None) -> None:
    """Move this process (and so the simulator it starts next) off the gateway's CPU.

    Otherwise the scheduler may put the client or the simulator on the gateway's core, and the added
    latency would include their competition for it.
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    others = set(range(os.cpu_count() or 1)) - {cpu}
    if others:
        os.sched_setaffinity(0, others)


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        # The child keeps its own copy of the descriptor, so closing ours here is safe.
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM for a graceful shutdown, SIGKILL if that takes longer than STOP_TIMEOUT_S."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def wait_http(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Return once anything answers HTTP at ``url``; fail if the process exits or START_TIMEOUT_S passes."""
    deadline_s = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline_s:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before answering {url}:\n{log_tail(log_path)}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"nothing answered at {url} within {START_TIMEOUT_S:g} s:\n{log_tail(log_path)}")


# ---- the gateway's database, catalog and key -----------------------------------------------------


def gateway_env(directory: Path, simulator_url: str) -> dict[str, str]:
    catalog = directory / "catalog.toml"
    catalog.write_text(CATALOG.format(operator=OPERATOR, model=MODEL, simulator_url=simulator_url))
    return {
        **os.environ,
        "SUANLI_DATABASE": str(directory / "suanli.db"),
        "SUANLI_CATALOG": str(catalog),
        "SUANLI_ADMIN_KEY": ADMIN_KEY,
    }


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(suanli_command(*args), env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"suanli {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout


def funded_key(env: dict[str, str]) -> str:
    """An API key of a new, funded enterprise account, made through the CLI as an operator would."""
    run_cli(env, "account", "create", ACCOUNT, "--tier", "enterprise")
    run_cli(env, "wallet", "topup", ACCOUNT, TOPUP_CNY)
    created = orjson.loads(run_cli(env, "key", "create", ACCOUNT, "--json"))
    return str(created["key"])


# ---- timing one stream ---------------------------------------------------------------------------


class FirstContent:
    """Finds the first SSE ``data:`` event whose delta has non-empty content, across read boundaries."""

    def __init__(self) -> None:
        self._pending = b""
        self.found = False

    def feed(self, piece: bytes) -> bool:
        """Take the next bytes of the body; True once the first content delta has arrived."""
        if self.found:
            return True
        lines = (self._pending + piece).split(b"\n")
        self._pending = lines.pop()  # an incomplete last line waits for the next read
        self.found = any(_has_content(line) for line in lines)
        return self.found


def _has_content(line: bytes) -> bool:
    if not line.startswith(b"data:") or line.startswith(_DONE_EVENT):
        return False
    choices = orjson.loads(line[len(b"data:") :]).get("choices") or []
    return any((choice.get("delta") or {}).get("content") for choice in choices)


async def timed_stream(client: httpx.AsyncClient, target: Target, body: bytes) -> Timing:
    """Send one streamed request; time its first content delta and its end, and check it came back whole."""
    scanner = FirstContent()
    received = bytearray()
    first_content_s = math.nan
    started_s = time.perf_counter()
    async with client.stream("POST", target.url, content=body, headers=target.headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{target.name}: HTTP {response.status_code}: {(await response.aread())!r}")
        async for piece in response.aiter_bytes():
            received += piece
            if not scanner.found and scanner.feed(piece):
                first_content_s = time.perf_counter() - started_s
    total_s = time.perf_counter() - started_s
    if not scanner.found or _DONE_EVENT not in received or _USAGE_FIELD not in received:
        raise RuntimeError(f"{target.name}: the stream lacks content, usage or [DONE]: {bytes(received)!r}")
    return Timing(first_content_s, total_s)


def request_body() -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me about the price of tokens."}],
            "max_tokens": MAX_TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


def bench_client() -> httpx.AsyncClient:
    # TCP_NODELAY: httpx writes a POST's headers and body separately, and with Nagle's algorithm the body
    # could wait for the server's delayed ACK, adding tens of milliseconds that are neither side's cost.
    transport = httpx.AsyncHTTPTransport(
        http1=True,
        http2=False,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
    )
    return httpx.AsyncClient(transport=transport, timeout=REQUEST_TIMEOUT_S)


async def measure(targets: Sequence[Target], requests: int) -> dict[str, list[Timing]]:
    """Untimed warm-up, then ``requests`` timed streams per target, alternating targets one at a time."""
    body = request_body()
    timings: dict[str, list[Timing]] = {target.name: [] for target in targets}
    async with bench_client() as client:
        for _ in range(WARMUP_REQUESTS):
            for target in targets:
                await timed_stream(client, target, body)
        for _ in range(requests):
            for target in targets:
                timings[target.name].append(await timed_stream(client, target, body))
    return timings


# ---- report --------------------------------------------------------------------------------------


def percentile_ms(samples_s: Sequence[float], percent: int) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(samples_s)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1] * _MS_PER_S


def figures_ms(timings: Sequence[Timing]) -> dict[str, float]:
    """``ttft_pNN_ms`` and ``total_pNN_ms`` for every percentile in PERCENTILES."""
    figures: dict[str, float] = {}
    for kind, samples_s in (
        ("ttft", [timing.first_content_s for timing in timings]),
        ("total", [timing.total_s for timing in timings]),
    ):
        for percent in PERCENTILES:
            figures[f"{kind}_p{percent}_ms"] = percentile_ms(samples_s, percent)
    return figures


def report_line(name: str, requests: int, figures: dict[str, float]) -> str:
    values = " ".join(f"{key}={value:.3f}" for key, value in figures.items())
    return f"{name} scenario=stream_c1 requests={requests} {values}"


def report(timings: dict[str, list[Timing]], requests: int) -> list[str]:
    direct, gateway = figures_ms(timings["direct"]), figures_ms(timings["gateway"])
    added = {f"added_{key}": gateway[key] - direct[key] for key in direct}
    return [
        report_line("direct", requests, direct),
        report_line("gateway", requests, gateway),
        report_line("added", requests, added),
    ]


# ---- the run -------------------------------------------------------------------------------------


@contextmanager
def running(command: list[str], env: dict[str, str], log_path: Path, ready_url: str) -> Iterator[None]:
    """A subprocess that answers at ``ready_url`` for the duration of the block, stopped afterwards."""
    process = start(command, env, log_path)
    try:
        wait_http(ready_url, process, log_path)
        yield
    finally:
        stop(process)


def run(requests: int, gateway_cpu: int | None) -> list[str]:
    keep_off_cpu(gateway_cpu)
    simulator_port, gateway_port = free_port(), free_port()
    simulator_url, gateway_url = f"http://127.0.0.1:{simulator_port}", f"http://127.0.0.1:{gateway_port}"
    simulate = suanli_command("simulate", "--port", str(simulator_port), "--operators", OPERATOR, "--ttft-ms", "0")
    serve = pinned(suanli_command("serve", "--port", str(gateway_port)), gateway_cpu)
    with tempfile.TemporaryDirectory(prefix="bench-ttft-") as scratch:
        directory = Path(scratch)
        with running(simulate, dict(os.environ), directory / "simulator.log", f"{simulator_url}/v1/models"):
            env = gateway_env(directory, simulator_url)
            key = funded_key(env)  # before serve starts, as an operator of the platform would
            with running(serve, env, directory / "gateway.log", f"{gateway_url}/healthz"):
                targets = (
                    Target("direct", f"{simulator_url}/{OPERATOR}/v1/chat/completions", {}),
                    Target("gateway", f"{gateway_url}/v1/chat/completions", {"Authorization": f"Bearer {key}"}),
                )
                timings = asyncio.run(measure(targets, requests))
    return report(timings, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=REQUESTS_DEFAULT, help="timed streams per side")
    parser.add_argument("--gateway-cpu", type=int, default=None, help="pin the gateway to this CPU (taskset)")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    print(
        f"# bench_ttft {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} model={MODEL} max_tokens={MAX_TOKENS} "
        f"requests={args.requests} warmup={WARMUP_REQUESTS} gateway_cpu={args.gateway_cpu} cpus={os.cpu_count()}",
        flush=True,
    )
    for line in run(args.requests, args.gateway_cpu):
        print(line)


if __name__ == "__main__":
    main()
