"""Recorded Anthropic-protocol answers, priced to the nano: the native pass-through's side of billing.

Each fixture is shaped as its operator documents it:
- Anthropic (docs.anthropic.com, "Messages" and "Prompt caching"): ``usage.input_tokens`` counts only the
  input after the last cache breakpoint; ``cache_creation_input_tokens`` and ``cache_read_input_tokens``
  are the rest, never included in ``input_tokens``; newer answers add a ``cache_creation`` breakdown by
  lifetime and ``service_tier``. In a stream, ``message_start`` carries the input classes and an output
  of 1 or so, and ``message_delta`` the final, cumulative ``output_tokens`` (newer streams repeat the
  input classes there too).
- DeepSeek's Anthropic endpoint (api.deepseek.com/anthropic): automatic prefix caching, so only cache
  reads are reported; ``anthropic-version`` is ignored.
- Zhipu GLM's Anthropic endpoint (open.bigmodel.cn/api/anthropic): the same fields, cache reads only.
The expected costs are written out by hand, so a cache token counted as input too (the peers' usual bug)
shows up as a wrong number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from suanli.catalog import Offer, parse_catalog
from suanli.economy.funding import Funding
from suanli.gateway.auth import Caller
from suanli.gateway.health import HealthRegistry
from suanli.gateway.lifecycle import Call, Settlement
from suanli.gateway.messages import AnthropicRelay
from suanli.gateway.requests import chat_request_from
from suanli.ledger import entries
from suanli.metering import usage_from_anthropic
from suanli.pricing import TokenUsage, charge, cost_nano, quote
from suanli.store.accounts import Account, ApiKey

CATALOG: dict[str, Any] = {
    "operators": {
        "anthropic": {"protocol": "anthropic", "base_url": "https://api.anthropic.com", "api_key_env": "A_KEY"},
        "deepseek": {
            "base_url": "https://api.deepseek.com",
            "anthropic_base_url": "https://api.deepseek.com/anthropic",
        },
        "zhipu": {
            "base_url": "https://open.bigmodel.cn/api/paas/v4",
            "anthropic_base_url": "https://open.bigmodel.cn/api/anthropic",
        },
    },
    "models": {"sonnet": {}, "deepseek-v3.2": {}, "glm-5": {}},
    "offers": [
        # ¥21.6 / ¥2.16 / ¥27 / ¥108 per million: Anthropic's $3 input, 0.1x reads, 1.25x writes, $15 output
        # at ¥7.2 to the dollar.
        {
            "operator": "anthropic",
            "model": "sonnet",
            "upstream_model": "claude-sonnet-4-5",
            "context_window": 200_000,
            "max_output_tokens": 64_000,
            "price": {"input": "21.6", "cached_input": "2.16", "cache_write": "27", "output": "108"},
        },
        {
            "operator": "deepseek",
            "model": "deepseek-v3.2",
            "context_window": 128_000,
            "max_output_tokens": 8192,
            "price": {"input": "2", "cached_input": "0.2", "output": "3"},
        },
        {
            "operator": "zhipu",
            "model": "glm-5",
            "context_window": 200_000,
            "max_output_tokens": 16_384,
            "price": {"input": "4", "cached_input": "1", "output": "18"},
        },
    ],
}
OFFERS = {offer.id: offer for offer in parse_catalog(CATALOG, {}).offers}

ANTHROPIC_CACHE_WRITE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "The catalog lists three operators."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 21,
        "cache_creation_input_tokens": 3_072,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 3_072, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 393,
        "service_tier": "standard",
    },
}
ANTHROPIC_CACHE_READ = {
    **ANTHROPIC_CACHE_WRITE,
    "id": "msg_01Aq9w938a90dw8q",
    "usage": {
        "input_tokens": 35,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3_072,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 120,
        "service_tier": "standard",
    },
}
DEEPSEEK_ANTHROPIC = {
    "id": "8f1c6a0e-5d2b-4e0a-9c61-2b7f0b1d3e55",
    "type": "message",
    "role": "assistant",
    "model": "deepseek-chat",
    "content": [{"type": "text", "text": "你好！"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 176, "cache_read_input_tokens": 1_024, "output_tokens": 300},
}
ZHIPU_ANTHROPIC = {
    "id": "20261129091512a3b4c5d6e7f84b2c",
    "type": "message",
    "role": "assistant",
    "model": "glm-5",
    "content": [
        {"type": "thinking", "thinking": "The user greets.", "signature": ""},
        {"type": "text", "text": "Hello!"},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 1_200,
        "output_tokens": 540,
        "cache_read_input_tokens": 2_048,
        "server_tool_use": {"web_search_requests": 0},
        "service_tier": "standard",
    },
}


@dataclass(frozen=True)
class Recorded:
    payload: Mapping[str, Any]
    offer_id: str
    usage: TokenUsage  # read off the payload by hand
    cost_nano: int  # priced by hand

    @property
    def offer(self) -> Offer:
        return OFFERS[self.offer_id]


RECORDED = {
    "anthropic-cache-write": Recorded(
        ANTHROPIC_CACHE_WRITE,
        "anthropic/sonnet",
        TokenUsage(input=21, output=393, cache_write=3_072),
        21 * 21_600 + 3_072 * 27_000 + 393 * 108_000,  # = 125_841_600
    ),
    "anthropic-cache-read": Recorded(
        ANTHROPIC_CACHE_READ,
        "anthropic/sonnet",
        TokenUsage(input=35, cached_input=3_072, output=120),
        35 * 21_600 + 3_072 * 2_160 + 120 * 108_000,  # = 20_351_520
    ),
    "deepseek-anthropic": Recorded(
        DEEPSEEK_ANTHROPIC,
        "deepseek/deepseek-v3.2",
        TokenUsage(input=176, cached_input=1_024, output=300),
        176 * 2_000 + 1_024 * 200 + 300 * 3_000,  # = 1_456_800, as the same call on DeepSeek's OpenAI endpoint
    ),
    "zhipu-anthropic": Recorded(
        ZHIPU_ANTHROPIC,
        "zhipu/glm-5",
        TokenUsage(input=1_200, cached_input=2_048, output=540),
        1_200 * 4_000 + 2_048 * 1_000 + 540 * 18_000,  # = 16_568_000; thinking is billed as output
    ),
}
recorded = pytest.mark.parametrize("case", RECORDED.values(), ids=RECORDED.keys())


@recorded
def test_usage_is_read_into_disjoint_classes(case: Recorded) -> None:
    assert usage_from_anthropic(case.payload["usage"]) == case.usage


@recorded
def test_cost_to_the_nano(case: Recorded) -> None:
    assert cost_nano(case.offer.prices, usage_from_anthropic(case.payload["usage"])) == case.cost_nano


@recorded
def test_a_quote_for_the_whole_prompt_covers_the_cost(case: Recorded) -> None:
    usage = case.usage
    q = quote(case.offer, usage.input + usage.cached_input + usage.cache_write, usage.output)
    assert case.cost_nano <= q.reserved_nano


def test_cache_write_price_falls_back_to_input_where_the_offer_names_none() -> None:
    assert OFFERS["deepseek/deepseek-v3.2"].prices.cache_write_nano == 2_000
    assert OFFERS["anthropic/sonnet"].prices.cache_write_nano == 27_000


# A recorded stream, through the relay that passes it on: usage from message_start and message_delta.


def sse(kind: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def recorded_stream(delta_usage: Mapping[str, Any]) -> list[bytes]:
    start_usage = {
        "input_tokens": 35,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3_072,
        "output_tokens": 1,
        "service_tier": "standard",
    }
    message = {**ANTHROPIC_CACHE_READ, "content": [], "stop_reason": None, "usage": start_usage}
    return [
        sse("message_start", {"message": message}),
        sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        sse("ping", {}),
        sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Three"}}),
        sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": " operators."}}),
        sse("content_block_stop", {"index": 0}),
        sse("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage}),
        sse("message_stop", {}),
    ]


def relay_for(offer: Offer) -> AnthropicRelay:
    request = chat_request_from({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    account = Account("acc", "acc", "enterprise", 0)
    key = ApiKey("key", "acc", "sk-x", "", None, 0, None, None, b"")
    q = quote(offer, 4_000, 1_000)
    reservation = entries.reservation("req_1", "acc", q.reserved_nano)
    funding = Funding(wallet=reservation)
    call = Call("req_1", Caller(key, account), request, [offer], {offer.id: q}, 3_100, funding, offer)
    platform = SimpleNamespace(health=HealthRegistry(tuple(OFFERS.values())))  # feeding events needs no more
    return AnthropicRelay(platform, call, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "delta_usage",
    [
        {"output_tokens": 120},  # the classic message_delta: the output alone
        {"input_tokens": 35, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3_072, "output_tokens": 120},
    ],
    ids=["output-only", "cumulative"],
)
def test_a_relayed_stream_is_priced_from_message_start_and_message_delta(delta_usage: Mapping[str, Any]) -> None:
    relay = relay_for(OFFERS["anthropic/sonnet"])
    forwarded = [relay._feed(chunk) for chunk in recorded_stream(delta_usage)]
    assert relay._usage == RECORDED["anthropic-cache-read"].usage  # the input classes once, the final output
    assert relay._finished and relay._ended  # the stop reason came, then message_stop
    assert not any(b"message_delta" in e or b"message_stop" in e for e in forwarded)  # held for the settlement
    start = orjson.loads(forwarded[0].split(b"data: ", 1)[1])
    assert start["message"]["model"] == "sonnet" and start["message"]["usage"]["cache_read_input_tokens"] == 3_072
    cost = charge(relay._call.quote, relay._usage).list_nano
    closing = relay._closing(Settlement(cost, relay._call.quote.prices, None, relay._usage))
    delta_event, stop_event = closing.split(b"\n\n", 1)
    delta = orjson.loads(delta_event.split(b"data: ", 1)[1])
    assert delta["usage"]["cost"] == "0.02035152"  # 20_351_520 nano, as settled, added for the client
    assert delta["delta"]["stop_reason"] == "end_turn" and stop_event.startswith(b"event: message_stop")


def test_a_stream_cut_after_message_start_is_estimated_from_the_reported_input() -> None:
    relay = relay_for(OFFERS["anthropic/sonnet"])
    for chunk in recorded_stream({"output_tokens": 120})[:5]:  # cut after the second text delta
        relay._feed(chunk)
    assert relay._usage is None  # no message_delta: the output was never reported
    estimate = relay._estimate()
    assert (estimate.input, estimate.cached_input, estimate.cache_write) == (35, 3_072, 0)
    assert estimate.output == 3  # "Three operators." counted with the declared tokenizer
