"""The token economy over HTTP: products, packs, the subscription, token transfers, budgets, funding.

Customers use their API key (``/v1/...``) for their own account; the admin key (``/admin/v1/...``)
acts on any account and lists or retires products. Writes run as jobs of the group-commit writer.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api.admin import json_body, json_response, require_admin, string_field, write
from suanli.api.openai_compat import authenticate
from suanli.catalog import TIERS
from suanli.economy import market
from suanli.economy import store as econ
from suanli.economy.contracts import parse_tiers
from suanli.economy.products import parse_product
from suanli.economy.views import pack_dict, plans_view
from suanli.errors import BadRequest
from suanli.gateway.platform import Platform
from suanli.ledger.model import Balance
from suanli.money import MoneyFormatError, cny_to_nano, nano_to_cny
from suanli.store.accounts import find_account
from suanli.store.db import now_ms


def _wallet(balance: Balance | None) -> dict[str, str] | None:
    return None if balance is None else {"available": nano_to_cny(balance.available)}


async def _buy_pack(platform: Platform, account: str, product: str, idempotency_key: str | None) -> dict[str, Any]:
    pack, balance = await write(platform, market.buy_pack_job(account, product, platform.products, idempotency_key))
    return {"pack": pack_dict(platform.reader, pack, now_ms()), "wallet": _wallet(balance)}


def _plans(platform: Platform, account_ref: str) -> dict[str, Any]:
    account = find_account(platform.reader, account_ref)
    return plans_view(platform.reader, account, platform.products, now_ms(), platform.zone)


def _forget(platform: Platform, account_ref: str) -> None:
    """The account's cached keys now hold stale plan flags or funding settings, in every worker."""
    platform.changed(f"account:{find_account(platform.reader, account_ref).id}")


# The customer's side: their own account, with their API key.


async def products(request: Request) -> Response:
    platform = request.app.state.platform
    caller = authenticate(request)
    shown = [p.public() for p in platform.products.values() if caller.account.tier in p.tiers and not p.retired]
    return json_response({"object": "list", "data": shown})


async def my_plans(request: Request) -> Response:
    platform = request.app.state.platform
    caller = authenticate(request)
    return json_response(_plans(platform, caller.account.id))


async def my_buy_pack(request: Request) -> Response:
    platform = request.app.state.platform
    caller = authenticate(request)
    body = await json_body(request)
    result = await _buy_pack(
        platform, caller.account.id, string_field(body, "product"), request.headers.get("idempotency-key")
    )
    platform.changed(f"account:{caller.account.id}")
    return json_response(result, 201)


async def my_subscribe(request: Request) -> Response:
    platform = request.app.state.platform
    caller = authenticate(request)
    body = await json_body(request)
    job = market.subscribe_job(caller.account.id, string_field(body, "product"), platform.products, platform.zone)
    result = await write(platform, job)
    platform.changed(f"account:{caller.account.id}")
    return json_response(result, 201)


async def my_cancel(request: Request) -> Response:
    platform = request.app.state.platform
    caller = authenticate(request)
    return json_response(await write(platform, market.cancel_job(caller.account.id)))


async def my_transfer(request: Request) -> Response:
    platform = request.app.state.platform
    caller = authenticate(request)
    body = await json_body(request)
    job = market.transfer_tokens_job(
        string_field(body, "pack"),
        string_field(body, "to"),
        body.get("tokens"),
        memo=string_field(body, "memo", ""),
        made_by=f"key {caller.key.id}",
        owner_id=caller.account.id,
    )
    result = await write(platform, job)
    _forget(platform, result["to_account"])
    return json_response(result, 201)


async def my_transfers(request: Request) -> Response:
    platform = request.app.state.platform
    caller = authenticate(request)
    return json_response({"data": econ.token_transfers_of(platform.reader, caller.account.id)})


# The admin's side: any account, and the shelf.


