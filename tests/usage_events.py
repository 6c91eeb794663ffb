"""Usage events for tests that write them without a call: every field at a plain default, the test's own
values given by name."""

from __future__ import annotations

from typing import Any

from suanli.store.db import now_ms
from suanli.store.usage import UsageEvent


def usage_event(request_id: str, account_id: str, *, offer_id: str = "op/chat", **fields: Any) -> UsageEvent:
    """An ok, non-streamed event of ``offer_id`` (``operator/model``), one input and one output token at no
    price, made now; ``fields`` replace any of that."""
    operator, model = offer_id.split("/")
    plain: dict[str, Any] = {
        "request_id": request_id,
        "account_id": account_id,
        "key_id": "k",
        "model": model,
        "operator": operator,
        "offer_id": offer_id,
        "upstream_model": model,
        "stream": False,
        "input_tokens": 1,
        "cached_input_tokens": 0,
        "output_tokens": 1,
        "reasoning_tokens": 0,
        "estimated": False,
        "price_input_nano": 0,
        "price_cached_input_nano": 0,
        "price_output_nano": 0,
        "price_reasoning_nano": 0,
        "reserved_nano": 0,
        "cost_nano": 0,
        "uncharged_nano": 0,
        "outcome": "ok",
        "http_status": 200,
        "error_code": "",
        "latency_ms": 1,
        "ttft_ms": None,
        "created_at_ms": now_ms(),
    }
    return UsageEvent(**{**plain, **fields})
