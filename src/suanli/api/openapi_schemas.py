"""The shapes of the published OpenAPI document (``api/openapi.py``): request bodies and answers, as JSON Schema.

Written by hand, as data: each schema states the fields a client relies on (required, typed) and leaves the
rest open (``additionalProperties`` is allowed unless a body is closed), since a chat request's unknown fields
are forwarded to the operator and an operator's answer is passed on as it came. The schemas are checked by the
fuzzer in tests/api/test_openapi.py: every answer of the gateway must match the one documented here.
"""

from __future__ import annotations

from typing import Any

from suanli.api.admin import USAGE_DEFAULT_ROWS
from suanli.economy.market import BUDGET_PERIODS, BUDGET_UNITS, IDEMPOTENCY_KEY_CHARS_MAX, TRANSFER_MEMO_CHARS_MAX
from suanli.economy.products import FUNDING_SOURCES
from suanli.gateway.accounts import USAGE_ROWS_MAX
from suanli.gateway.routing import SORTS
from suanli.limits import CHOICES_MAX, MAX_TOKENS_DEFAULT_CAP, TOKENS_AMOUNT_MAX

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
NUMBER: Schema = {"type": "number"}
OBJECT: Schema = {"type": "object"}
CNY: Schema = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?$", "description": "CNY, an exact decimal string"}
CNY_IN: Schema = {
    "type": "string",
    "pattern": r"^[0-9]+(\.[0-9]+)?$",
    "examples": ["12.5"],
    "description": "CNY as a decimal string, to the nano (9 decimals) at most",
}
DATE_TIME: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601; one without a zone is read in the platform's zone (a key's in UTC)",
}
MS: Schema = {"type": "integer", "description": "epoch milliseconds"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, **extra: Any) -> Schema:
    """An object with these fields: ``required`` always present, ``optional`` present or not."""
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})}, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def listing(items: Schema, **fields: Schema) -> Schema:
    return obj({"data": array(items), **fields})


# Errors: OpenAI's shape everywhere, Anthropic's under /v1/messages (docs/api.md, *Errors*).
ERROR = obj({"error": obj({"message": STRING, "type": STRING}, {"param": nullable(STRING), "code": nullable(STRING)})})
ANTHROPIC_ERROR = obj(
    {"type": {"const": "error"}, "error": obj({"type": STRING, "message": STRING})}, {"request_id": nullable(STRING)}
)

# Requests to operators. Only what the gateway reads is typed; the rest goes to the operator as it came.
MESSAGE = obj({"role": STRING}, {"content": nullable({"anyOf": [STRING, array(OBJECT)]}), "name": STRING})
PROVIDER = nullable(
    obj(
        {},
        {
            "order": array(STRING),
            "only": array(STRING),
            "ignore": array(STRING),
            "sort": {"enum": list(SORTS)},
            "allow_fallbacks": BOOLEAN,
            "max_price": obj({}, {"prompt": {"anyOf": [NUMBER, STRING]}, "completion": {"anyOf": [NUMBER, STRING]}}),
        },
    )
)
ROUTING_FIELDS: dict[str, Schema] = {
    "provider": PROVIDER,
    "models": nullable(array({"type": "string", "minLength": 1})),
}
TOKENS_MAX: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_DEFAULT_CAP}
CHAT_REQUEST = obj(
    {"model": {"type": "string", "minLength": 1}, "messages": array(MESSAGE, minItems=1)},
    {
        "stream": BOOLEAN,
        "stream_options": nullable(OBJECT),
        "max_tokens": nullable(TOKENS_MAX),
        "max_completion_tokens": nullable(TOKENS_MAX),
        "n": nullable({"type": "integer", "minimum": 1, "maximum": CHOICES_MAX}),
        **ROUTING_FIELDS,
    },
)
QUOTE_REQUEST = {**CHAT_REQUEST, "properties": {**CHAT_REQUEST["properties"], "at": DATE_TIME}}
EMBEDDING_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "input": {"anyOf": [{"type": "string", "minLength": 1}, array({"type": "string", "minLength": 1}, minItems=1)]},
    },
    {"stream": {"const": False}, **ROUTING_FIELDS},
)
IMAGE_REQUEST = obj(
    {"model": {"type": "string", "minLength": 1}, "prompt": {"type": "string", "minLength": 1}},
    {
        "n": {"type": "integer", "minimum": 1, "maximum": 10},
        "size": STRING,
        "quality": nullable(STRING),
        **ROUTING_FIELDS,
    },
)
ANTHROPIC_REQUEST = obj(
    {"model": {"type": "string", "minLength": 1}, "messages": array(MESSAGE, minItems=1)},
    {
        "max_tokens": TOKENS_MAX,
        "system": {"anyOf": [STRING, array(OBJECT)]},
        "stream": BOOLEAN,
        "tools": array(OBJECT),
        **ROUTING_FIELDS,
    },
)

