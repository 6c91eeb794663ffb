"""Admin keys on a running gateway (``suanli serve``): rotation by restart, the generated first key, the
admin API's create, list and revoke, and a log that never shows a key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from suanli.gateway.admin_keys import admin_key_path
from tests.conftest import free_port, stop, wait_http

KEY_A = "sk-admin-rotation-a-0123456789abcdef0123"
KEY_B = "sk-admin-rotation-b-fedcba9876543210fedc"
CATALOG = """
[operators.nowhere]
base_url = "http://127.0.0.1:9/v1"
[models.m]
[[offers]]
operator = "nowhere"
model = "m"
context_window = 1000
max_output_tokens = 100
price = { input = "1", output = "2" }
"""


@dataclass
class Served:
    url: str
    log: Path

    def get(self, key: str, path: str = "/admin/v1/accounts") -> int:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {key}"}).status_code

    def admin(self, key: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, **kwargs)  # type: ignore[arg-type]


@contextmanager
def serving(database: Path, admin_key: str | None) -> Iterator[Served]:
    """``suanli serve`` on ``database``, configured with ``admin_key`` (or none), its log kept in a file."""
    catalog = database.parent / "catalog.toml"
    catalog.write_text(CATALOG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    env |= {"SUANLI_CATALOG": str(catalog), "SUANLI_DATABASE": str(database)}
    if admin_key:
        env["SUANLI_ADMIN_KEY"] = admin_key
    port, log = free_port(), database.parent / f"gateway-{len(list(database.parent.glob('gateway-*')))}.log"
    command = [sys.executable, "-m", "suanli.cli", "serve", "--port", str(port), "--log-level", "info"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        yield Served(f"http://127.0.0.1:{port}", log)
    finally:
        stop(process)


def test_a_new_configured_key_retires_the_old_one_at_restart(tmp_path: Path) -> None:
    database = tmp_path / "suanli.db"
    with serving(database, KEY_A) as gateway:
        assert gateway.get(KEY_A) == 200
        created = gateway.admin(KEY_A, "POST", "/admin/v1/admin-keys", json={"name": "deploy bot"})
        assert created.status_code == 201
        kept = created.json()["key"]
        assert gateway.get(kept) == 200
    with serving(database, KEY_B) as gateway:
        assert gateway.get(KEY_A) == 401 and gateway.get(KEY_B) == 200 and gateway.get(kept) == 200
        listed = gateway.admin(KEY_B, "GET", "/admin/v1/admin-keys").json()["data"]
        states = {(k["origin"], k["name"], k["revoked_at_ms"] is not None) for k in listed}
        assert states == {
            ("configured", "SUANLI_ADMIN_KEY", True),
            ("configured", "SUANLI_ADMIN_KEY", False),
            ("created", "deploy bot", False),
        }
        assert "retired the admin keys" in gateway.log.read_text()
    with serving(database, None) as gateway:  # the setting gone: the keys stay as they were, none is made
        assert gateway.get(KEY_B) == 200 and gateway.get(KEY_A) == 401
    assert not admin_key_path(database).exists()


def test_the_generated_first_key_is_written_once_and_never_logged(tmp_path: Path) -> None:
    database = tmp_path / "suanli.db"
    key_file = admin_key_path(database)
    with serving(database, None) as gateway:
        generated = key_file.read_text().strip()
        assert generated.startswith("sk-admin-") and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert gateway.get(generated) == 200
        log = gateway.log.read_text()
        assert str(key_file) in log and generated not in log and generated[9:] not in log
    with serving(database, KEY_A) as gateway:
        assert gateway.get(generated) == 401 and gateway.get(KEY_A) == 200
        assert not key_file.exists() and generated not in gateway.log.read_text()


def test_an_admin_key_revoked_through_the_api_or_the_cli_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "suanli.db"
    with serving(database, KEY_A) as gateway:
        first = gateway.admin(KEY_A, "POST", "/admin/v1/admin-keys", json={"name": "first"}).json()
        second = gateway.admin(KEY_A, "POST", "/admin/v1/admin-keys", json={"name": "second"}).json()
        revoked = gateway.admin(KEY_A, "POST", f"/admin/v1/admin-keys/{first['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at_ms"] and "key" not in revoked.json()
        refused = gateway.admin(first["key"], "GET", "/admin/v1/accounts")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
        command = [sys.executable, "-m", "suanli.cli", "admin-key", "revoke", second["id"], "--database", str(database)]
        subprocess.run(command, check=True, capture_output=True)
        assert gateway.get(second["key"]) == 401  # looked up at each call: refused at once
        assert gateway.get(KEY_A, "/metrics") == 200 and gateway.get(second["key"], "/metrics") == 401
        bad = gateway.admin(KEY_A, "POST", "/admin/v1/admin-keys", json={"name": ""})
        assert bad.status_code == 400
        missing = gateway.admin(KEY_A, "POST", "/admin/v1/admin-keys/adm_nope/revoke")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "admin_key_not_found"
        assert first["key"] not in gateway.log.read_text() and KEY_A not in gateway.log.read_text()