async def admin_list_product(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    product_id, listed_by = string_field(body, "id"), string_field(body, "listed_by", "platform")
    if listed_by != "platform" and listed_by not in platform.catalog.operators:
        raise BadRequest("'listed_by' is an operator of the catalog or 'platform'.", param="listed_by")
    spec = {k: v for k, v in body.items() if k not in ("id", "listed_by")}
    product = parse_product(product_id, spec, models=frozenset(platform.catalog.models), tiers=TIERS)

    def job(conn: Any) -> bool:
        return econ.list_product(conn, product, spec, listed_by)

    if not await write(platform, job):
        raise BadRequest(
            f"A product '{product_id}' is listed already; its terms never change.", code="already_exists", param="id"
        )
    platform.changed("products")
    return json_response(platform.products[product_id].public(), 201)


async def admin_retire_product(request: Request) -> Response:
    platform = require_admin(request)
    product_id = request.path_params["product"]

    def job(conn: Any) -> None:
        econ.retire_product(conn, product_id)

    await write(platform, job)
    platform.changed("products")
    return json_response(platform.products[product_id].public())


async def admin_products(request: Request) -> Response:
    platform = require_admin(request)
    return json_response({"object": "list", "data": [p.public() for p in platform.products.values()]})


async def admin_plans(request: Request) -> Response:
    platform = require_admin(request)
    return json_response(_plans(platform, request.path_params["account"]))


async def admin_buy_pack(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    account = request.path_params["account"]
    result = await _buy_pack(platform, account, string_field(body, "product"), request.headers.get("idempotency-key"))
    _forget(platform, account)
    return json_response(result, 201)


async def admin_subscribe(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    account = request.path_params["account"]
    result = await write(
        platform, market.subscribe_job(account, string_field(body, "product"), platform.products, platform.zone)
    )
    _forget(platform, account)
    return json_response(result, 201)


async def admin_cancel(request: Request) -> Response:
    platform = require_admin(request)
    return json_response(await write(platform, market.cancel_job(request.path_params["account"])))


def budget_amount(unit: str, text: Any) -> int:
    """A budget's amount: CNY as a decimal string, or a whole number of tokens."""
    if unit == "cny":
        if not isinstance(text, str):
            raise BadRequest("A CNY budget's 'amount' is a decimal string, e.g. \"50\".", param="amount")
        try:
            return cny_to_nano(text)
        except MoneyFormatError as exc:
            raise BadRequest(f"'amount': {exc}", param="amount") from None
    if isinstance(text, bool) or not isinstance(text, int):
        raise BadRequest("A token budget's 'amount' is a whole number of tokens.", param="amount")
    return text


async def admin_set_budget(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    account = request.path_params["account"]
    unit = string_field(body, "unit")
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise BadRequest("'key' is a key id (or absent, for the whole account).", param="key")
    job = market.set_budget_job(
        account, key, string_field(body, "period"), unit, budget_amount(unit, body.get("amount"))
    )
    budget = await write(platform, job)
    _forget(platform, account)
    return json_response({"id": budget.id, "period": budget.period, "unit": budget.unit, "key": budget.key_id}, 201)


async def admin_remove_budget(request: Request) -> Response:
    platform = require_admin(request)
    account = find_account(platform.reader, request.path_params["account"])
    budget_id = request.path_params["budget"]

    def job(conn: Any) -> None:
        econ.remove_budget(conn, account.id, budget_id)

    await write(platform, job)
    return json_response({"id": budget_id, "removed": True})


async def admin_set_funding(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    account = request.path_params["account"]
    order = body.get("order")
    if not isinstance(order, list) or not all(isinstance(s, str) for s in order):
        raise BadRequest("'order' is a list of sources: subscription, packs, wallet.", param="order")
    result = await write(platform, market.set_funding_job(account, order, body.get("fallthrough", False)))
    _forget(platform, account)
    return json_response(result)


async def admin_set_contract(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    account = request.path_params["account"]
    try:
        credit_limit = cny_to_nano(string_field(body, "credit_limit"))
    except MoneyFormatError as exc:
        raise BadRequest(f"'credit_limit': {exc}", param="credit_limit") from None
    result = await write(platform, market.set_contract_job(account, credit_limit, parse_tiers(body.get("tiers"))))
    _forget(platform, account)
    return json_response(result)


async def admin_trust(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    return json_response(
        await write(platform, market.trust_job(request.path_params["account"], string_field(body, "account"))), 201
    )


async def admin_transfer(request: Request) -> Response:
    platform = require_admin(request)
    body = await json_body(request)
    job = market.transfer_tokens_job(
        string_field(body, "pack"),
        string_field(body, "to"),
        body.get("tokens"),
        memo=string_field(body, "memo", ""),
        made_by="admin",
        owner_id=None,
    )
    result = await write(platform, job)
    _forget(platform, result["to_account"])
    return json_response(result, 201)


async def admin_expire(request: Request) -> Response:
    platform = require_admin(request)
    return json_response({"data": await write(platform, market.expire_packs_job())})


routes = [
    Route("/v1/products", products, methods=["GET"]),
    Route("/v1/plans", my_plans, methods=["GET"]),
    Route("/v1/packs", my_buy_pack, methods=["POST"]),
    Route("/v1/subscription", my_subscribe, methods=["POST"]),
    Route("/v1/subscription", my_cancel, methods=["DELETE"]),
    Route("/v1/token-transfers", my_transfer, methods=["POST"]),
    Route("/v1/token-transfers", my_transfers, methods=["GET"]),
    Route("/admin/v1/products", admin_products, methods=["GET"]),
    Route("/admin/v1/products", admin_list_product, methods=["POST"]),
    Route("/admin/v1/products/{product}/retire", admin_retire_product, methods=["POST"]),
    Route("/admin/v1/accounts/{account}/plans", admin_plans, methods=["GET"]),
    Route("/admin/v1/accounts/{account}/packs", admin_buy_pack, methods=["POST"]),
    Route("/admin/v1/accounts/{account}/subscription", admin_subscribe, methods=["POST"]),
    Route("/admin/v1/accounts/{account}/subscription", admin_cancel, methods=["DELETE"]),
    Route("/admin/v1/accounts/{account}/budgets", admin_set_budget, methods=["POST"]),
    Route("/admin/v1/accounts/{account}/budgets/{budget}", admin_remove_budget, methods=["DELETE"]),
    Route("/admin/v1/accounts/{account}/funding", admin_set_funding, methods=["PUT"]),
    Route("/admin/v1/accounts/{account}/trust", admin_trust, methods=["POST"]),
    Route("/admin/v1/accounts/{account}/contract", admin_set_contract, methods=["PUT"]),
    Route("/admin/v1/token-transfers", admin_transfer, methods=["POST"]),
    Route("/admin/v1/packs/expire", admin_expire, methods=["POST"]),
]