# Answers from operators, with the platform's additions.
CHAT_ANSWER = obj(
    {},
    {
        "choices": array(OBJECT),
        "usage": obj({}, {"cost": CNY, "estimated": BOOLEAN}),
        "provider": STRING,
        "attempts": INTEGER,
    },
)
EMBEDDING_ANSWER = obj({"data": array(OBJECT)}, {"usage": OBJECT, "provider": STRING})
IMAGE_ANSWER = obj({"data": array(OBJECT)}, {"usage": OBJECT, "provider": STRING})
ANTHROPIC_ANSWER = obj({"content": array(OBJECT)}, {"usage": OBJECT, "model": STRING, "type": STRING})
MODEL = obj(
    {"id": STRING, "object": {"const": "model"}, "kind": STRING, "operators": array(STRING)},
    {"created": INTEGER, "owned_by": STRING, "description": nullable(STRING)},
)

# Prices and quotes.
PRICES = obj(
    {
        "cny_per_mtok": {"type": "object", "additionalProperties": STRING},
        "nano_per_token": {"type": "object", "additionalProperties": INTEGER},
    }
)
WINDOW_NOW = obj(
    {
        "window": STRING,
        "window_percent": INTEGER,
        "surcharge_permille": INTEGER,
        "batch_percent": INTEGER,
        "multiplier_bp": INTEGER,
    },
    {"prices": PRICES},
)
PRICE_ENTRY = obj(
    {
        "offer": STRING,
        "operator": STRING,
        "model": STRING,
        "current": WINDOW_NOW,
        "next": nullable(WINDOW_NOW),
        "rules": OBJECT,
    }
)
PRICE_LIST = obj(
    {
        "object": {"const": "list"},
        "at": STRING,
        "at_ms": INTEGER,
        "timezone": STRING,
        "data": array(obj({"model": STRING, "kind": STRING, "offers": array(PRICE_ENTRY)})),
    }
)
QUOTE_AT = obj(
    {"at": STRING, "at_ms": INTEGER, "window": STRING, "max_cost": CNY, "max_cost_nano": INTEGER, "prices": PRICES}
)
QUOTE = obj(
    {
        "object": {"const": "quote"},
        "model": STRING,
        "at": STRING,
        "at_ms": INTEGER,
        "timezone": STRING,
        "prompt_tokens": INTEGER,
        "input_tokens_max": INTEGER,
        "data": array(
            obj(
                {
                    "offer": STRING,
                    "operator": STRING,
                    "fits_context_window": BOOLEAN,
                    "input_tokens_max": INTEGER,
                    "output_tokens_max": INTEGER,
                    "now": QUOTE_AT,
                    "cheapest_today": QUOTE_AT,
                }
            )
        ),
    }
)
PRICE_VERSION_REQUEST = obj({"effective_from": DATE_TIME, "price": OBJECT}, {"pricing": OBJECT, "set_by": STRING})
PRICE_VERSION = obj({"offer": STRING, "effective_from_ms": INTEGER, "set_by": STRING})
PRICE_HISTORY = listing(
    obj({"effective_from_ms": INTEGER, "effective_from": STRING, "prices": PRICES}),
    offer=STRING,
    rule=obj({"notice_s": INTEGER, "horizon_days": INTEGER}),
)

