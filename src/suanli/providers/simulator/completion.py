"""What the simulator answers: deterministic text, measured in tokens of the declared tokenizer.

The answer is a function of (seed, model, messages) alone, so a streamed and a non-streamed call of the
same request get the same text, and a call cut short by ``max_tokens`` gets a prefix of it. Its length is
exact in tokens: the text is generated, encoded and truncated to N tokens, and a stream carries one token
per chunk. A last user message containing ``echo:`` is answered with the text after the marker, which
lets tests choose the answer. With ``n`` choices, choice *i* hashes its index in too (choice 0 keeps the
single answer's text), so the choices differ as a sampling model's do.

An operator's ``output_cap_tokens`` caps answers as its real output limit does: a request without
``max_tokens`` stops there, and one asking for more is served or refused as ``over_cap`` says.
"""

from __future__ import annotations

import codecs
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from suanli.metering.tokenizer import decode, encode, encoding
from suanli.providers.simulator.profile import SimProfile
from suanli.providers.simulator.words import WORDS

ECHO_MARKER = "echo:"
DEFAULT_COMPLETION_TOKENS_MIN = 8
DEFAULT_COMPLETION_TOKENS_MAX = 64
_SENTENCE_WORDS_MIN = 6
_SENTENCE_WORDS_MAX = 14


@dataclass(frozen=True)
class Completion:
    """The tokens of one answer and why it ended: "stop" when complete, "length" when cut by max_tokens."""

    tokens: tuple[int, ...]
    finish_reason: str

    def text(self) -> str:
        return decode(self.tokens)

    def delta_texts(self) -> list[str]:
        """The content of each stream chunk, one per token; joined they equal ``text()``.

        A token may hold part of a multi-byte character (common in Chinese text). An incremental UTF-8
        decoder carries the partial bytes to the next chunk, so such a chunk's content is empty rather than
        a replacement character, and the last chunk flushes whatever remains.
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        token_bytes = encoding().decode_single_token_bytes
        last = len(self.tokens) - 1
        return [decoder.decode(token_bytes(token), final=index == last) for index, token in enumerate(self.tokens)]


class OverCap(Exception):
    """A request's ``max_tokens`` above the operator's output cap, at an operator that refuses it."""

    def __init__(self, requested: int, cap: int) -> None:
        super().__init__(f"max_tokens {requested} is above the output cap {cap}")
        self.requested = requested
        self.cap = cap


def output_limit(profile: SimProfile, max_tokens: int | None) -> int | None:
    """The most tokens an answer may have: the request's ``max_tokens``, else the operator's cap.

    Raises OverCap when ``max_tokens`` is above the cap and the operator refuses that ("refuse"); an
    operator that honours it ("honour") serves up to ``max_tokens``, as one whose real limit is higher
    than its catalog says.
    """
    cap = profile.output_cap_tokens
    if cap is None or max_tokens is None:
        return cap if max_tokens is None else max_tokens
    if max_tokens > cap and profile.over_cap == "refuse":
        raise OverCap(max_tokens, cap)
    return max_tokens


def request_digest(seed: int, model: str, messages: Sequence[Mapping[str, Any]], choice: int = 0) -> bytes:
    """A stable hash of what determines the answer; key order in the request doesn't matter.

    Choice 0 hashes what a single answer always hashed, so ``n`` leaves the first choice's text alone.
    """
    key: list[Any] = [seed, model, messages] if choice == 0 else [seed, model, messages, choice]
    canonical = orjson.dumps(key, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, Mapping)]
        return "".join(text for text in texts if isinstance(text, str))
    return ""


def echo_text(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The text after ``echo:`` in the last user message (leading space dropped), or None."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = _content_text(message.get("content"))
            _, marker, rest = content.partition(ECHO_MARKER)
            return rest.lstrip() if marker else None
    return None


def default_length(digest: bytes) -> int:
    span = DEFAULT_COMPLETION_TOKENS_MAX - DEFAULT_COMPLETION_TOKENS_MIN + 1
    return DEFAULT_COMPLETION_TOKENS_MIN + int.from_bytes(digest[:4], "big") % span


def _sentence(rng: random.Random) -> str:
    count = rng.randint(_SENTENCE_WORDS_MIN, _SENTENCE_WORDS_MAX)
    words = [rng.choice(WORDS) for _ in range(count)]
    return " ".join(words).capitalize() + "."


def generated_tokens(digest: bytes, count: int) -> list[int]:
    """Exactly ``count`` tokens of English-looking text drawn from a PRNG seeded by ``digest``."""
    rng = random.Random(digest)
    sentences: list[str] = []
    tokens: list[int] = []
    # Every word is one token, so the words drawn are a lower bound on tokens; loop until enough.
    while len(tokens) < count:
        drawn = 0
        while drawn < count - len(tokens) + 1:
            sentences.append(_sentence(rng))
            drawn += sentences[-1].count(" ") + 1
        tokens = encode(" ".join(sentences))
    return tokens[:count]


def plan_completion(
    profile: SimProfile,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int | None,
    choice: int = 0,
) -> Completion:
    """Choice ``choice`` of the answer: echo text, or generated text of the profile's or a hashed length,
    cut at ``max_tokens`` (the ``output_limit``)."""
    digest = request_digest(profile.seed, model, messages, choice)
    echoed = echo_text(messages)
    if echoed is not None:
        natural = encode(echoed)
    else:
        length = profile.completion_tokens
        natural = generated_tokens(digest, default_length(digest) if length is None else length)
    if max_tokens is not None and len(natural) > max_tokens:
        return Completion(tuple(natural[:max_tokens]), "length")
    return Completion(tuple(natural), "stop")
