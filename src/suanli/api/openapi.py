"""The published OpenAPI 3.1 document: every public and admin endpoint, served at ``GET /openapi.json``.

Written by hand as data (no framework derives it from the handlers): ``PATHS`` below lists each route with
its key, its body and its answer, in the shapes of ``api/openapi_schemas.py``. tests/api/test_openapi.py
keeps it honest: every route of the app is in it and every path in it is a route, and schemathesis fuzzes
a real gateway against it (no answer of 500 or more, every answer as documented). Errors are documented
once per path, in the protocol the path speaks: OpenAI's shape, Anthropic's under ``/v1/messages``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli import __version__
from suanli.api import openapi_alerts as a
from suanli.api import openapi_schemas as s
from suanli.api.account import ADMIN_GROUPS, CUSTOMER_GROUPS
from suanli.api.errors import ANTHROPIC_PATH_PREFIX

Security = list[dict[str, list[str]]]
KEY: Security = [{"apiKey": []}, {"anthropicKey": []}]
ADMIN: Security = [{"adminKey": []}]
NO_AUTH: Security = []
SECURITY_SCHEMES = {
    "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key of an account (sk-...)"},
    "anthropicKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "the same key"},
    "adminKey": {"type": "http", "scheme": "bearer", "description": "an admin key (sk-admin-...)"},
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "suanli_session",
        "description": "a console session (POST /console/session); it stands for its key where no key header is "
        "sent, and a write with it needs the header x-csrf-token",
    },
}
# Before OpenAPI 3.2, a stream's schema describes each of its events: an SSE event, its data a JSON text (or
# OpenAI's closing "[DONE]").
SSE_EVENT = s.obj({"data": s.STRING}, {"event": s.STRING, "id": s.STRING})
SSE = {"text/event-stream": {"schema": SSE_EVENT}}
METRICS_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _json(schema: s.Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(path: str) -> dict[str, Any]:
    error = "AnthropicError" if path.startswith(ANTHROPIC_PATH_PREFIX) else "Error"
    answer = {"description": "an error (docs/api.md, *Errors*)", "content": _json(s.ref(error))}
    return {"4XX": answer, "5XX": answer}


def op(
    summary: str,
    answer: s.Schema,
    *,
    security: Security,
    status: int = 200,
    body: s.Schema | None = None,
    params: tuple[dict[str, Any], ...] = (),
    streams: bool = False,
) -> dict[str, Any]:
    """One operation: its key, body, parameters and answer (errors are added per path)."""
    content = {**_json(answer), **(SSE if streams else {})}
    operation: dict[str, Any] = {
        "summary": summary,
        "security": security,
        "parameters": list(params),
        "responses": {str(status): {"description": summary, "content": content}},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    return operation


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


ACCOUNT = path_param("account", "an account id (acct_...) or name")
OFFER = path_param("offer", "an offer, operator/model (the slash may be sent as %2F)")
PRODUCT = path_param("product", "a product id")
BUDGET = path_param("budget", "a budget id")
KEY_ID = path_param("key_id", "a key id")
ADMIN_KEY_ID = path_param("key_id", "an admin key's id")


SESSION_COOKIE: Security = [{"sessionCookie": []}]
HTML = {"text/html": {"schema": {"type": "string"}}}
CONSOLE_SESSION = s.obj(
    {
        "object": {"const": "console_session"},
        "kind": {"enum": ["account", "admin"]},
        "account": s.nullable(s.obj({"id": s.STRING, "name": s.STRING, "tier": s.STRING})),
        "key": s.obj({"id": s.STRING, "name": s.STRING, "prefix": s.STRING}),
        "csrf_token": s.STRING,
        "expires_at_ms": s.INTEGER,
    },
    {"language": s.nullable(s.STRING)},
)
SIGN_IN = s.obj({"key": {"type": "string", "minLength": 1}})
CSRF_TOKEN = {"name": "x-csrf-token", "in": "header", "required": True, "schema": s.STRING}
ASSET_NAME = path_param("name", "a file of the console's page")


def _page(summary: str, params: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    page = op(summary, s.STRING, security=NO_AUTH, params=params)
    page["responses"] = {"200": {"description": summary, "content": HTML}}
    return page


def _console() -> dict[str, dict[str, Any]]:
    """The web console: its sessions (docs/api.md, *Console sessions*) and its page's files."""
    sign_out = op("sign out", s.OBJECT, security=SESSION_COOKIE, params=(CSRF_TOKEN,))
    sign_out["responses"] = {"204": {"description": "signed out; the cookie is cleared"}}
    return {
        "/console/session": {
            "post": op("sign in with a key: a session cookie", CONSOLE_SESSION, security=NO_AUTH, body=SIGN_IN),
            "get": op("the cookie's session", CONSOLE_SESSION, security=SESSION_COOKIE),
            "delete": sign_out,
        },
        "/console": {"get": _page("the console's page")},
        "/console/": {"get": _page("the console's page")},
        "/console/assets/{name}": {"get": _page("a file of the console's page", (ASSET_NAME,))},
    }


