"""Reading token usage from what upstreams report, and counting it locally where they report nothing.

OpenAI-compatible upstreams report ``prompt_tokens`` (cached included) and ``completion_tokens``
(reasoning included); DeepSeek also names its cache hits ``prompt_cache_hit_tokens``. The platform's
token classes are disjoint, so the cached and reasoning parts are taken out of the totals here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from suanli.metering.tokenizer import count_text
from suanli.pricing import TokenUsage


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_openai(usage: Mapping[str, Any]) -> TokenUsage:
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    cached = _int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, Mapping) else 0
    cached = cached or _int(usage.get("prompt_cache_hit_tokens"))
    completion_details = usage.get("completion_tokens_details")
    reasoning = _int(completion_details.get("reasoning_tokens")) if isinstance(completion_details, Mapping) else 0
    cached, reasoning = min(cached, prompt), min(reasoning, completion)
    return TokenUsage(input=prompt - cached, cached_input=cached, output=completion - reasoning, reasoning=reasoning)


def usage_from_anthropic(usage: Mapping[str, Any]) -> TokenUsage:
    """Anthropic reports the classes disjoint already: ``input_tokens`` excludes cache reads and writes,
    and ``output_tokens`` includes any thinking (billed as output)."""
    return TokenUsage(
        input=_int(usage.get("input_tokens")),
        cached_input=_int(usage.get("cache_read_input_tokens")),
        output=_int(usage.get("output_tokens")),
        cache_write=_int(usage.get("cache_creation_input_tokens")),
    )


def delivered_text(events: Iterable[bytes]) -> str:
    """The text a client received from the given stream events (``data: {...}`` lines), OpenAI's chunks
    or Anthropic's ``content_block_delta`` events."""
    parts: list[str] = []
    for event in events:
        for line in event.splitlines():
            if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                continue
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            parts.extend(_delta_texts(chunk))
    return "".join(parts)


ANTHROPIC_DELTA_TEXT = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


def _delta_texts(chunk: Any) -> Iterable[str]:
    if isinstance(chunk, dict) and chunk.get("type") == "content_block_delta":
        delta = chunk.get("delta")
        if isinstance(delta, dict):
            text = delta.get(ANTHROPIC_DELTA_TEXT.get(str(delta.get("type")), ""))
            if isinstance(text, str):
                yield text
        return
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for key in ("content", "reasoning_content"):
            if isinstance(delta.get(key), str):
                yield delta[key]
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                yield str(function.get("name") or "") + str(function.get("arguments") or "")


def estimate_usage(prompt_tokens: int, delivered: str) -> TokenUsage:
    """What a request used, counted locally: the prompt as counted at admission and the text delivered."""
    return TokenUsage(input=prompt_tokens, output=count_text(delivered))
