"""Recorded upstream answers, priced to the nano: each token in exactly one class, each class at its own price.

Every fixture is a whole response shaped like the one its operator documents (id, object, created, model,
choices, usage), so the test reads usage the way the gateway does: from the object an operator really sends.
The expected costs are written out as arithmetic by hand, never computed by the code under test, so a
token counted twice (a DeepSeek cache hit reported in two fields) or priced in the wrong class shows up as
a wrong number. The Anthropic view of the same usage is checked too, since coding tools bill from it. (The
anthropic SDK is not imported here: it alone takes a second to load, and tests/providers already checks that
its models read our messages.)

Field names, as the operators document them:
- DeepSeek (api-docs.deepseek.com, "Create Chat Completion" and "Context Caching"): ``prompt_cache_hit_tokens``
  and ``prompt_cache_miss_tokens`` (their sum is ``prompt_tokens``); newer answers also repeat the hit count as
  ``prompt_tokens_details.cached_tokens``; deepseek-reasoner adds ``completion_tokens_details.reasoning_tokens``
  and the chain of thought as ``message.reasoning_content``.
- Zhipu GLM (docs.bigmodel.cn / docs.z.ai, "Context Caching"): ``usage.prompt_tokens_details.cached_tokens``.
- OpenAI (chat completion object): ``prompt_tokens_details.cached_tokens`` and
  ``completion_tokens_details.reasoning_tokens``, both included in their totals; with
  ``stream_options.include_usage`` a last chunk carries the usage and ``choices`` is always an empty array.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.catalog import Offer, Prices, parse_catalog
from suanli.metering import usage_from_openai
from suanli.pricing import TokenUsage, charge, cost_nano, quote
from suanli.providers.anthropic_stream import AnthropicStreamTranslator
from suanli.providers.anthropic_translate import (
    anthropic_usage,
    openai_to_anthropic_message,
)

# Prices as the catalog file writes them: CNY per million tokens, as strings. ¥1 per million tokens is
# 1,000 nano-CNY per token, so "2" is 2000 nano per token and "0.2" is 200.
CATALOG: dict[str, Any] = {
    "operators": {
        "deepseek": {"base_url": "https://api.deepseek.com", "api_key_env": "DEEPSEEK_API_KEY"},
        "zhipu": {"base_url": "https://open.bigmodel.cn/api/paas/v4", "api_key_env": "ZHIPU_API_KEY"},
        "openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"},
    },
    "models": {"deepseek-v3.2": {}, "glm-5": {}, "o4-mini": {}},
    "offers": [
        # DeepSeek V3.2 list prices: input (cache miss) ¥2, input (cache hit) ¥0.2, output ¥3; reasoning is
        # not priced apart, so it falls back to the output price.
        {
            "operator": "deepseek",
            "model": "deepseek-v3.2",
            "upstream_model": "deepseek-chat",
            "context_window": 128_000,
            "max_output_tokens": 8192,
            "price": {"input": "2", "cached_input": "0.2", "output": "3"},
        },
        {
            "operator": "zhipu",
            "model": "glm-5",
            "context_window": 200_000,
            "max_output_tokens": 128_000,
            "price": {"input": "4", "cached_input": "1", "output": "18"},
        },
        # A reasoning price of its own, unlike the output price, so that a reasoning token priced as output
        # (or an output token priced as reasoning) changes the total.
        {
            "operator": "openai",
            "model": "o4-mini",
            "upstream_model": "o4-mini-2025-04-16",
            "context_window": 200_000,
            "max_output_tokens": 100_000,
            "price": {"input": "8", "cached_input": "2", "output": "32", "reasoning": "40"},
        },
    ],
}
OFFERS: Mapping[str, Offer] = {offer.id: offer for offer in parse_catalog(CATALOG, environ={}).offers}

# DeepSeek deepseek-chat, answered from a warm prefix cache. Usage as in DeepSeek's API reference:
# prompt_tokens = prompt_cache_hit_tokens + prompt_cache_miss_tokens; no details objects.
DEEPSEEK_CHAT: dict[str, Any] = {
    "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
    "object": "chat.completion",
    "created": 1740960000,
    "model": "deepseek-chat",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "留存率按注册批次分组，逐日计算仍活跃用户的占比。"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_cache_hit_tokens": 1024,
        "prompt_cache_miss_tokens": 176,
    },
    "system_fingerprint": "fp_3a5770e1b4_prod0225",
}

# DeepSeek deepseek-reasoner: the chain of thought in message.reasoning_content, counted in
# completion_tokens_details.reasoning_tokens (included in completion_tokens); the cache hit reported twice,
# as prompt_cache_hit_tokens and again as prompt_tokens_details.cached_tokens.
DEEPSEEK_REASONER: dict[str, Any] = {
    "id": "6d7f1a2b-4c3e-4f5a-9b8c-7d6e5f4a3b2c",
    "object": "chat.completion",
    "created": 1740960123,
    "model": "deepseek-reasoner",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "9.11 比 9.8 小。",
                "reasoning_content": "比较小数位：0.11 < 0.8，所以 9.11 < 9.8。",
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 2048,
        "completion_tokens": 1500,
        "total_tokens": 3548,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {"reasoning_tokens": 1200},
        "prompt_cache_hit_tokens": 1920,
        "prompt_cache_miss_tokens": 128,
    },
    "system_fingerprint": "fp_5417b77867_prod0225",
}

# Zhipu GLM-5 (open.bigmodel.cn/api/paas/v4/chat/completions): cache hits in
# usage.prompt_tokens_details.cached_tokens; the thinking comes back as message.reasoning_content but is not
# counted apart, so it is part of completion_tokens and priced as output.
GLM_5: dict[str, Any] = {
    "id": "20250919153012a3f1c9d2e47b4c21",
    "request_id": "20250919153012a3f1c9d2e47b4c21",
    "object": "chat.completion",
    "created": 1758267012,
    "model": "glm-5",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {
                "role": "assistant",
                "content": "漏斗分析把用户路径拆成步骤，逐步计算转化率。",
                "reasoning_content": "用户问的是漏斗分析的定义，先给出一句话解释。",
            },
        }
    ],
    "usage": {
        "prompt_tokens": 3000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 2048},
        "total_tokens": 3500,
    },
}

# OpenAI chat completion object (o4-mini): prompt_tokens_details.cached_tokens and
# completion_tokens_details.reasoning_tokens, each included in its total.
OPENAI_CHAT: dict[str, Any] = {
    "id": "chatcmpl-BvG3kQm7n1pX0aZsL2eR8tYcUf9Wd",
    "object": "chat.completion",
    "created": 1753100000,
    "model": "o4-mini-2025-04-16",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The function returns early when the list is empty.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1500,
        "completion_tokens": 820,
        "total_tokens": 2320,
        "prompt_tokens_details": {"cached_tokens": 1280, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 640,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": None,
}

# OpenAI streaming, stream_options.include_usage: the last chunk before `data: [DONE]`, whose choices are
# always an empty array and whose usage covers the whole request.
OPENAI_STREAM_USAGE_CHUNK: dict[str, Any] = {
    "id": "chatcmpl-BvG5rT2yH8uJ3kL9mN0pQ1sV4wX6z",
    "object": "chat.completion.chunk",
    "created": 1753100420,
    "model": "o4-mini-2025-04-16",
    "service_tier": "default",
    "system_fingerprint": None,
    "choices": [],
    "usage": {
        "prompt_tokens": 2200,
        "completion_tokens": 96,
        "total_tokens": 2296,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 64,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
}


@dataclass(frozen=True, slots=True)
class Recorded:
    payload: Mapping[str, Any]
    offer_id: str
    usage: TokenUsage  # the disjoint classes, read off the payload by hand
    cost_nano: int  # priced by hand

    @property
    def offer(self) -> Offer:
        return OFFERS[self.offer_id]

    @property
    def prompt_tokens(self) -> int:
        tokens: int = self.payload["usage"]["prompt_tokens"]
        return tokens

    @property
    def completion_tokens(self) -> int:
        tokens: int = self.payload["usage"]["completion_tokens"]
        return tokens


RECORDED = {
    "deepseek-chat": Recorded(
        DEEPSEEK_CHAT,
        "deepseek/deepseek-v3.2",
        TokenUsage(input=1200 - 1024, cached_input=1024, output=300, reasoning=0),
        (1200 - 1024) * 2000 + 1024 * 200 + 300 * 3000,  # = 1_456_800
    ),
    "deepseek-reasoner": Recorded(
        DEEPSEEK_REASONER,
        "deepseek/deepseek-v3.2",
        TokenUsage(input=2048 - 1920, cached_input=1920, output=1500 - 1200, reasoning=1200),
        (2048 - 1920) * 2000 + 1920 * 200 + (1500 - 1200) * 3000 + 1200 * 3000,  # = 5_140_000
    ),
    "glm-5": Recorded(
        GLM_5,
        "zhipu/glm-5",
        TokenUsage(input=3000 - 2048, cached_input=2048, output=500, reasoning=0),
        (3000 - 2048) * 4000 + 2048 * 1000 + 500 * 18000,  # = 14_856_000
    ),
    "openai-chat": Recorded(
        OPENAI_CHAT,
        "openai/o4-mini",
        TokenUsage(input=1500 - 1280, cached_input=1280, output=820 - 640, reasoning=640),
        (1500 - 1280) * 8000 + 1280 * 2000 + (820 - 640) * 32000 + 640 * 40000,  # = 35_680_000
    ),
    "openai-stream-usage-chunk": Recorded(
        OPENAI_STREAM_USAGE_CHUNK,
        "openai/o4-mini",
        TokenUsage(input=2200 - 1024, cached_input=1024, output=96 - 64, reasoning=64),
        (2200 - 1024) * 8000 + 1024 * 2000 + (96 - 64) * 32000 + 64 * 40000,  # = 15_040_000
    ),
}
recorded = pytest.mark.parametrize("case", RECORDED.values(), ids=RECORDED.keys())


def test_catalog_prices_convert_exactly_and_reasoning_defaults_to_output_and_cache_write_to_input() -> None:
    assert OFFERS["deepseek/deepseek-v3.2"].prices == Prices(2000, 200, 3000, 3000, 2000)
    assert OFFERS["zhipu/glm-5"].prices == Prices(4000, 1000, 18000, 18000, 4000)
    assert OFFERS["openai/o4-mini"].prices == Prices(8000, 2000, 32000, 40000, 8000)


@recorded
def test_usage_is_read_into_disjoint_classes(case: Recorded) -> None:
    assert usage_from_openai(case.payload["usage"]) == case.usage


@recorded
def test_each_token_is_counted_once(case: Recorded) -> None:
    usage = usage_from_openai(case.payload["usage"])
    counted = usage.input + usage.cached_input + usage.output + usage.reasoning
    assert counted == case.prompt_tokens + case.completion_tokens == case.payload["usage"]["total_tokens"]


@recorded
def test_cost_to_the_nano(case: Recorded) -> None:
    assert cost_nano(case.offer.prices, usage_from_openai(case.payload["usage"])) == case.cost_nano


@recorded
def test_a_quote_sized_from_the_counts_covers_the_whole_cost(case: Recorded) -> None:
    q = quote(case.offer, case.prompt_tokens, case.completion_tokens)
    result = charge(q, usage_from_openai(case.payload["usage"]))
    assert (result.cost_nano, result.uncharged_nano) == (case.cost_nano, 0)
    assert result.cost_nano <= q.reserved_nano


@recorded
def test_a_smaller_quote_caps_the_charge_and_reports_the_rest(case: Recorded) -> None:
    q = quote(case.offer, case.prompt_tokens // 10, case.completion_tokens // 10)
    assert 0 < q.reserved_nano < case.cost_nano  # the premise: this quote really is too small
    result = charge(q, usage_from_openai(case.payload["usage"]))
    assert result.cost_nano == q.reserved_nano
    assert result.uncharged_nano == case.cost_nano - q.reserved_nano


@recorded
def test_the_anthropic_client_sees_the_same_tokens(case: Recorded) -> None:
    usage = usage_from_openai(case.payload["usage"])
    expected = {
        "input_tokens": case.usage.input,  # uncached input only, as Anthropic counts it
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": case.usage.cached_input,
        "output_tokens": case.usage.output + case.usage.reasoning,  # Anthropic's output includes the thinking
    }
    assert anthropic_usage(usage) == expected
    assert sum(expected.values()) == case.prompt_tokens + case.completion_tokens
    message = openai_to_anthropic_message(case.payload, "claude-sonnet-4-5", usage)
    assert message["usage"] == expected
    assert message["id"] == "msg_" + case.payload["id"]


def test_the_reasoner_answer_keeps_its_thinking_apart_in_the_anthropic_message() -> None:
    usage = usage_from_openai(DEEPSEEK_REASONER["usage"])
    message = openai_to_anthropic_message(DEEPSEEK_REASONER, "deepseek-v3.2", usage)
    assert [block["type"] for block in message["content"]] == ["thinking", "text"]
    assert message["stop_reason"] == "end_turn"


def test_the_streamed_usage_chunk_settles_the_anthropic_stream() -> None:
    usage = usage_from_openai(OPENAI_STREAM_USAGE_CHUNK["usage"])
    translator = AnthropicStreamTranslator("o4-mini", "msg_test", input_tokens=2200)
    assert translator.feed(OPENAI_STREAM_USAGE_CHUNK) == []  # no choices: nothing to show the client
    events = translator.finish(usage)
    delta = orjson.loads(events[-2].split(b"data: ", 1)[1])
    assert delta["type"] == "message_delta"
    assert delta["usage"] == {
        "input_tokens": 2200 - 1024,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1024,
        "output_tokens": 96,
    }


def test_deepseek_hit_reported_in_both_fields_is_counted_once() -> None:
    usage = usage_from_openai(DEEPSEEK_REASONER["usage"])
    assert usage.cached_input == 1920  # not 1920 + 1920
    assert usage.input == 128 == DEEPSEEK_REASONER["usage"]["prompt_cache_miss_tokens"]


@pytest.mark.parametrize(
    "details",
    [None, {}, {"cached_tokens": None}, {"cached_tokens": 0}],
    ids=["null-details", "empty-details", "null-cached", "zero-cached"],
)
def test_deepseek_hit_field_is_read_when_the_details_say_nothing(details: dict[str, Any] | None) -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": details,
            "prompt_cache_hit_tokens": 1024,
            "prompt_cache_miss_tokens": 176,
        }
    )
    assert usage == TokenUsage(input=176, cached_input=1024, output=300)


def test_more_cached_than_prompted_is_clamped_to_the_prompt() -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "prompt_tokens_details": {"cached_tokens": 150},
            "completion_tokens_details": {"reasoning_tokens": 25},
        }
    )
    assert usage == TokenUsage(input=0, cached_input=100, output=0, reasoning=10)
    assert usage.total == 100 + 10
    assert cost_nano(OFFERS["openai/o4-mini"].prices, usage) == 100 * 2000 + 10 * 40000


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 100, "prompt_cache_hit_tokens": None, "prompt_cache_miss_tokens": 100}, TokenUsage(100)),
        ({"prompt_tokens": 100, "prompt_tokens_details": [64]}, TokenUsage(input=100)),
        ({"completion_tokens": 50, "completion_tokens_details": None}, TokenUsage(output=50)),
        ({"completion_tokens": 50, "completion_tokens_details": {"reasoning_tokens": None}}, TokenUsage(output=50)),
        ({"prompt_tokens": 100, "completion_tokens": None}, TokenUsage(input=100)),
    ],
    ids=["null-hit", "details-not-an-object", "null-completion-details", "null-reasoning", "null-completion"],
)
def test_missing_or_null_counts_are_zero(usage: dict[str, Any], expected: TokenUsage) -> None:
    assert usage_from_openai(usage) == expected


@pytest.mark.parametrize(
    "usage",
    [
        {},
        {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None},
        {"prompt_tokens": -5, "completion_tokens": 7},
        {"prompt_tokens": True, "completion_tokens": True},
        {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": True}},
        {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": -20}},
        {"prompt_tokens": 100, "prompt_cache_hit_tokens": False},
        {"completion_tokens": 50, "completion_tokens_details": {"reasoning_tokens": -9}},
        {"completion_tokens": 50, "completion_tokens_details": {"reasoning_tokens": True}},
        {"prompt_tokens": "many", "completion_tokens": 7},
    ],
    ids=[
        "empty",
        "all-null",
        "negative-prompt",
        "bool-totals",
        "bool-cached",
        "negative-cached",
        "bool-hit",
        "negative-reasoning",
        "bool-reasoning",
        "word-prompt",
    ],
)
def test_negative_bool_or_absent_counts_are_no_report(usage: dict[str, Any]) -> None:
    """Such a report is malformed, not zero: the caller charges its local estimate (metering/usage.py)."""
    assert usage_from_openai(usage) is None


counts = st.integers(min_value=0, max_value=10**9)
prices_nano = st.integers(min_value=0, max_value=10**6)
prices = st.builds(Prices, prices_nano, prices_nano, prices_nano, prices_nano)
usages = st.builds(TokenUsage, counts, counts, counts, counts)
CLASSES = ("input", "cached_input", "output", "reasoning")


@given(prices, usages)
def test_cost_is_the_sum_of_the_per_class_products(p: Prices, usage: TokenUsage) -> None:
    assert cost_nano(p, usage) == (
        usage.input * p.input_nano
        + usage.cached_input * p.cached_input_nano
        + usage.output * p.output_nano
        + usage.reasoning * p.reasoning_nano
    )


@given(prices, usages, st.sampled_from(CLASSES), st.integers(min_value=1, max_value=10**6))
def test_cost_is_monotone_in_each_count(p: Prices, usage: TokenUsage, token_class: str, more: int) -> None:
    grown = TokenUsage(**{name: getattr(usage, name) + (more if name == token_class else 0) for name in CLASSES})
    price = {"input": p.input_nano, "cached_input": p.cached_input_nano, "output": p.output_nano}.get(
        token_class, p.reasoning_nano
    )
    assert cost_nano(p, grown) == cost_nano(p, usage) + more * price >= cost_nano(p, usage)


@given(counts, counts, counts, counts)
def test_deepseek_shaped_usage_counts_every_token_once(prompt: int, hit: int, completion: int, thought: int) -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": hit},
            "completion_tokens_details": {"reasoning_tokens": thought},
            "prompt_cache_hit_tokens": hit,
            "prompt_cache_miss_tokens": max(prompt - hit, 0),
        }
    )
    assert usage.total == prompt + completion
    assert usage.cached_input == min(hit, prompt) and usage.reasoning == min(thought, completion)