def _public() -> dict[str, dict[str, Any]]:
    """The calls a key (or a console session) makes, and the console itself."""
    return {
        **_console(),
        "/v1/chat/completions": {
            "post": op(
                "a chat completion, streamed or not", s.CHAT_ANSWER, security=KEY, body=s.CHAT_REQUEST, streams=True
            )
        },
        "/v1/embeddings": {"post": op("embeddings", s.EMBEDDING_ANSWER, security=KEY, body=s.EMBEDDING_REQUEST)},
        "/v1/images/generations": {"post": op("image generation", s.IMAGE_ANSWER, security=KEY, body=s.IMAGE_REQUEST)},
        "/v1/models": {
            "get": op("the models this key may use", s.listing(s.MODEL, object={"const": "list"}), security=KEY)
        },
        "/v1/pricing": {"get": op("the price list", s.PRICE_LIST, security=KEY, params=(s.MODEL_QUERY, s.AT))},
        "/v1/quote": {
            "post": op("what a chat request would cost at most", s.QUOTE, security=KEY, body=s.QUOTE_REQUEST)
        },
        "/v1/messages": {
            "post": op(
                "the Anthropic Messages API", s.ANTHROPIC_ANSWER, security=KEY, body=s.ANTHROPIC_REQUEST, streams=True
            )
        },
        "/v1/messages/count_tokens": {
            "post": op(
                "input tokens of a Messages request",
                s.obj({"input_tokens": s.INTEGER}),
                security=KEY,
                body=s.ANTHROPIC_REQUEST,
            )
        },
    }


def _public_plans() -> dict[str, dict[str, Any]]:
    """The token economy as a customer's key sees it."""
    return {
        "/v1/products": {"get": op("the products on sale to the account's tier", s.PRODUCTS, security=KEY)},
        "/v1/plans": {"get": op("what the account holds", s.PLANS, security=KEY)},
        "/v1/packs": {
            "post": op(
                "buy a pack",
                s.PACK_BOUGHT,
                security=KEY,
                status=201,
                body=s.PRODUCT_CHOICE,
                params=(s.IDEMPOTENCY_KEY,),
            )
        },
        "/v1/subscription": {
            "post": op("subscribe, or upgrade", s.SUBSCRIBED, security=KEY, status=201, body=s.PRODUCT_CHOICE),
            "delete": op("end the subscription", s.CANCELLED, security=KEY),
        },
        "/v1/token-transfers": {
            "post": op(
                "move tokens of a pack to a trusted account",
                s.TRANSFER,
                security=KEY,
                status=201,
                body=s.TRANSFER_REQUEST,
            ),
            "get": op("the account's transfers", s.listing(s.TRANSFER_ROW), security=KEY),
        },
        "/healthz": {"get": op("liveness", s.obj({"status": {"const": "ok"}}), security=NO_AUTH)},
        "/openapi.json": {"get": op("this document", s.OBJECT, security=NO_AUTH)},
    }


