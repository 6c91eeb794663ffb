"""An export's memory: a million usage events of one account streamed as CSV by a running ``suanli serve``.

    .venv/bin/python bench/bench_export.py [--events 1000000] [--database postgresql://...]

Fills a fresh database (a SQLite file, or the PostgreSQL URL given, which should be empty) with
``--events`` usage events of one account, inserted directly in batches; starts ``suanli serve`` on it;
resets the server's peak resident set (``/proc/PID/clear_refs``), streams ``GET /v1/exports/usage`` to
nowhere, and prints the rows, bytes, seconds and the server's peak RSS (``VmHWM``) against its RSS before.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from suanli.store.db import open_database, transaction
from suanli.store.usage import USAGE_COLUMNS

ADMIN_KEY = "sk-admin-bench-export"
BATCH_ROWS = 20_000  # events inserted per statement batch
START_MS = 1_780_000_000_000
CATALOG = """
[operators.bench]
base_url = "http://127.0.0.1:9"
[models."deepseek-v3.2"]
[[offers]]
operator = "bench"
model = "deepseek-v3.2"
context_window = 128000
max_output_tokens = 8192
price = { input = "2", cached_input = "0.2", output = "3" }
"""


def fill(database: str, account_id: str, key_id: str, events: int) -> None:
    """``events`` events, ten per millisecond, with every column set as a real call's would be."""
    base = {name: 0 for name in USAGE_COLUMNS} | {
        "account_id": account_id,
        "key_id": key_id,
        "model": "deepseek-v3.2",
        "operator": "bench",
        "offer_id": "bench/deepseek-v3.2",
        "upstream_model": "deepseek-chat",
        "outcome": "ok",
        "http_status": 200,
        "error_code": "",
        "attempts": 1,
        "price_window": "standard",
        "price_input_nano": 2000,
        "price_cached_input_nano": 200,
        "price_output_nano": 3000,
    }
    insert = f"INSERT INTO usage_events ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
    conn = open_database(database)
    try:
        for first in range(0, events, BATCH_ROWS):
            rows = [_row(base, i) for i in range(first, min(first + BATCH_ROWS, events))]
            with transaction(conn):
                conn.executemany(insert, rows)
    finally:
        conn.close()


def _row(base: dict[str, object], i: int) -> tuple[object, ...]:
    tokens_in, tokens_out = 200 + i % 800, 50 + i % 300
    cost = tokens_in * 2000 + tokens_out * 3000
    values = base | {
        "request_id": f"req_{i:012x}",
        "created_at_ms": START_MS + i // 10,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cost_nano": cost,
        "reserved_nano": cost + 1000,
        "latency_ms": 100 + i % 900,
        "ttft_ms": 20 + i % 200,
        "stream": i % 2,
    }
    return tuple(values[c] for c in USAGE_COLUMNS)


def memory_kib(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in ("VmRSS", "VmHWM")}


def serve(workdir: Path, database: str) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "catalog.toml").write_text(CATALOG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SUANLI_ADMIN_KEY": ADMIN_KEY, "SUANLI_CATALOG": str(workdir / "catalog.toml")}
    command = [sys.executable, "-m", "suanli.cli", "serve", "--port", str(port), "--database", database]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/healthz").raise_for_status()
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start")


def export(url: str, key: str) -> tuple[int, int, int]:
    """Streams the CSV to nowhere: (bytes, chunks, lines)."""
    size = chunks = lines = 0
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("GET", f"{url}/v1/exports/usage", headers=headers, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size, chunks, lines = size + len(chunk), chunks + 1, lines + chunk.count(b"\n")
    return size, chunks, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database", help="an empty PostgreSQL database's URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    database = args.database or str(workdir / "suanli.db")
    process, url = serve(workdir, database)
    try:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        httpx.post(
            f"{url}/admin/v1/accounts", json={"name": "busy", "tier": "enterprise"}, headers=admin
        ).raise_for_status()
        key = httpx.post(f"{url}/admin/v1/accounts/busy/keys", json={}, headers=admin).json()["key"]
        me = httpx.get(f"{url}/v1/account", headers={"Authorization": f"Bearer {key}"}).json()
        started = time.perf_counter()
        fill(database, me["account"]["id"], me["key"]["id"], args.events)
        print(f"filled {args.events:,} events in {time.perf_counter() - started:.1f} s")
        before = memory_kib(process.pid)
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # the peak starts again from now
        started = time.perf_counter()
        size, chunks, lines = export(url, key)
        seconds = time.perf_counter() - started
        after = memory_kib(process.pid)
        print(f"rows {lines - 1:,}  bytes {size:,}  chunks received {chunks:,}  seconds {seconds:.1f}")
        rss, peak = before["VmRSS"] / 1024, after["VmHWM"] / 1024
        print(f"server RSS before {rss:.1f} MiB, peak during the export {peak:.1f} MiB (growth {peak - rss:.1f} MiB)")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
