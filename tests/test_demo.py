"""The README's first command: `suanli demo` leaves a platform the openai SDK can call with the printed key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import openai

from tests.conftest import free_port, stop

PRINT_WAIT_S = 60.0


def read_until_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + PRINT_WAIT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "Stop with Ctrl-C" in line:
            return "".join(lines)
    raise AssertionError("demo did not print its instructions:\n" + "".join(lines))


def test_demo_prints_a_working_key_and_records_usage(tmp_path: Path) -> None:
    port, simulator_port = free_port(), free_port()
    database = tmp_path / "demo.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    command = [sys.executable, "-m", "suanli.cli", "demo", "--port", str(port),
               "--simulator-port", str(simulator_port), "--database", str(database)]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        text = read_until_ready(process)
        key = re.search(r"Demo key: (sk-[0-9a-f]+)", text)
        assert key and re.search(r"Admin key \(shown once, keep it\): sk-admin-", text)
        base_url = re.search(r"Gateway:\s+(\S+)", text)
        assert base_url and base_url.group(1) == f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=base_url.group(1), api_key=key.group(1), max_retries=0)
        reply = client.chat.completions.create(model="glm-5", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content
        chunks = list(client.chat.completions.create(
            model="deepseek-v3.2", messages=[{"role": "user", "content": "Hi"}], stream=True,
            stream_options={"include_usage": True},
        ))  # fmt: skip
        assert chunks[-1].usage is not None
    finally:
        stop(process)  # type: ignore[arg-type]
        if process.stdout is not None:
            process.stdout.close()
    usage = subprocess.run(
        [sys.executable, "-m", "suanli.cli", "usage", "demo", "--json", "--database", str(database)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    events = json.loads(usage.stdout)["data"]
    assert [e["model"] for e in events] == ["deepseek-v3.2", "glm-5"]
    assert all(int(e["cost_nano"]) > 0 for e in events)
