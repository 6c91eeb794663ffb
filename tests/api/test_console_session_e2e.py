"""Console sessions on a running gateway (``suanli serve``): sign-in with an account key or an admin key, the
cookie standing for the key on every endpoint, CSRF on writes, the kinds kept apart, sign-out, expiry,
revocation, the console's files and their headers, and a log that never shows a key or a session id."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from suanli.limits import CONSOLE_SESSION_KEPT_S
from tests.conftest import ADMIN_KEY, Gateway, Simulator, start_gateway, stop
from tests.stores import inspect

COOKIE = "suanli_session"
SWEEP_INTERVAL_S = 1  # expired sessions are deleted by the sweep: soon, here
SWEEP_WAIT_S = 10.0


@dataclass
class Served:
    gateway: Gateway
    log: Path
    secrets: list[str] = field(default_factory=list)  # every key and session id used: none may be logged

    @property
    def url(self) -> str:
        return self.gateway.url

    def sign_in(self, key: str) -> httpx.Response:
        self.secrets.append(key)
        response = httpx.post(f"{self.url}/console/session", json={"key": key})
        if response.status_code == 200:
            self.secrets.append(cookie_value(response))
        return response

    def session(self, key: str) -> tuple[str, str]:
        """Sign in with ``key``: the session id (the cookie's value) and its CSRF token."""
        response = self.sign_in(key)
        assert response.status_code == 200, response.text
        return cookie_value(response), response.json()["csrf_token"]

    def call(
        self, method: str, path: str, session_id: str, csrf: str | bytes | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers: dict[str, str | bytes] = {"cookie": f"{COOKIE}={session_id}"}
        if csrf is not None:
            headers["x-csrf-token"] = csrf
        return httpx.request(method, f"{self.url}{path}", headers=headers, **kwargs)


def cookie_value(response: httpx.Response) -> str:
    first = response.headers["set-cookie"].split(";")[0]
    name, _, value = first.partition("=")
    assert name == COOKIE
    return value


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    parts = [part.strip() for part in response.headers["set-cookie"].split(";")[1:]]
    return {name: value for name, _, value in (part.partition("=") for part in parts)}


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture(scope="module")
def served(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A gateway of its own (the shared one's log is not kept), logging at debug level to a file."""
    tmp = tmp_path_factory.mktemp("console")
    log = tmp / "gateway.log"
    sweep = {"SUANLI_SWEEP_INTERVAL_S": str(SWEEP_INTERVAL_S)}
    gateway = start_gateway(tmp, simulator, log=log, args=["--log-level", "debug"], env=sweep)
    try:
        yield Served(gateway, log, [ADMIN_KEY])
    finally:
        stop(gateway.process)


def test_an_account_key_signs_in_and_the_cookie_is_not_the_key(served: Served, unique: str) -> None:
    key = served.gateway.account(unique)
    response = served.sign_in(key)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "console_session" and body["kind"] == "account" and body["language"] is None
    assert body["account"]["name"] == unique and body["account"]["tier"] == "enterprise"
    assert set(body["account"]) == {"id", "name", "tier"} and set(body["key"]) == {"id", "name", "prefix"}
    assert key.startswith(body["key"]["prefix"]) and len(body["csrf_token"]) >= 43
    assert body["expires_at_ms"] > time.time() * 1000 + 11 * 3600 * 1000  # 12 hours by default
    session_id = cookie_value(response)
    assert len(session_id) >= 43 and session_id != key and key not in response.headers["set-cookie"]
    assert session_id not in response.text and key not in response.text
    attributes = cookie_attributes(response)
    assert attributes == {"HttpOnly": "", "SameSite": "Strict", "Path": "/", "Max-Age": str(12 * 3600)}
    assert response.headers["cache-control"] == "no-store"
    again = served.call("GET", "/console/session", session_id)
    assert again.status_code == 200 and again.json() == body


def test_the_cookie_reads_and_a_write_needs_the_csrf_token(served: Served, unique: str) -> None:
    session_id, csrf = served.session(served.gateway.account(unique, topup_cny="5"))
    plans = served.call("GET", "/v1/plans", session_id)
    assert plans.status_code == 200 and plans.json()["packs"] == []
    for token in (None, "", csrf[:-1] + ("A" if csrf[-1] != "A" else "B"), "é".encode()):
        refused = served.call("POST", "/v1/packs", session_id, token, json={"product": "pack-small"})
        assert refused.status_code == 403 and error_code(refused) == "csrf_token_invalid"
        assert refused.json()["error"]["type"] == "permission_error"
    assert served.call("GET", "/v1/plans", session_id).json()["packs"] == []  # nothing was bought
    bought = served.call("POST", "/v1/packs", session_id, csrf, json={"product": "pack-small"})
    assert bought.status_code == 201, bought.text
    assert len(served.call("GET", "/v1/plans", session_id).json()["packs"]) == 1


def test_an_account_session_stays_in_its_account(served: Served, unique: str) -> None:
    other = served.gateway.account(f"{unique}-other")
    session_id, csrf = served.session(served.gateway.account(unique))
    for path in ("/admin/v1/accounts", "/metrics", f"/admin/v1/accounts/{unique}-other"):
        refused = served.call("GET", path, session_id, csrf)
        assert refused.status_code == 403 and error_code(refused) == "admin_only"
    new_account = {"name": f"{unique}-x", "tier": "household"}
    created = served.call("POST", "/admin/v1/accounts", session_id, csrf, json=new_account)
    assert created.status_code == 403 and error_code(created) == "admin_only"
    plans = served.call("GET", "/v1/plans", session_id).json()
    assert plans["account"] == unique
    # A key header is the key's own call, whatever cookie comes with it.
    headers = {"cookie": f"{COOKIE}={session_id}", "authorization": f"Bearer {other}"}
    assert httpx.get(f"{served.url}/v1/plans", headers=headers).json()["account"] == f"{unique}-other"


def test_an_admin_session_reaches_the_admin_endpoints_only(served: Served, unique: str) -> None:
    response = served.sign_in(ADMIN_KEY)
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "admin" and body["account"] is None and body["key"]["id"].startswith("adm_")
    session_id, csrf = cookie_value(response), body["csrf_token"]
    assert served.call("GET", "/admin/v1/accounts", session_id).status_code == 200
    assert served.call("GET", "/metrics", session_id).status_code == 200
    unguarded = served.call("POST", "/admin/v1/accounts", session_id, json={"name": unique, "tier": "household"})
    assert unguarded.status_code == 403 and error_code(unguarded) == "csrf_token_invalid"
    assert served.gateway.admin("GET", f"/admin/v1/accounts/{unique}").status_code == 404  # not created
    created = served.call("POST", "/admin/v1/accounts", session_id, csrf, json={"name": unique, "tier": "household"})
    assert created.status_code == 201
    for method, path in [("GET", "/v1/plans"), ("GET", "/v1/models"), ("POST", "/v1/packs")]:
        refused = served.call(method, path, session_id, csrf, json={"product": "pack-small"})
        assert refused.status_code == 403 and error_code(refused) == "account_only"


def test_the_anthropic_endpoint_answers_a_session_refusal_in_its_own_shape(served: Served, unique: str) -> None:
    session_id, _ = served.session(served.gateway.account(unique))
    body = {"model": "coder", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    refused = served.call("POST", "/v1/messages", session_id, json=body)
    assert refused.status_code == 403
    assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "permission_error"


def test_sign_out_ends_the_session_at_once(served: Served, unique: str) -> None:
    session_id, csrf = served.session(served.gateway.account(unique))
    unguarded = served.call("DELETE", "/console/session", session_id)
    assert unguarded.status_code == 403 and error_code(unguarded) == "csrf_token_invalid"
    assert served.call("GET", "/v1/plans", session_id).status_code == 200
    out = served.call("DELETE", "/console/session", session_id, csrf)
    assert out.status_code == 204 and cookie_value(out) == "" and cookie_attributes(out)["Max-Age"] == "0"
    for path in ("/v1/plans", "/console/session"):
        gone = served.call("GET", path, session_id)
        assert gone.status_code == 401 and error_code(gone) == "no_session"
    again = served.call("DELETE", "/console/session", session_id, csrf)
    assert again.status_code == 401 and error_code(again) == "no_session"


def test_an_expired_session_is_refused_and_swept(served: Served, unique: str) -> None:
    session_id, _ = served.session(served.gateway.account(unique))
    conn = inspect(served.gateway.database)
    try:
        mine = "account_id = (SELECT id FROM accounts WHERE name = ?)"
        just_now = int(time.time() * 1000) - 1000  # expired, and kept CONSOLE_SESSION_KEPT_S by the sweep
        conn.execute(f"UPDATE console_sessions SET expires_at_ms = ? WHERE {mine}", (just_now, unique))
        for path in ("/v1/plans", "/console/session"):
            expired = served.call("GET", path, session_id)
            assert expired.status_code == 401 and error_code(expired) == "session_expired"
        time.sleep(SWEEP_INTERVAL_S * 2)  # a sweep or two: the session is still there, still "expired"
        assert served.call("GET", "/console/session", session_id).json()["error"]["code"] == "session_expired"
        long_ago = just_now - CONSOLE_SESSION_KEPT_S * 1000
        conn.execute(f"UPDATE console_sessions SET expires_at_ms = ? WHERE {mine}", (long_ago, unique))
        deadline = time.monotonic() + SWEEP_WAIT_S
        while conn.execute(f"SELECT count(*) FROM console_sessions WHERE {mine}", (unique,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the sweep did not delete the expired session"
            time.sleep(0.2)
    finally:
        conn.close()
    gone = served.call("GET", "/console/session", session_id)
    assert gone.status_code == 401 and error_code(gone) == "no_session"


def test_revoking_the_key_ends_its_sessions_at_once(served: Served, unique: str) -> None:
    key = served.gateway.account(unique)
    session_id, _ = served.session(key)
    key_id = served.call("GET", "/console/session", session_id).json()["key"]["id"]
    assert served.gateway.admin("POST", f"/admin/v1/keys/{key_id}/revoke").status_code == 200
    refused = served.call("GET", "/v1/plans", session_id)
    assert refused.status_code == 401 and error_code(refused) == "key_revoked"
    assert error_code(served.sign_in(key)) == "key_revoked"
    created = served.gateway.admin("POST", "/admin/v1/admin-keys", json={"name": unique}).json()
    admin_session, _ = served.session(created["key"])
    served.secrets.append(created["key"])
    assert served.call("GET", "/admin/v1/accounts", admin_session).status_code == 200
    assert served.gateway.admin("POST", f"/admin/v1/admin-keys/{created['id']}/revoke").status_code == 200
    refused = served.call("GET", "/admin/v1/accounts", admin_session)
    assert refused.status_code == 401 and error_code(refused) == "key_revoked"


def test_bad_sign_ins_are_error_objects(served: Served) -> None:
    url = f"{served.url}/console/session"
    cases = [
        (httpx.post(url, content=b"not json", headers={"content-type": "application/json"}), 400, "invalid_json"),
        (httpx.post(url, content=b"[1]", headers={"content-type": "application/json"}), 400, "invalid_json"),
        (httpx.post(url, data={"key": ADMIN_KEY}), 400, "invalid_json"),  # a form: JSON only
        (httpx.post(url, json={}), 400, "missing_field"),
        (httpx.post(url, json={"key": 5}), 400, "missing_field"),
        (httpx.post(url, json={"key": ""}), 400, "missing_field"),
        (served.sign_in("sk-" + "0" * 48), 401, "invalid_api_key"),
        (served.sign_in("sk-admin-not-a-key"), 401, "invalid_api_key"),
        (served.sign_in("anything"), 401, "invalid_api_key"),
    ]
    for response, status, code in cases:
        assert response.status_code == status and error_code(response) == code, response.text
        assert "set-cookie" not in response.headers
    for cookie in ({}, {"cookie": f"{COOKIE}=forged"}, {"cookie": f"{COOKIE}="}):
        missing = httpx.get(url, headers=cookie)
        assert missing.status_code == 401 and error_code(missing) == "no_session"
    no_key = httpx.get(f"{served.url}/v1/plans", headers={"cookie": f"{COOKIE}=forged"})
    assert no_key.status_code == 401 and error_code(no_key) == "no_session"


def test_the_console_is_served_with_its_security_headers(served: Served) -> None:
    for path in ("/console", "/console/"):
        page = httpx.get(f"{served.url}{path}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-cache"
    asset = httpx.get(f"{served.url}/console/assets/index.html")
    assert asset.status_code == 200 and asset.headers["content-security-policy"] == csp
    assert asset.headers["x-content-type-options"] == "nosniff" and "max-age" in asset.headers["cache-control"]
    for missing in (
        "/console/assets/no-such-file.js",
        "/console/assets/%2e%2e/__init__.py",
        "/console/assets/..%2F..%2Fapi%2Fconsole.py",
        "/console/assets/",
    ):
        response = httpx.get(f"{served.url}{missing}")
        assert response.status_code == 404 and error_code(response) == "not_found"


def test_no_key_nor_session_id_reaches_the_log(served: Served, unique: str) -> None:
    key = served.gateway.account(unique)
    session_id, csrf = served.session(key)
    served.call("GET", "/v1/plans", session_id)
    served.call("POST", "/v1/packs", session_id, json={"product": "pack-small"})  # refused: no CSRF token
    served.call("DELETE", "/console/session", session_id, csrf)
    served.call("GET", "/v1/plans", session_id)
    served.session(ADMIN_KEY)
    time.sleep(0.2)  # the log lines of the calls above
    text = served.log.read_text(errors="replace")
    assert text  # debug level: the gateway did log
    assert [secret for secret in served.secrets if secret and secret in text] == []