def _self_service() -> dict[str, dict[str, Any]]:
    """The account's own views and settings, with its key (api/account.py)."""
    usage = op("the account's calls, newest first", s.USAGE_PAGE, security=KEY, params=s.USAGE_QUERY)
    usage["responses"]["200"]["content"].update(s.USAGE_CSV)
    return {
        "/v1/account": {"get": op("the account, its wallet and the key used", s.ACCOUNT_SELF, security=KEY)},
        "/v1/usage": {"get": usage},
        "/v1/usage/summary": {
            "get": op("usage by hour or day", s.SUMMARY, security=KEY, params=s.summary_query(CUSTOMER_GROUPS))
        },
        "/v1/keys": {
            "get": op("the account's keys, never a secret", s.listing(s.KEY, object={"const": "list"}), security=KEY),
            "post": op("create a key", s.NEW_KEY, security=KEY, status=201, body=s.KEY_REQUEST),
        },
        "/v1/keys/{key_id}/revoke": {"post": op("revoke a key of the account", s.KEY, security=KEY, params=(KEY_ID,))},
        "/v1/budgets": {"post": op("set a budget", s.BUDGET, security=KEY, status=201, body=s.BUDGET_REQUEST)},
        "/v1/budgets/{budget}": {
            "delete": op("remove a budget of the account", s.BUDGET_REMOVED, security=KEY, params=(BUDGET,))
        },
        "/v1/forecast": {"get": op("when money and tokens run out", s.FORECAST, security=KEY)},
        "/admin/v1/usage/summary": {
            "get": op(
                "every account's usage by hour or day",
                s.SUMMARY,
                security=ADMIN,
                params=s.summary_query(ADMIN_GROUPS),
            )
        },
        "/admin/v1/topups": {
            "get": op("the latest top-ups, newest first", s.TOPUPS, security=ADMIN, params=(s.USAGE_LIMIT,))
        },
        "/admin/v1/contracts": {"get": op("every enterprise contract", s.CONTRACTS, security=ADMIN)},
    }


def _accounts() -> dict[str, dict[str, Any]]:
    base = "/admin/v1/accounts/{account}"
    return {
        "/admin/v1/accounts": {
            "post": op("create an account", s.ACCOUNT_VIEW, security=ADMIN, status=201, body=s.ACCOUNT_REQUEST),
            "get": op("every account, with its wallet", s.listing(s.ACCOUNT_WITH_WALLET), security=ADMIN),
        },
        base: {"get": op("an account and its wallet", s.ACCOUNT_VIEW, security=ADMIN, params=(ACCOUNT,))},
        f"{base}/balance": {"get": op("the same", s.ACCOUNT_VIEW, security=ADMIN, params=(ACCOUNT,))},
        f"{base}/keys": {
            "post": op(
                "create an API key", s.NEW_KEY, security=ADMIN, status=201, body=s.KEY_REQUEST, params=(ACCOUNT,)
            ),
            "get": op("the account's keys", s.listing(s.KEY), security=ADMIN, params=(ACCOUNT,)),
        },
        f"{base}/topup": {
            "post": op(
                "credit the wallet",
                s.obj({"account": s.ACCOUNT, "wallet": s.WALLET}),
                security=ADMIN,
                body=s.TOPUP_REQUEST,
                params=(ACCOUNT, s.IDEMPOTENCY_KEY),
            )
        },
        f"{base}/routing": {
            "put": op(
                "the account's routing defaults", s.ACCOUNT, security=ADMIN, body=s.ROUTING_REQUEST, params=(ACCOUNT,)
            )
        },
        f"{base}/usage": {
            "get": op("recent usage events", s.listing(s.USAGE_EVENT), security=ADMIN, params=(ACCOUNT, s.USAGE_LIMIT))
        },
        "/admin/v1/keys/{key_id}/revoke": {"post": op("revoke a key", s.KEY, security=ADMIN, params=(KEY_ID,))},
        "/admin/v1/admin-keys": {
            "post": op("create an admin key", s.NEW_ADMIN_KEY, security=ADMIN, status=201, body=s.ADMIN_KEY_REQUEST),
            "get": op("every admin key, never a secret", s.listing(s.ADMIN_KEY), security=ADMIN),
        },
        "/admin/v1/admin-keys/{key_id}/revoke": {
            "post": op("revoke an admin key", s.ADMIN_KEY, security=ADMIN, params=(ADMIN_KEY_ID,))
        },
    }


