"""Reading token usage from what upstreams report, and counting it locally where they report nothing.

OpenAI-compatible upstreams report ``prompt_tokens`` (cached included) and ``completion_tokens``
(reasoning included); DeepSeek also names its cache hits ``prompt_cache_hit_tokens``. The platform's
token classes are disjoint, so the cached and reasoning parts are taken out of the totals here, once.
A malformed report (a count that is negative, not a whole number, or beyond ``REPORTED_TOKENS_MAX``) is no
report: the readers answer None and the caller charges its local estimate, never zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from suanli.limits import REPORTED_TOKENS_MAX
from suanli.metering.tokenizer import count_text
from suanli.pricing import TokenUsage

MALFORMED = -1  # what ``_count`` reads from a count that is there but is no count of tokens


def reported_count(value: Any) -> int | None:
    """A token count as an operator reports it: a whole number from 0 to ``REPORTED_TOKENS_MAX``, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= REPORTED_TOKENS_MAX:
        return None
    return value


def _count(container: Any, name: str) -> int:
    """The count ``name`` of a usage object: 0 when absent (or null), ``MALFORMED`` when it is no count."""
    value = container.get(name) if isinstance(container, Mapping) else None
    if value is None:
        return 0
    count = reported_count(value)
    return MALFORMED if count is None else count


def usage_from_openai(usage: Mapping[str, Any]) -> TokenUsage | None:
    """The usage an OpenAI-compatible operator reported; None when it reported neither count, or a malformed one."""
    if usage.get("prompt_tokens") is None and usage.get("completion_tokens") is None:
        return None
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    cached = _count(usage.get("prompt_tokens_details"), "cached_tokens") or _count(usage, "prompt_cache_hit_tokens")
    reasoning = _count(usage.get("completion_tokens_details"), "reasoning_tokens")
    if MALFORMED in (prompt, completion, cached, reasoning):
        return None
    cached, reasoning = min(cached, prompt), min(reasoning, completion)
    return TokenUsage(input=prompt - cached, cached_input=cached, output=completion - reasoning, reasoning=reasoning)


def usage_from_anthropic(usage: Mapping[str, Any]) -> TokenUsage | None:
    """Anthropic reports the classes disjoint already: ``input_tokens`` excludes cache reads and writes,
    and ``output_tokens`` includes any thinking (billed as output). None when it reported neither
    ``input_tokens`` nor ``output_tokens``, or a malformed count."""
    if usage.get("input_tokens") is None and usage.get("output_tokens") is None:
        return None
    names = ("input_tokens", "cache_read_input_tokens", "output_tokens", "cache_creation_input_tokens")
    counts = [_count(usage, name) for name in names]
    if MALFORMED in counts:
        return None
    return TokenUsage(input=counts[0], cached_input=counts[1], output=counts[2], cache_write=counts[3])


def delivered_texts(events: Iterable[bytes]) -> list[str]:
    """The text a client received from the given stream events (``data: {...}`` lines), OpenAI's chunks
    or Anthropic's ``content_block_delta`` events: one text per answer (a choice's ``index``), each its
    pieces joined in the order they were written."""
    answers: dict[int, list[str]] = {}
    for event in events:
        for line in event.splitlines():
            if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                continue
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            for index, text in _delta_texts(chunk):
                answers.setdefault(index, []).append(text)
    return ["".join(answers[index]) for index in sorted(answers)]


def answer_texts(answer: Mapping[str, Any]) -> list[str]:
    """The text of each choice of a whole OpenAI ``chat.completion``: its content, reasoning content and
    tool calls' names and arguments, as a stream of the same answer would have delivered them."""
    texts: list[str] = []
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if isinstance(message, Mapping):
            texts.append("".join(_message_texts(message)))
    return texts


def _message_texts(message: Mapping[str, Any]) -> Iterable[str]:
    for key in ("content", "reasoning_content"):
        if isinstance(message.get(key), str):
            yield message[key]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            yield str(function.get("name") or "") + str(function.get("arguments") or "")


ANTHROPIC_DELTA_TEXT = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


def _delta_texts(chunk: Any) -> Iterable[tuple[int, str]]:
    """(answer index, text) of each piece of text in one event."""
    if isinstance(chunk, dict) and chunk.get("type") == "content_block_delta":
        delta = chunk.get("delta")
        if isinstance(delta, dict):
            text = delta.get(ANTHROPIC_DELTA_TEXT.get(str(delta.get("type")), ""))
            if isinstance(text, str):
                yield 0, text
        return
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        index = choice.get("index", 0)
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        for text in _message_texts(delta):
            yield index, text


def estimate_usage(prompt_tokens: int, delivered: Iterable[str]) -> TokenUsage:
    """What a request used, counted locally: the prompt as counted at admission and the text of each
    answer delivered, each counted on its own (reasoning text included: a local count can't tell it apart)."""
    return TokenUsage(input=prompt_tokens, output=sum(count_text(text) for text in delivered))
