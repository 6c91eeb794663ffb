"""The routes of webhooks and the alerts they deliver: an account's own (``/v1/...``, its key) and the admin's
(``/admin/v1/accounts/{account}/...``). Thin: the services are gateway/webhooks.py and economy/alerts.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from suanli.api.admin import json_body, json_response, require_admin, write
from suanli.api.openai_compat import authenticate
from suanli.economy import alerts
from suanli.gateway import webhooks
from suanli.gateway.platform import Platform
from suanli.store.accounts import find_account


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _caller(request: Request) -> tuple[Platform, str]:
    """The platform and the account asked about: the key's own, or the admin's path parameter."""
    if "account" in request.path_params:
        platform = require_admin(request)
        return platform, find_account(platform.reader, request.path_params["account"]).id
    return _platform(request), authenticate(request).account.id


async def create_webhook(request: Request) -> Response:
    platform, account_id = _caller(request)
    body = await json_body(request)
    hook, secret = await write(platform, webhooks.create_job(account_id, body.get("url"), body.get("events")))
    return json_response({**hook.public(), "secret": secret}, 201)


async def list_webhooks(request: Request) -> Response:
    platform, account_id = _caller(request)
    hooks = webhooks.list_webhooks(platform.reader, account_id)
    return json_response({"object": "list", "data": [hook.public() for hook in hooks]})


async def delete_webhook(request: Request) -> Response:
    platform, account_id = _caller(request)
    hook = await write(platform, webhooks.delete_job(account_id, request.path_params["webhook"]))
    return json_response({**hook.public(), "deleted": True})


async def list_alerts(request: Request) -> Response:
    platform, account_id = _caller(request)
    return json_response({"object": "list", "data": alerts.list_alerts(platform.reader, account_id, platform.zone)})


async def get_settings(request: Request) -> Response:
    platform, account_id = _caller(request)
    settings = alerts.read_settings(platform.reader, account_id)
    return json_response({**(settings or alerts.AlertSettings()).public(), "enabled": settings is not None})


async def put_settings(request: Request) -> Response:
    platform, account_id = _caller(request)
    body = await json_body(request)
    settings = await write(platform, alerts.put_settings_job(account_id, body))
    return json_response({**settings.public(), "enabled": True})


_ADMIN = "/admin/v1/accounts/{account}"
routes: list[BaseRoute] = [
    Route("/v1/webhooks", create_webhook, methods=["POST"]),
    Route("/v1/webhooks", list_webhooks, methods=["GET"]),
    Route("/v1/webhooks/{webhook}", delete_webhook, methods=["DELETE"]),
    Route("/v1/alerts", list_alerts, methods=["GET"]),
    Route("/v1/alerts/settings", get_settings, methods=["GET"]),
    Route("/v1/alerts/settings", put_settings, methods=["PUT"]),
    Route(f"{_ADMIN}/webhooks", create_webhook, methods=["POST"]),
    Route(f"{_ADMIN}/webhooks", list_webhooks, methods=["GET"]),
    Route(f"{_ADMIN}/webhooks/{{webhook}}", delete_webhook, methods=["DELETE"]),
    Route(f"{_ADMIN}/alerts", list_alerts, methods=["GET"]),
    Route(f"{_ADMIN}/alerts/settings", get_settings, methods=["GET"]),
    Route(f"{_ADMIN}/alerts/settings", put_settings, methods=["PUT"]),
]