def _account_plans() -> dict[str, dict[str, Any]]:
    """An account's packs, subscription, budgets, funding, contract and trust, as an administrator sees them."""
    base = "/admin/v1/accounts/{account}"
    return {
        f"{base}/plans": {"get": op("what the account holds", s.PLANS, security=ADMIN, params=(ACCOUNT,))},
        f"{base}/packs": {
            "post": op(
                "buy a pack for the account",
                s.PACK_BOUGHT,
                security=ADMIN,
                status=201,
                body=s.PRODUCT_CHOICE,
                params=(ACCOUNT, s.IDEMPOTENCY_KEY),
            )
        },
        f"{base}/subscription": {
            "post": op(
                "subscribe the account",
                s.SUBSCRIBED,
                security=ADMIN,
                status=201,
                body=s.PRODUCT_CHOICE,
                params=(ACCOUNT,),
            ),
            "delete": op("end its subscription", s.CANCELLED, security=ADMIN, params=(ACCOUNT,)),
        },
        f"{base}/budgets": {
            "post": op("set a budget", s.BUDGET, security=ADMIN, status=201, body=s.BUDGET_REQUEST, params=(ACCOUNT,))
        },
        f"{base}/budgets/{{budget}}": {
            "delete": op(
                "remove a budget",
                s.obj({"id": s.STRING, "removed": s.BOOLEAN}),
                security=ADMIN,
                params=(ACCOUNT, BUDGET),
            )
        },
        f"{base}/funding": {
            "put": op("the funding order", s.FUNDING, security=ADMIN, body=s.FUNDING, params=(ACCOUNT,))
        },
        f"{base}/contract": {
            "put": op("an enterprise contract", s.CONTRACT, security=ADMIN, body=s.CONTRACT_REQUEST, params=(ACCOUNT,))
        },
        f"{base}/trust": {
            "post": op(
                "let the account transfer tokens to another",
                s.TRUST,
                security=ADMIN,
                status=201,
                body=s.TRUST_REQUEST,
                params=(ACCOUNT,),
            )
        },
    }


def _platform() -> dict[str, dict[str, Any]]:
    prices = "/admin/v1/offers/{offer}/prices"
    return {
        "/metrics": {
            "get": {
                **op("Prometheus metrics", s.STRING, security=ADMIN),
                "responses": {"200": {"description": "metrics", "content": METRICS_TEXT}},
            }
        },
        "/admin/v1/operators": {"get": op("every operator's offers and health", s.listing(s.OPERATOR), security=ADMIN)},
        prices: {
            "post": op(
                "a later price version",
                s.PRICE_VERSION,
                security=ADMIN,
                status=201,
                body=s.PRICE_VERSION_REQUEST,
                params=(OFFER,),
            ),
            "get": op("the offer's price history", s.PRICE_HISTORY, security=ADMIN, params=(OFFER,)),
        },
        "/admin/v1/products": {
            "get": op("every product, retired ones too", s.PRODUCTS, security=ADMIN),
            "post": op("list a product", s.PRODUCT, security=ADMIN, status=201, body=s.PRODUCT_REQUEST),
        },
        "/admin/v1/products/{product}/retire": {
            "post": op("stop selling a product", s.PRODUCT, security=ADMIN, params=(PRODUCT,))
        },
        "/admin/v1/token-transfers": {
            "post": op(
                "move tokens between any accounts", s.TRANSFER, security=ADMIN, status=201, body=s.TRANSFER_REQUEST
            )
        },
        "/admin/v1/packs/expire": {"post": op("forfeit what is left of expired packs", s.FORFEITED, security=ADMIN)},
    }


def _alerts() -> dict[str, dict[str, Any]]:
    """Webhooks and alerts (api/webhooks.py): an account's own, and the admin's for any account."""
    paths: dict[str, dict[str, Any]] = {}
    webhook = path_param("webhook", "a webhook id (wh_...)")
    for base, security, params in (("/v1", KEY, ()), ("/admin/v1/accounts/{account}", ADMIN, (ACCOUNT,))):
        paths[f"{base}/webhooks"] = {
            "post": op(
                "register a webhook",
                a.NEW_WEBHOOK,
                security=security,
                status=201,
                body=a.WEBHOOK_REQUEST,
                params=params,
            ),
            "get": op("the webhooks, never a secret", a.WEBHOOKS, security=security, params=params),
        }
        paths[f"{base}/webhooks/{{webhook}}"] = {
            "delete": op("delete a webhook", a.DELETED_WEBHOOK, security=security, params=(*params, webhook))
        }
        paths[f"{base}/alerts"] = {"get": op("the alerts, newest first", a.ALERTS, security=security, params=params)}
        paths[f"{base}/alerts/settings"] = {
            "get": op("the alert settings", a.ALERT_SETTINGS, security=security, params=params),
            "put": op(
                "change the alert settings",
                a.ALERT_SETTINGS,
                security=security,
                body=a.ALERT_SETTINGS_REQUEST,
                params=params,
            ),
        }
    return paths


