"""Metrics with several workers: whichever worker answers ``/metrics`` counts every worker's calls, and
its health gauges name it (gateway/metrics.py). Each process here is a worker of its own, as uvicorn's are:
prometheus-client chooses multiprocess values at import, from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from suanli.catalog import load_catalog
from suanli.gateway.health import HealthRegistry
from suanli.gateway.metrics import MULTIPROCESS_DIR_ENV, Metrics
from suanli.gateway.platform import demo_catalog_path

WORKER = """
import os, sys
from suanli.catalog import load_catalog
from suanli.gateway.health import HealthRegistry
from suanli.gateway.metrics import Metrics
from suanli.gateway.platform import demo_catalog_path
metrics = Metrics(HealthRegistry(load_catalog(demo_catalog_path()).offers))
for _ in range(int(sys.argv[1])):
    metrics.refused(401, "invalid_api_key")
if sys.argv[2] == "render":
    sys.stdout.write(metrics.render().decode())
"""


def worker(directory: Path, refusals: int, then: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, MULTIPROCESS_DIR_ENV: str(directory)}
    command = [sys.executable, "-c", WORKER, str(refusals), then or "-"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)


def test_one_worker_answers_for_the_counters_of_all_and_its_own_health(tmp_path: Path) -> None:
    worker(tmp_path, 2)
    worker(tmp_path, 3)  # a worker that has exited still counts: totals never go back
    done = worker(tmp_path, 1, then="render")
    lines = done.stdout.splitlines()
    assert 'suanli_refused_requests_total{code="invalid_api_key",status="401"} 6.0' in lines
    breaker = [line for line in lines if line.startswith("suanli_breaker_state{")]
    assert breaker and all('worker="' in line for line in breaker)
    assert len({line.split('worker="')[1].split('"')[0] for line in breaker}) == 1  # the answering worker's


def test_one_process_keeps_its_metrics_without_a_worker_label() -> None:
    metrics = Metrics(HealthRegistry(load_catalog(demo_catalog_path()).offers), environ={})
    metrics.refused(401, "invalid_api_key")
    text = metrics.render().decode()
    assert 'suanli_refused_requests_total{code="invalid_api_key",status="401"} 1.0' in text
    assert "suanli_breaker_state{" in text and "worker=" not in text
