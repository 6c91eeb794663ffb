"""The shapes of the alerts' and webhooks' endpoints in the OpenAPI document (api/openapi.py, api/webhooks.py)."""

from __future__ import annotations

from suanli.api.openapi_schemas import BOOLEAN, CNY, CNY_IN, INTEGER, MS, OBJECT, STRING, Schema, array, nullable, obj
from suanli.economy.alerts import EVENT_TYPES
from suanli.limits import ALERT_PACK_EXPIRY_DAYS_MAX, WEBHOOK_URL_CHARS_MAX

EVENT_TYPE: Schema = {"enum": [*EVENT_TYPES, "*"]}
WEBHOOK_REQUEST = obj(
    {
        "url": {
            "type": "string",
            "minLength": 1,
            "maxLength": WEBHOOK_URL_CHARS_MAX,
            "examples": ["https://example.com/h"],
        }
    },
    {"events": nullable(array(EVENT_TYPE, minItems=1))},
)
WEBHOOK = obj(
    {"id": STRING, "object": {"const": "webhook"}, "url": STRING, "events": array(STRING), "created_at_ms": MS}
)
NEW_WEBHOOK = obj({**WEBHOOK["properties"], "secret": STRING})
DELETED_WEBHOOK = obj({**WEBHOOK["properties"], "deleted": BOOLEAN})
WEBHOOKS = obj({"object": {"const": "list"}, "data": array(WEBHOOK)})
_SWITCHES = ("budget_alerts", "window_alerts", "pack_alerts", "renewal_alerts")
ALERT_SETTINGS = obj(
    {
        "object": {"const": "alert_settings"},
        "enabled": BOOLEAN,
        "balance_below": nullable(CNY),
        "balance_below_nano": nullable(INTEGER),
        "pack_expiry_days": nullable(INTEGER),
        **{name: BOOLEAN for name in _SWITCHES},
    }
)
ALERT_SETTINGS_REQUEST = obj(
    {},
    {
        "balance_below": nullable(CNY_IN),
        "pack_expiry_days": nullable({"type": "integer", "minimum": 1, "maximum": ALERT_PACK_EXPIRY_DAYS_MAX}),
        **{name: BOOLEAN for name in _SWITCHES},
    },
    additionalProperties=False,
)
DELIVERY = obj(
    {
        "webhook": STRING,
        "state": {"enum": ["pending", "delivered", "failed"]},
        "attempts": INTEGER,
        "next_attempt_at_ms": nullable(INTEGER),
        "last_status": nullable(INTEGER),
        "last_error": nullable(STRING),
        "updated_at_ms": MS,
    }
)
ALERT = obj(
    {
        "id": STRING,
        "object": {"const": "event"},
        "type": {"enum": list(EVENT_TYPES)},
        "created_at": STRING,
        "created_at_ms": MS,
        "account": STRING,
        "data": OBJECT,
        "prepared": BOOLEAN,
        "deliveries": array(DELIVERY),
    }
)
ALERTS = obj({"object": {"const": "list"}, "data": array(ALERT)})