# Accounts, keys, wallets, usage (admin).
ACCOUNT = obj(
    {
        "id": STRING,
        "name": STRING,
        "tier": {"enum": ["enterprise", "household"]},
        "created_at_ms": MS,
        "routing": nullable(OBJECT),
    }
)
WALLET = obj(
    {
        "currency": {"const": "CNY"},
        "balance": CNY,
        "reserved": CNY,
        "available": CNY,
        "balance_nano": INTEGER,
        "reserved_nano": INTEGER,
        "available_nano": INTEGER,
    }
)
ACCOUNT_VIEW = obj({"account": ACCOUNT, "wallet": WALLET})
ACCOUNT_WITH_WALLET = {
    **ACCOUNT,
    "properties": {**ACCOUNT["properties"], "wallet": WALLET},
    "required": [*ACCOUNT["required"], "wallet"],
}
ACCOUNT_REQUEST = obj({"name": STRING, "tier": {"enum": ["enterprise", "household"]}})
KEY = obj(
    {
        "id": STRING,
        "account_id": STRING,
        "prefix": STRING,
        "name": STRING,
        "models": nullable(array(STRING)),
        "created_at_ms": MS,
        "expires_at_ms": nullable(MS),
        "revoked_at_ms": nullable(MS),
    }
)
NEW_KEY = {**KEY, "properties": {**KEY["properties"], "key": STRING}, "required": [*KEY["required"], "key"]}
KEY_REQUEST = obj(
    {}, {"name": STRING, "models": nullable(array(STRING, minItems=1)), "expires_at": nullable(DATE_TIME)}
)
TOPUP_REQUEST = obj({"amount": CNY_IN})
ADMIN_KEY = obj(
    {
        "id": STRING,
        "name": STRING,
        "prefix": STRING,
        "origin": {"enum": ["configured", "generated", "created"]},
        "created_at_ms": MS,
        "revoked_at_ms": nullable(MS),
    }
)
NEW_ADMIN_KEY = {
    **ADMIN_KEY,
    "properties": {**ADMIN_KEY["properties"], "key": STRING},
    "required": [*ADMIN_KEY["required"], "key"],
}
ADMIN_KEY_REQUEST = obj({"name": {"type": "string", "minLength": 1}})
ROUTING_REQUEST = obj({"provider": PROVIDER})
USAGE_EVENT = obj(
    {
        "request_id": STRING,
        "created_at_ms": MS,
        "model": STRING,
        "operator": STRING,
        "input_tokens": INTEGER,
        "output_tokens": INTEGER,
        "estimated": BOOLEAN,
        "cost": CNY,
        "cost_nano": INTEGER,
        "outcome": STRING,
        "http_status": INTEGER,
        "price_window": nullable(STRING),
    }
)
OPERATOR = obj({"operator": STRING, "region": nullable(STRING), "base_url": STRING, "offers": array(OBJECT)})

