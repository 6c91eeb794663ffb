"""The README's first command: `suanli demo` leaves a platform the openai SDK can call with the printed key.

It plays the catalog it is given (its operators in the simulator, its chat models in the printed calls)
and prints the same demo key at every start, kept beside the database in a file only its owner reads.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from suanli.catalog import parse_catalog
from suanli.cli import main
from suanli.cli_run import demo_instructions
from suanli.demo_key import demo_key, demo_key_path
from suanli.store.accounts import create_account, revoke_key
from suanli.store.db import open_database, run_in_transaction
from tests.conftest import free_port, stop

PRINT_WAIT_S = 60.0
# Two operators and models of its own, one chat model only households may buy (the demo account is an
# enterprise), and an embedding model: the demo must name these, and call the chat model it may buy.
OWN_CATALOG = """
[operators.north]
base_url = "${SUANLI_SIMULATOR_URL}/north/v1"
[operators.south]
base_url = "${SUANLI_SIMULATOR_URL}/south/v1"
simulator = { stream_done = false, prompt_tokens_percent = 150 }

[models.house-chat]
[models.lake-chat]
[models.lake-embed]
kind = "embedding"

[[offers]]
operator = "north"
model = "house-chat"
tiers = ["household"]
context_window = 8000
max_output_tokens = 1000
price = { input = "1", output = "2" }

[[offers]]
operator = "south"
model = "lake-chat"
context_window = 8000
max_output_tokens = 1000
price = { input = "1", output = "2" }

