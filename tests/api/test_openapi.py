"""The published OpenAPI document: served without a key, the same routes as the app, and a fuzzer that holds the
gateway to it (schemathesis, on a gateway of its own: no answer of 500 or more, every answer as documented)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.routing import Route

from suanli.api.app import build_app
from suanli.api.openapi import build_document
from suanli.gateway.platform import Settings
from tests.conftest import ADMIN_KEY, Gateway, Simulator, start_gateway, stop

# Bounded: the default run (about 25 s) draws the same inputs every time, so a failure is a regression and
# not bad luck; the slow run draws many more, afresh each time, to look for what the default one misses.
FUZZ_EXAMPLES_PER_OPERATION = 30
FUZZ_EXAMPLES_PER_OPERATION_SLOW = 300
FUZZ_TIMEOUT_S = 30.0
FUZZ_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def _app_operations() -> set[tuple[str, str]]:
    app = build_app(Settings(Path("unused.db"), Path("unused.toml")))
    operations = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {offer:path} is {offer} in OpenAPI
        operations |= {(method.lower(), path) for method in route.methods or () if method != "HEAD"}
    return operations


def _documented_operations() -> set[tuple[str, str]]:
    return {(method, path) for path, item in build_document()["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_path_is_a_route() -> None:
    app, documented = _app_operations(), _documented_operations()
    assert sorted(app - documented) == []
    assert sorted(documented - app) == []


def test_the_document_is_served_without_a_key(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == build_document()
    assert response.json()["openapi"].startswith("3.1")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("PATCH", "/v1/chat/completions", 405, "method_not_allowed"),
        ("GET", "/admin/v1/accounts/someone/topup", 405, "method_not_allowed"),
        ("GET", "/v1/no-such-thing", 404, "not_found"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
    ],
)
def test_refusals_of_the_router_are_openai_json(
    gateway: Gateway, method: str, path: str, status: int, code: str
) -> None:
    response = httpx.request(method, f"{gateway.url}{path}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert response.headers["x-request-id"]
    if status == 405:
        assert response.headers["allow"]


def test_refusals_of_the_router_under_messages_are_anthropic_json(gateway: Gateway) -> None:
    for method, path, status in (
        ("GET", "/v1/messages", 405),
        ("PUT", "/v1/messages/count_tokens", 405),
        ("GET", "/v1/messages/nothing", 404),
    ):
        response = httpx.request(method, f"{gateway.url}{path}")
        assert response.status_code == status
        body = response.json()
        assert body["type"] == "error" and body["error"]["message"] and body["request_id"]
        assert response.headers["x-should-retry"] == "false"


# The fuzzer, on a gateway of its own: it creates accounts, keys and budgets, changes prices and retires
# products, which the other tests' gateway must not see. Each operation is a test of its own.

FUZZ_ACCOUNT, FUZZ_FRIEND, FUZZ_PACK = "fuzz", "fuzz-friend", "the fuzz account's pack"
# Names the fuzzer draws from where the document says "a string": random ones would all be refused at once
# with 404 (no such model, account or product), and the code behind never run. Negative cases still send others.
FUZZ_NAMES = {
    "model": ["deepseek-v3.2", "glm-5", "multi", "embed", "painter", "coder", "dual", "anthropic-only", "no-such"],
    "account": [FUZZ_ACCOUNT, FUZZ_FRIEND, "no-such"],
    "to": [FUZZ_FRIEND, FUZZ_ACCOUNT, "no-such"],
    "product": ["pack-small", "pack-late", "household-pack", "coding-lite", "coding-pro", "no-such"],
    "offer": ["alpha/deepseek-v3.2", "beta/glm-5", "no/such"],
    "pack": [FUZZ_PACK, "no-such"],  # the pack's id is known once it is bought: the test puts it in
}


def fuzz_document() -> dict[str, Any]:
    """The published document with its names narrowed to those of the test catalog (see ``FUZZ_NAMES``)."""
    names = FUZZ_NAMES
    document: dict[str, Any] = orjson.loads(orjson.dumps(build_document()))
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation["parameters"]:
                if parameter["in"] == "path" and parameter["name"] in names:
                    parameter["schema"] = {"enum": names[parameter["name"]]}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            for name, field in body.get("properties", {}).items():
                if name in names and field.get("type") == "string":
                    body["properties"][name] = {"enum": names[name]}
    return document


class Fuzz:
    """The fuzzer's gateway, its keys and its pack."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.customer = gateway.account(FUZZ_ACCOUNT, topup_cny="1000")
        gateway.account(FUZZ_FRIEND, topup_cny=None)
        gateway.admin("POST", f"/admin/v1/accounts/{FUZZ_ACCOUNT}/trust", json={"account": FUZZ_FRIEND})
        pack = gateway.admin("POST", f"/admin/v1/accounts/{FUZZ_ACCOUNT}/packs", json={"product": "pack-late"})
        self.pack_id = pack.json()["pack"]["id"]

    def headers(self, path: str) -> dict[str, str]:
        admin = path.startswith("/admin/") or path == "/metrics"
        return {"Authorization": f"Bearer {ADMIN_KEY if admin else self.customer}"}


@pytest.fixture(scope="module")
def fuzz(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    running = start_gateway(tmp_path_factory.mktemp("fuzz"), simulator)
    try:
        yield Fuzz(running)
    finally:
        stop(running.process)


schema = schemathesis.openapi.from_dict(fuzz_document())


def _fuzz(case: schemathesis.Case, fuzz: Fuzz) -> None:
    if isinstance(case.body, dict) and case.body.get("pack") == FUZZ_PACK:
        case.body["pack"] = fuzz.pack_id
    case.call_and_validate(
        base_url=fuzz.gateway.url, headers=fuzz.headers(case.path), checks=FUZZ_CHECKS, timeout=FUZZ_TIMEOUT_S
    )


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
def test_fuzz_every_endpoint(case: schemathesis.Case, fuzz: Fuzz) -> None:
    _fuzz(case, fuzz)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES_PER_OPERATION_SLOW, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_every_endpoint_at_length(case: schemathesis.Case, fuzz: Fuzz) -> None:
    _fuzz(case, fuzz)