# The token economy.
PRODUCT = obj(
    {
        "id": STRING,
        "kind": {"enum": ["pack", "subscription"]},
        "title": STRING,
        "price": CNY,
        "tiers": array(STRING),
        "models": array(STRING),
        "retired": BOOLEAN,
    },
    {"tokens": INTEGER, "valid_days": INTEGER, "weights": OBJECT, "allowances": array(OBJECT)},
)
PRODUCT_REQUEST = obj(
    {
        "id": STRING,
        "kind": {"enum": ["pack", "subscription"]},
        "price": CNY_IN,
        "models": array(STRING),
    },
    {"listed_by": STRING, "title": STRING},
)
PRODUCTS = listing(PRODUCT, object={"const": "list"})
PRODUCT_CHOICE = obj({"product": STRING})
PACK = obj(
    {
        "id": STRING,
        "product": STRING,
        "tokens": INTEGER,
        "available": INTEGER,
        "reserved": INTEGER,
        "expires_at_ms": MS,
        "state": {"enum": ["active", "expired", "forfeited"]},
        "origin": STRING,
    }
)
PACK_BOUGHT = obj({"pack": PACK, "wallet": nullable(obj({"available": CNY}))})
SUBSCRIBED = obj(
    {"subscription": STRING, "product": STRING, "charged": CNY, "period_end_ms": MS}, {"upgraded_from": STRING}
)
CANCELLED = obj({"subscription": STRING, "ended": {"const": True}})
PLANS = obj(
    {
        "account": STRING,
        "funding": OBJECT,
        "packs": array(PACK),
        "subscription": nullable(OBJECT),
        "budgets": array(OBJECT),
        "contract": nullable(OBJECT),
    }
)
TOKENS: Schema = {"type": "integer", "minimum": 1, "maximum": TOKENS_AMOUNT_MAX}
TRANSFER_REQUEST = obj(
    {"pack": STRING, "to": STRING, "tokens": TOKENS}, {"memo": {"type": "string", "maxLength": TRANSFER_MEMO_CHARS_MAX}}
)
TRANSFER = obj(
    {
        "transfer": STRING,
        "from_pack": STRING,
        "to_pack": STRING,
        "to_account": STRING,
        "tokens": INTEGER,
        "expires_at_ms": MS,
    }
)
TRANSFER_ROW = obj(
    {
        "id": STRING,
        "from_pack": STRING,
        "from_account": STRING,
        "to_pack": STRING,
        "to_account": STRING,
        "tokens": INTEGER,
        "memo": STRING,
        "made_by": STRING,
        "created_at_ms": MS,
    }
)
BUDGET_REQUEST = obj(
    {
        "period": {"enum": list(BUDGET_PERIODS)},
        "unit": {"enum": list(BUDGET_UNITS)},
        "amount": {"anyOf": [CNY_IN, TOKENS]},
    },
    {"key": nullable(STRING)},
)
BUDGET = obj({"id": STRING, "period": STRING, "unit": STRING, "key": nullable(STRING)})
FUNDING = obj({"order": array({"enum": list(FUNDING_SOURCES)}, minItems=1, uniqueItems=True)}, {"fallthrough": BOOLEAN})
CONTRACT_REQUEST = obj({"credit_limit": CNY_IN, "tiers": array(obj({"above": CNY_IN, "percent": INTEGER}), minItems=1)})
CONTRACT = obj({"account": STRING, "credit_limit": CNY, "tiers": array(OBJECT)})
TRUST_REQUEST = obj({"account": STRING})
TRUST = obj({"account": STRING, "trusts": STRING})
FORFEITED = listing(obj({"pack": STRING, "account_id": STRING, "tokens": INTEGER}))

# Headers and query parameters.
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a retried request with the same key and body applies once; another body is 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_CHARS_MAX},
}
USAGE_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": USAGE_ROWS_MAX, "default": USAGE_DEFAULT_ROWS},
}
AT = {
    "name": "at",
    "in": "query",
    "required": False,
    "description": "an ISO 8601 time (default: now), from 1970 to INSTANT_HORIZON_DAYS ahead",
    "schema": DATE_TIME,
}
MODEL_QUERY = {"name": "model", "in": "query", "required": False, "schema": STRING}