[[offers]]
operator = "north"
model = "lake-embed"
context_window = 8000
max_output_tokens = 1
price = { input = "1", output = "0" }
"""


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


def without_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}


@contextmanager
def running_demo(port: int, simulator_port: int, database: Path, *args: str) -> Iterator[str]:
    """A ``suanli demo`` subprocess on these ports; yields what it printed once it is ready."""
    command = [
        sys.executable,
        "-m",
        "suanli.cli",
        "demo",
        "--port",
        str(port),
        "--simulator-port",
        str(simulator_port),
        "--database",
        str(database),
        *args,
    ]
    process = subprocess.Popen(command, env=without_settings(), stdout=subprocess.PIPE, text=True)
    try:
        yield read_until_ready(process)
    finally:
        stop(process)  # type: ignore[arg-type]
        if process.stdout is not None:
            process.stdout.close()


def simulated_operators(simulator_port: int) -> dict[str, dict[str, object]]:
    """Each operator the simulator plays, with its knobs (its control API)."""
    profiles: dict[str, dict[str, object]] = httpx.get(f"http://127.0.0.1:{simulator_port}/_sim/operators").json()
    return profiles


def test_demo_prints_a_working_key_and_records_usage(tmp_path: Path) -> None:
    port, simulator_port = free_port(), free_port()
    database = tmp_path / "demo.db"
    env = without_settings()
    with running_demo(port, simulator_port, database) as text:
        assert "the simulator plays the operators telecom, mobile, unicom" in text
        # Each operator in the wire style of its simulator table (demo/catalog.toml).
        styles = simulated_operators(simulator_port)
        assert styles["telecom"]["stream_usage"] == "chunk" and styles["telecom"]["stream_done"] is True
        assert styles["mobile"]["close_delimited"] is True and styles["mobile"]["prompt_tokens_percent"] == 115
        assert styles["unicom"]["over_cap"] == "refuse" and styles["unicom"]["output_cap_tokens"] == 32768
        key = re.search(r"Demo key: (sk-[0-9a-f]+)", text)
        assert key and re.search(r"Admin key \(shown once, keep it\): sk-admin-", text)
        base_url = re.search(r"Gateway:\s+(\S+)", text)
        assert base_url and base_url.group(1) == f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=base_url.group(1), api_key=key.group(1), max_retries=0)
        reply = client.chat.completions.create(model="glm-5", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content
        chunks = list(
            client.chat.completions.create(
                model="deepseek-v3.2",
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None
        console = re.search(r"Console:\s+(\S+)", text)
        assert console and console.group(1) == f"http://127.0.0.1:{port}/console"
        page = httpx.get(console.group(1), timeout=10)
        assert page.status_code == 200 and '<script type="module"' in page.text
        signed_in = httpx.post(f"http://127.0.0.1:{port}/console/session", json={"key": key.group(1)}, timeout=10)
        assert signed_in.status_code == 200 and signed_in.json()["account"]["name"] == "demo"
    usage = subprocess.run(
        [sys.executable, "-m", "suanli.cli", "usage", "demo", "--json", "--database", str(database)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    events = json.loads(usage.stdout)["data"]
    assert [e["model"] for e in events] == ["deepseek-v3.2", "glm-5"]
    assert all(int(e["cost_nano"]) > 0 for e in events)


def test_a_demo_of_another_catalog_plays_its_operators_and_keeps_its_key(tmp_path: Path) -> None:
    catalog, database, port, simulator_port = tmp_path / "own.toml", tmp_path / "demo.db", free_port(), free_port()
    catalog.write_text(OWN_CATALOG)
    with running_demo(port, simulator_port, database, "--catalog", str(catalog)) as first:
        assert "the simulator plays the operators north, south" in first
        styles = simulated_operators(simulator_port)
        assert {"north", "south"} <= set(styles) and "telecom" not in styles
        assert styles["south"]["prompt_tokens_percent"] == 150 and styles["north"]["prompt_tokens_percent"] == 100
        assert '"model": "lake-chat"' in first and '"model": "house-chat"' not in first and "glm-5" not in first
        key = re.search(r"Demo key: (sk-[0-9a-f]+)", first)
        assert key and "Admin key (shown once, keep it): sk-admin-" in first
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1), max_retries=0) as client:
            reply = client.chat.completions.create(model="lake-chat", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content  # the simulator plays south, the operator of lake-chat
    key_file = demo_key_path(database)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == key.group(1)
    with running_demo(port, simulator_port, database, "--catalog", str(catalog)) as second:
        assert f"Demo key: {key.group(1)}" in second
        assert "Admin key: the one set in SUANLI_ADMIN_KEY or shown at first start." in second


def test_the_demo_key_is_kept_0600_and_reused_until_it_is_revoked(tmp_path: Path) -> None:
    database = tmp_path / "data" / "suanli.db"
    conn = open_database(database)
    try:
        account = run_in_transaction(conn, lambda c: create_account(c, "demo", "enterprise"))
        path = demo_key_path(database)
        first = demo_key(conn, account.id, path)
        assert path == tmp_path / "data" / "demo-key" and path.read_text() == first + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert demo_key(conn, account.id, path) == first
        key_id = conn.execute("SELECT id FROM api_keys").fetchone()[0]
        run_in_transaction(conn, lambda c: revoke_key(c, key_id))
        second = demo_key(conn, account.id, path)
        assert second != first and path.read_text() == second + "\n"
        other = run_in_transaction(conn, lambda c: create_account(c, "other", "enterprise"))
        assert demo_key(conn, other.id, path) != second  # a key of another account is not the demo's
        path.write_text("not a key")
        assert demo_key(conn, account.id, path).startswith("sk-")
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 4
    finally:
        conn.close()


def test_the_instructions_name_the_catalogs_operators_and_a_chat_model_it_offers() -> None:
    catalog = parse_catalog(tomllib.loads(OWN_CATALOG), {"SUANLI_SIMULATOR_URL": "http://127.0.0.1:1"})
    text = demo_instructions("http://127.0.0.1:8000", "sk-demo", None, catalog)
    assert "the simulator plays the operators north, south." in text
    assert "Models:   house-chat (chat), lake-chat (chat), lake-embed (embedding)" in text
    assert text.count('"lake-chat"') == 2 and "glm-5" not in text and "deepseek" not in text


def test_a_bad_simulator_table_stops_the_demo_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "own.toml"
    catalog.write_text(OWN_CATALOG.replace("prompt_tokens_percent = 150", "warp = 9"))
    monkeypatch.setenv("SUANLI_SIMULATOR_URL", "http://127.0.0.1:1")
    status = main(["demo", "--catalog", str(catalog), "--database", str(tmp_path / "demo.db")])
    assert status == 2
    assert "operator south: unknown simulator knob(s): warp" in capsys.readouterr().err
    assert not (tmp_path / "demo.db").exists()  # nothing was started or created
