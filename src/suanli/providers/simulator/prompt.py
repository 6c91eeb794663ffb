"""What a simulated operator counts as a request's prompt, and how its own tokenizer changes the count.

A real operator bills more than the messages' text: its chat template writes the tool definitions, an
object ``tool_choice`` and a ``response_format`` schema into the prompt as text, and every image costs a
fixed number of tokens. A gateway that estimates from the messages alone under-reserves, so the simulator
counts all of it (with cl100k, each piece on its own) and then scales the count by
``prompt_tokens_percent``, because no operator's tokenizer is exactly the gateway's.

Everything here is pure; both endpoints (chat.py for OpenAI, messages.py for Anthropic) count through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from suanli.metering.tokenizer import count_messages, count_text, encode, message_text

IMAGE_PART_TOKENS = 765  # what OpenAI bills a high-detail 512x512 image: 85 base + 4 tiles of 170
PERCENT_WHOLE = 100


def definition_texts(tools: object, tool_choice: object, response_format: object) -> list[str]:
    """The JSON texts a chat template puts into the prompt besides the messages, in prompt order."""
    texts: list[str] = []
    if isinstance(tools, list) and tools:
        texts.append(orjson.dumps(tools).decode())
    if isinstance(tool_choice, dict):
        texts.append(orjson.dumps(tool_choice).decode())
    if isinstance(response_format, dict) and "json_schema" in response_format:
        texts.append(orjson.dumps(response_format).decode())
    return texts


def count_image_parts(messages: Iterable[Mapping[str, Any]], part_type: str) -> int:
    """Parts of ``part_type`` ("image_url" for OpenAI, "image" for Anthropic) in the messages' contents."""
    count = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, Mapping) and part.get("type") == part_type)
    return count


def scale_tokens(tokens: int, percent: int) -> int:
    """A cl100k count as an operator whose tokenizer counts ``percent`` % as many tokens reports it."""
    return (tokens * percent + PERCENT_WHOLE // 2) // PERCENT_WHOLE


@dataclass(frozen=True)
class PromptCount:
    """A prompt as the operator sees it: its cl100k tokens, and the token ids its prefix cache keys on."""

    tokens: int
    cache_ids: list[int]


def count_prompt(messages: Sequence[Mapping[str, Any]], definitions: Sequence[str], images: int) -> PromptCount:
    """Messages as OpenAI counts them, plus each definition's own count and IMAGE_PART_TOKENS per image.

    The prefix cache keys on the definitions (they come first in a rendered prompt, so changing a tool
    misses the cache) and then the messages' text; images are not in the key. Without definitions the key
    is the messages' text alone, as before definitions were counted.
    """
    tokens = count_messages(messages) + definitions_tokens(definitions) + IMAGE_PART_TOKENS * images
    text = "\n".join([*definitions, *(message_text(message) for message in messages)])
    return PromptCount(tokens, encode(text))


def definitions_tokens(definitions: Sequence[str]) -> int:
    """Each definition counted on its own, as a gateway can count it without rendering a template."""
    return sum(count_text(text) for text in definitions)