# The account's own views (api/account.py) and the admin's summaries.
USAGE_ROW = {
    **USAGE_EVENT,
    "properties": {**USAGE_EVENT["properties"], "created_at": STRING},
    "required": [*USAGE_EVENT["required"], "created_at"],
}
USAGE_PAGE = obj(
    {
        "object": {"const": "list"},
        "data": array(USAGE_ROW),
        "next_before_ms": nullable(MS),
        "next_before_id": nullable(STRING),
    }
)
USAGE_CSV = {"text/csv": {"schema": {"type": "string", "description": "docs/api.md lists the columns"}}}
SUMMARY_ROW = obj(
    {
        "start": STRING,
        "start_ms": MS,
        "group": nullable(STRING),
        "calls": INTEGER,
        "tokens": INTEGER,
        "cost": CNY,
        "cost_nano": INTEGER,
    }
)
SUMMARY = obj(
    {
        "object": {"const": "usage_summary"},
        "period": {"enum": ["hour", "day"]},
        "by": STRING,
        "timezone": STRING,
        "from": STRING,
        "from_ms": MS,
        "to": STRING,
        "to_ms": MS,
        "data": array(SUMMARY_ROW),
        "totals": obj(
            {
                "calls": INTEGER,
                "tokens": INTEGER,
                "cost": CNY,
                "cost_nano": INTEGER,
                "uncharged": CNY,
                "uncharged_nano": INTEGER,
            }
        ),
    }
)
KEY_SHOWN = obj({"id": STRING, "name": STRING, "prefix": STRING})
ACCOUNT_SELF = obj({"account": ACCOUNT, "wallet": WALLET, "key": KEY_SHOWN})
RUN_OUT: dict[str, Schema] = {
    "days": nullable({"type": "string", "pattern": r"^[0-9]+\.[0-9]$"}),
    "runs_out_at": nullable(STRING),
    "runs_out_at_ms": nullable(MS),
}
RATE = obj({"calls": INTEGER, "tokens": INTEGER, "cost": CNY, "cost_nano": INTEGER})
FORECAST = obj(
    {
        "object": {"const": "forecast"},
        "at": STRING,
        "at_ms": MS,
        "timezone": STRING,
        "window_days": INTEGER,
        "rates": obj({"1d": RATE, "7d": RATE}),
        "balance": obj(
            {
                "available": CNY,
                "available_nano": INTEGER,
                "spendable": CNY,
                "spendable_nano": INTEGER,
                **RUN_OUT,
            }
        ),
        "packs": array(
            obj(
                {
                    "pack": STRING,
                    "product": STRING,
                    "available_tokens": INTEGER,
                    "tokens_per_day": INTEGER,
                    **RUN_OUT,
                    "expires_at_ms": MS,
                    "expires_first": BOOLEAN,
                }
            )
        ),
        "budgets": array(
            obj(
                {
                    "budget": STRING,
                    "key": nullable(STRING),
                    "period": STRING,
                    "unit": {"enum": list(BUDGET_UNITS)},
                    "remaining": {"anyOf": [CNY, INTEGER]},
                    "remaining_units": INTEGER,
                    "per_day": {"anyOf": [CNY, INTEGER]},
                    "per_day_units": INTEGER,
                    **RUN_OUT,
                    "resets_at_ms": MS,
                    "resets_first": BOOLEAN,
                }
            )
        ),
    }
)
TOPUPS = listing(
    obj(
        {
            "account": STRING,
            "account_name": nullable(STRING),
            "amount": CNY,
            "amount_nano": INTEGER,
            "at_ms": MS,
            "transfer": STRING,
        }
    ),
    object={"const": "list"},
)
CONTRACTS = listing(
    obj({"account": STRING, "account_name": STRING, "credit_limit": CNY, "tiers": array(OBJECT)}),
    object={"const": "list"},
)
BUDGET_REMOVED = obj({"id": STRING, "removed": BOOLEAN})


def query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


INSTANT: Schema = {"anyOf": [DATE_TIME, {"type": "string", "pattern": "^[0-9]{1,15}$"}]}
TZ = query("tz", STRING, "an IANA time zone (default: the platform's, Asia/Shanghai)")
FROM = query("from", INSTANT, "ISO 8601 (one without a zone is read in tz) or epoch ms; inclusive")
TO = query("to", INSTANT, "ISO 8601 or epoch ms; exclusive (default: now)")
PERIOD = query("period", {"enum": ["hour", "day"], "default": "hour"}, "the buckets")
USAGE_QUERY = (
    USAGE_LIMIT,
    query("before_ms", {"type": "integer", "minimum": 0}, "the page before this time (next_before_ms)"),
    query("before_id", STRING, "with before_ms: the page before this request at that time (next_before_id)"),
    FROM,
    TO,
    TZ,
    query("model", STRING, "only calls of this model"),
    query("key", STRING, "only calls with this key id"),
    query("operator", STRING, "only calls served by this operator"),
    query("outcome", STRING, "only calls with this outcome (ok, cut_short, upstream_error, ...)"),
    query("format", {"enum": ["json", "csv"], "default": "json"}, "csv: the columns of docs/api.md, streamed"),
)


def summary_query(groups: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    return (PERIOD, query("by", {"enum": list(groups), "default": "none"}, "the groups"), FROM, TO, TZ)
