"""The admin API (``/admin/v1/...``), guarded by an admin key: accounts, keys, top-ups, balances, usage.

Every write runs as one job of the group-commit writer, the same path the CLI runs directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.errors import BadRequest
from suanli.gateway import accounts as ops
from suanli.gateway import admin_keys, sessions
from suanli.gateway.auth import bearer_token
from suanli.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from suanli.gateway.platform import Platform
from suanli.gateway.requests import parse_json_object
from suanli.money import MoneyFormatError, cny_to_nano
from suanli.store.accounts import find_account, list_keys
from suanli.store.conn import Conn

T = TypeVar("T")
USAGE_DEFAULT_ROWS = 50


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def require_admin(request: Request) -> Platform:
    """An admin key in the header, or, with none, an admin's console session (its cookie, and the CSRF
    token for a write); an account's session is refused (403 ``admin_only``)."""
    platform: Platform = request.app.state.platform
    raw_key = bearer_token(request.headers.get("authorization"))
    if not raw_key and (session_id := request.cookies.get(sessions.SESSION_COOKIE)):
        csrf_token = request.headers.get(sessions.CSRF_HEADER)
        sessions.admin_key_for(platform.reader, session_id, request.method, csrf_token)
    else:
        admin_keys.authenticate_admin(platform.reader, raw_key)
    return platform


async def write(platform: Platform, job: Callable[[Conn], T]) -> T:
    return await platform.writer.run(job)


async def json_body(request: Request) -> dict[str, Any]:
    """An administration request's JSON object; a NUL character in any of its strings is refused (no name
    or value stored holds one, and PostgreSQL's text cannot)."""
    raw = await request.body()
    if b"\\u0000" in raw:
        raise BadRequest("The request holds a NUL character (\\u0000), which no field accepts.", code="invalid_value")
    return parse_json_object(raw)


def string_field(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' is required and must be a string.", param=name)
    return value


async def create_account(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    account = await write(platform, ops.create_account_job(string_field(body, "name"), string_field(body, "tier")))
    return json_response(ops.account_view(platform.reader, account.id), 201)


async def get_accounts(request: Request) -> Response:
    platform = require_admin(request)
    return json_response(ops.accounts_view(platform.reader))


async def get_account(request: Request) -> Response:
    platform = require_admin(request)
    return json_response(ops.account_view(platform.reader, request.path_params["account"]))


def _expiry(value: Any) -> int | None:
    return ops.parse_expiry_ms(None if value is None else str(value), "expires_at")


def _models(body: dict[str, Any]) -> list[str] | None:
    models = body.get("models")
    if models is None:
        return None
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise BadRequest("'models' must be a non-empty array of model names.", param="models")
    return models


async def create_key(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    job = ops.create_key_job(
        request.path_params["account"], string_field(body, "name", ""), _models(body), _expiry(body.get("expires_at"))
    )
    key, raw = await write(platform, job)
    return json_response({**ops.key_dict(key), "key": raw}, 201)


async def get_keys(request: Request) -> Response:
    platform = require_admin(request)
    account = find_account(platform.reader, request.path_params["account"])
    return json_response({"data": [ops.key_dict(k) for k in list_keys(platform.reader, account.id)]})


async def set_routing(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    if "provider" not in body:
        raise BadRequest('Send {"provider": {...}} (or null to clear).', param="provider")
    account = await write(platform, ops.set_routing_job(request.path_params["account"], body["provider"]))
    platform.changed(f"account:{account.id}")
    return json_response(ops.account_dict(account))


async def revoke_key(request: Request) -> Response:
    platform = require_admin(request)
    key = await write(platform, ops.revoke_key_job(request.path_params["key_id"]))
    platform.changed(f"key:{key.id}")
    return json_response(ops.key_dict(key))


async def create_admin_key(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    key, raw = await write(platform, admin_keys.create_admin_key_job(string_field(body, "name")))
    return json_response({**admin_keys.admin_key_dict(key), "key": raw}, 201)


async def get_admin_keys(request: Request) -> Response:
    platform = require_admin(request)
    return json_response(admin_keys.admin_keys_view(platform.reader))


async def revoke_admin_key(request: Request) -> Response:
    platform = require_admin(request)
    key = await write(platform, admin_keys.revoke_admin_key_job(request.path_params["key_id"]))
    return json_response(admin_keys.admin_key_dict(key))


async def topup(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    try:
        amount_nano = cny_to_nano(string_field(body, "amount"))
    except MoneyFormatError as exc:
        raise BadRequest(f"'amount' must be CNY as a decimal string: {exc}", param="amount") from None
    job = ops.topup_job(request.path_params["account"], amount_nano, request.headers.get("idempotency-key"))
    account, balance = await write(platform, job)
    return json_response({"account": ops.account_dict(account), "wallet": ops.balance_dict(balance)})


async def usage(request: Request) -> Response:
    platform = require_admin(request)
    limit_text = request.query_params.get("limit", str(USAGE_DEFAULT_ROWS))
    # ASCII digits only ("²" is a digit to str.isdigit, not to int), and few: int() of a long one is slow.
    if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > len(str(ops.USAGE_ROWS_MAX)):
        raise BadRequest(f"'limit' must be a whole number from 1 to {ops.USAGE_ROWS_MAX}.", param="limit")
    events = ops.usage_view(platform.reader, request.path_params["account"], int(limit_text))
    return json_response({"data": [ops.usage_dict(e) for e in events]})


async def operators(request: Request) -> Response:
    platform = require_admin(request)
    offers = platform.health.snapshot()
    data = [
        {
            "operator": name,
            "region": op.region,
            "base_url": op.base_url,
            "offers": [o for o in offers if o["operator"] == name],
        }
        for name, op in platform.catalog.operators.items()
    ]
    return json_response({"data": data})


async def metrics(request: Request) -> Response:
    platform = require_admin(request)
    return Response(platform.metrics.render(), media_type=METRICS_CONTENT_TYPE)


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/admin/v1/operators", operators, methods=["GET"]),
    Route("/admin/v1/accounts", create_account, methods=["POST"]),
    Route("/admin/v1/accounts", get_accounts, methods=["GET"]),
    Route("/admin/v1/accounts/{account}", get_account, methods=["GET"]),
    Route("/admin/v1/accounts/{account}/balance", get_account, methods=["GET"]),
    Route("/admin/v1/accounts/{account}/keys", create_key, methods=["POST"]),
    Route("/admin/v1/accounts/{account}/keys", get_keys, methods=["GET"]),
    Route("/admin/v1/accounts/{account}/topup", topup, methods=["POST"]),
    Route("/admin/v1/accounts/{account}/routing", set_routing, methods=["PUT"]),
    Route("/admin/v1/accounts/{account}/usage", usage, methods=["GET"]),
    Route("/admin/v1/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
    Route("/admin/v1/admin-keys", create_admin_key, methods=["POST"]),
    Route("/admin/v1/admin-keys", get_admin_keys, methods=["GET"]),
    Route("/admin/v1/admin-keys/{key_id}/revoke", revoke_admin_key, methods=["POST"]),
]