def _export(summary: str, security: Security, admin: bool) -> dict[str, Any]:
    """A streamed export (api/exports.py): CSV or JSON Lines, its columns in docs/api.md."""
    account = (s.query("account", s.STRING, "only this account's rows (an id or name)"),) if admin else ()
    output = s.query("format", {"enum": ["csv", "jsonl"], "default": "csv"}, "the file's format")
    operation = op(summary, s.STRING, security=security, params=(*account, s.FROM, s.TO, s.TZ, output))
    streamed = {"schema": {"type": "string", "description": "docs/api.md lists the columns"}}
    operation["responses"]["200"]["content"] = {"text/csv": streamed, "application/x-ndjson": streamed}
    return {"get": operation}


def _exports() -> dict[str, dict[str, Any]]:
    return {
        "/v1/exports/usage": _export("the account's calls, oldest first", KEY, admin=False),
        "/v1/exports/transfers": _export("the account's ledger transfers, oldest first", KEY, admin=False),
        "/admin/v1/exports/usage": _export("every account's calls, or one's", ADMIN, admin=True),
        "/admin/v1/exports/transfers": _export("every ledger transfer, or one account's", ADMIN, admin=True),
    }


def _statements() -> dict[str, dict[str, Any]]:
    """Account statements (api/statements.py; docs/statements.md, "Statements")."""
    params = (
        s.query("month", s.STRING, "YYYY-MM in the catalog's time zone (or from and to)"),
        s.FROM,
        s.TO,
        s.query("format", {"enum": ["json", "csv", "pdf"], "default": "json"}, "the document's format (or Accept)"),
        s.query("lang", {"enum": ["en", "zh-CN"], "default": "en"}, "the PDF's language"),
    )
    paths: dict[str, dict[str, Any]] = {}
    for path, security, extra in (
        ("/v1/statements", KEY, ()),
        ("/admin/v1/accounts/{account}/statements", ADMIN, (ACCOUNT,)),
    ):
        operation = op(
            "an account's statement for a month or range", s.OBJECT, security=security, params=(*extra, *params)
        )
        operation["responses"]["200"]["content"]["text/csv"] = {"schema": s.STRING}
        operation["responses"]["200"]["content"]["application/pdf"] = {"schema": {"type": "string", "format": "binary"}}
        paths[path] = {"get": operation}
    return paths


def _settlements() -> dict[str, dict[str, Any]]:
    """Operator settlement (api/settlements.py; docs/statements.md)."""
    month = s.query("month", s.STRING, "YYYY-MM in the catalog's time zone")
    operator = s.query("operator", s.STRING, "only this operator's settlements")
    statement = op(
        "an operator's statement for a month",
        s.OBJECT,
        security=ADMIN,
        params=(
            path_param("operator", "an operator's name"),
            month,
            s.query("format", {"enum": ["json", "csv", "pdf"], "default": "json"}, "the document's format"),
            s.query("lang", {"enum": ["en", "zh-CN"], "default": "en"}, "the PDF's language"),
        ),
    )
    statement["responses"]["200"]["content"]["text/csv"] = {"schema": s.STRING}
    statement["responses"]["200"]["content"]["application/pdf"] = {"schema": {"type": "string", "format": "binary"}}
    return {
        "/admin/v1/operator-settlements": {
            "post": op(
                "settle the operators' sales of a month, once",
                s.OBJECT,
                security=ADMIN,
                status=201,
                body=s.obj({"month": s.STRING}),
            ),
            "get": op("the settlements recorded", s.OBJECT, security=ADMIN, params=(month, operator)),
        },
        "/admin/v1/operators/{operator}/statement": {"get": statement},
    }


def build_document() -> dict[str, Any]:
    paths = {
        **_public(),
        **_public_plans(),
        **_self_service(),
        **_accounts(),
        **_account_plans(),
        **_platform(),
        **_alerts(),
        **_exports(),
        **_settlements(),
        **_statements(),
    }
    for path, operations in paths.items():
        for operation in operations.values():
            operation["responses"].update(_errors(path))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Suanli",
            "version": __version__,
            "description": "A metered AI-inference gateway: OpenAI- and Anthropic-compatible calls, accounts, "
            "keys, packs, budgets, token transfers and prices. docs/api.md says the rest.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": s.ERROR, "AnthropicError": s.ANTHROPIC_ERROR},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


DOCUMENT = orjson.dumps(build_document())  # built once: it is data, the same for every caller


async def openapi_document(request: Request) -> Response:
    return Response(DOCUMENT, media_type="application/json")


routes = [Route("/openapi.json", openapi_document, methods=["GET"])]
