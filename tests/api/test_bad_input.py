"""Bad input and failures: each gets a clear OpenAI-style error with the right status and costs nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from suanli.api.errors import error_response, handle_suanli_error, handle_unexpected
from suanli.api.middleware.request_id import RequestIdMiddleware
from suanli.errors import BadRequest, Conflict, NotFound, RateLimited, ServiceUnavailable, SuanliError, Unauthorized
from suanli.limits import REQUEST_BODY_BYTES_MAX
from tests.conftest import Gateway, Simulator
from tests.stores import inspect

MESSAGES = [{"role": "user", "content": "hello"}]


def post(gateway: Gateway, key: str, body: object = None, content: bytes | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if content is not None:
        return httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, content=content, timeout=30)
    return httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, json=body, timeout=30)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert "Traceback" not in response.text
    return dict(error)


def assert_nothing_charged(gateway: Gateway, account: str, funded_nano: int) -> None:
    view = gateway.admin("GET", f"/admin/v1/accounts/{account}").json()
    assert view["wallet"]["balance_nano"] == funded_nano
    assert view["wallet"]["reserved_nano"] == 0


@pytest.fixture
def funded(gateway: Gateway, unique: str) -> tuple[str, str]:
    return unique, gateway.account(unique, topup_cny="1")


def test_malformed_json(gateway: Gateway, funded: tuple[str, str]) -> None:
    assert_error(post(gateway, funded[1], content=b'{"model": "glm-5", '), 400, "invalid_json")


def test_body_not_an_object(gateway: Gateway, funded: tuple[str, str]) -> None:
    assert_error(post(gateway, funded[1], body=[1, 2]), 400, "invalid_json")


def test_missing_messages(gateway: Gateway, funded: tuple[str, str]) -> None:
    error = assert_error(post(gateway, funded[1], body={"model": "glm-5"}), 400, "missing_field")
    assert error["param"] == "messages"


def test_bad_max_tokens(gateway: Gateway, funded: tuple[str, str]) -> None:
    body = {"model": "glm-5", "messages": MESSAGES, "max_tokens": -1}
    assert_error(post(gateway, funded[1], body=body), 400, "invalid_field")


def test_unknown_model(gateway: Gateway, funded: tuple[str, str]) -> None:
    body = {"model": "no-such-model", "messages": MESSAGES}
    assert_error(post(gateway, funded[1], body=body), 404, "model_not_found")


def test_body_over_the_limit(gateway: Gateway, funded: tuple[str, str]) -> None:
    big = b'{"model": "glm-5", "messages": [{"role": "user", "content": "' + b"x" * REQUEST_BODY_BYTES_MAX + b'"}]}'
    assert_error(post(gateway, funded[1], content=big), 413, "body_too_large")


def test_chunked_body_over_the_limit(gateway: Gateway, funded: tuple[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "glm-5", "messages": [{"role": "user", "content": "'
        for _ in range(REQUEST_BODY_BYTES_MAX // 65536 + 2):
            yield b"x" * 65536
        yield b'"}]}'

    headers = {"Authorization": f"Bearer {funded[1]}", "Content-Type": "application/json"}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, content=chunks(), timeout=30)
    assert_error(response, 413, "body_too_large")


@pytest.mark.parametrize("key", ["", "sk-not-a-real-key", "Bearer"])
def test_bad_key(gateway: Gateway, key: str) -> None:
    assert_error(post(gateway, key, body={"model": "glm-5", "messages": MESSAGES}), 401, "invalid_api_key")


def test_revoked_key(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique)
    key_id = gateway.admin("GET", f"/admin/v1/accounts/{unique}/keys").json()["data"][0]["id"]
    assert gateway.admin("POST", f"/admin/v1/keys/{key_id}/revoke").status_code == 200
    assert_error(post(gateway, key, body={"model": "glm-5", "messages": MESSAGES}), 401, "key_revoked")


def test_key_expiry_must_be_in_the_future(gateway: Gateway, unique: str) -> None:
    gateway.account(unique)
    created = gateway.admin("POST", f"/admin/v1/accounts/{unique}/keys", json={"expires_at": "2099-01-01T00:00:00"})
    assert created.status_code == 201
    past = gateway.admin("POST", f"/admin/v1/accounts/{unique}/keys", json={"expires_at": "2001-01-01T00:00:00"})
    assert past.status_code == 400
    assert gateway.cli("key", "create", unique, "--expires", "2000-01-01") == 2


def test_key_expiry_is_enforced(gateway: Gateway, unique: str) -> None:
    gateway.account(unique)
    conn_key = gateway.admin("POST", f"/admin/v1/accounts/{unique}/keys", json={}).json()
    # Expire it in the store, as time would; the gateway has not cached this key yet.
    conn = inspect(gateway.database)
    conn.execute("UPDATE api_keys SET expires_at_ms = 1 WHERE id = ?", (conn_key["id"],))
    conn.close()
    response = post(gateway, conn_key["key"], body={"model": "glm-5", "messages": MESSAGES})
    assert_error(response, 401, "key_expired")


def test_model_not_allowed_for_key(gateway: Gateway, unique: str) -> None:
    gateway.account(unique)
    created = gateway.admin("POST", f"/admin/v1/accounts/{unique}/keys", json={"models": ["glm-5"]}).json()
    assert_error(
        post(gateway, created["key"], body={"model": "deepseek-v3.2", "messages": MESSAGES}), 403, "model_not_allowed"
    )


def test_model_not_offered_to_tier(gateway: Gateway, funded: tuple[str, str]) -> None:
    body = {"model": "household-only", "messages": MESSAGES}
    assert_error(post(gateway, funded[1], body=body), 403, "model_not_offered_to_tier")


def test_insufficient_balance_is_402_and_charges_nothing(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="0.00001")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="glm-5", messages=MESSAGES, max_tokens=1000)  # type: ignore[arg-type]
    assert caught.value.status_code == 402
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "insufficient_balance"
    assert "Nothing was charged" in str(body["message"])
    assert_nothing_charged(gateway, unique, 10_000)


def test_unfunded_account_gets_402(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny=None)
    assert_error(post(gateway, key, body={"model": "glm-5", "messages": MESSAGES}), 402, "insufficient_balance")


def test_upstream_error_is_502_and_free(gateway: Gateway, simulator: Simulator, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    simulator.set("faulty", error_rate_percent=100, error_status=500)
    try:
        for stream in (False, True):
            body = {"model": "faulty-model", "messages": MESSAGES, "stream": stream}
            assert_error(post(gateway, key, body=body), 502, "upstream_error")
    finally:
        simulator.reset("faulty")
    assert_nothing_charged(gateway, unique, 10**9)
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert [e["outcome"] for e in events] == ["upstream_error", "upstream_error"]
    assert all(e["cost_nano"] == 0 for e in events)


def test_unreachable_operator_is_502_and_free(gateway: Gateway, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    response = post(gateway, key, body={"model": "dead-model", "messages": MESSAGES})
    assert_error(response, 502, "upstream_unreachable")
    assert_nothing_charged(gateway, unique, 10**9)


def test_unknown_route_is_an_openai_error(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_admin_api_needs_the_admin_key(gateway: Gateway, funded: tuple[str, str]) -> None:
    response = httpx.get(f"{gateway.url}/admin/v1/accounts", headers={"Authorization": f"Bearer {funded[1]}"})
    assert_error(response, 401, "invalid_api_key")


def test_upstream_timeout_is_504_and_free(gateway: Gateway, simulator: Simulator, unique: str) -> None:
    key = gateway.account(unique, topup_cny="1")
    simulator.set("faulty", hang=True)
    try:
        response = post(gateway, key, body={"model": "faulty-model", "messages": MESSAGES})
    finally:
        simulator.reset("faulty")
    assert_error(response, 504, "upstream_timeout")
    assert_nothing_charged(gateway, unique, 10**9)


def test_the_request_id_is_sent_once_on_answers_and_errors(gateway: Gateway, funded: tuple[str, str]) -> None:
    answered = post(gateway, funded[1], body={"model": "glm-5", "messages": MESSAGES, "max_tokens": 5})
    refused = post(gateway, "sk-nope", body={"model": "glm-5", "messages": MESSAGES})
    anthropic_headers = {"x-api-key": "sk-nope", "anthropic-version": "2023-06-01"}
    body = {"model": "glm-5", "max_tokens": 5, "messages": MESSAGES}
    anthropic_refused = httpx.post(f"{gateway.url}/v1/messages", headers=anthropic_headers, json=body, timeout=30)
    too_large = post(gateway, funded[1], content=b"x" * (REQUEST_BODY_BYTES_MAX + 1))
    for response, status in ((answered, 200), (refused, 401), (anthropic_refused, 401), (too_large, 413)):
        assert response.status_code == status, response.text
        [request_id] = response.headers.get_list("x-request-id")
        assert request_id.startswith("req_")
    assert anthropic_refused.json()["request_id"] == anthropic_refused.headers["x-request-id"]


async def _fail(request: Request) -> Response:
    raise RuntimeError("a bug")


def test_an_unexpected_error_is_a_500_with_the_request_id_once() -> None:
    """Starlette answers an unhandled exception from outside the middleware; the handler adds the id itself.
    The app is wired as ``api/app.py`` wires it, around one route that fails."""
    app = Starlette(
        routes=[Route("/v1/chat/completions", _fail, methods=["POST"])],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={SuanliError: handle_suanli_error, Exception: handle_unexpected},
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/chat/completions")
    assert response.status_code == 500 and "a bug" not in response.text
    [request_id] = response.headers.get_list("x-request-id")
    assert request_id in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("error", "status", "should_retry"),
    [
        (BadRequest("bad"), 400, "false"),
        (Unauthorized("who"), 401, "false"),
        (NotFound("what"), 404, "false"),
        (Conflict("again"), 409, None),
        (RateLimited("spent", headers={"retry-after": "3600"}), 429, None),
        (ServiceUnavailable("busy"), 529, None),
    ],
)
def test_anthropic_errors_say_whether_a_retry_can_help(
    error: SuanliError, status: int, should_retry: str | None
) -> None:
    """Claude Code retries a 401 for minutes unless told not to; a refusal's own headers are kept."""
    anthropic = error_response(error, "req_1", "/v1/messages")
    assert anthropic.status_code == status
    assert anthropic.headers.get("x-should-retry") == should_retry
    assert anthropic.headers.get("retry-after") == {429: "3600", 529: "1"}.get(status)
    assert "x-request-id" not in anthropic.headers  # the middleware's to add
    assert "x-should-retry" not in error_response(error, "req_1", "/v1/chat/completions").headers
