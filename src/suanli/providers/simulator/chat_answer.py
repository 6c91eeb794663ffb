"""The OpenAI chat answer a simulated operator sends: its choices, whole or streamed in the operator's style.

An answer is planned as one ``ChoicePlan`` per choice (the delta that opens it, its content deltas and its
finish reason); the same plan makes the non-streamed body and the stream, so both carry the same text.

A stream interleaves the choices round-robin, one chunk of each in turn, as a server generating them in
one batch sends them. Real operators disagree on how a stream ends, and gateways that assume OpenAI's way
lose usage or hang on the others, so the ending follows the profile's wire style:

- usage (``stream_usage``): OpenAI's separate last chunk with ``"choices": []`` when the client asked for
  it ("chunk", every other chunk then carrying ``"usage": null``), the same chunk even unasked
  ("chunk_always"), on the last finish chunk when asked ("finish") or always ("finish_always", as
  ``transformers serve`` does), or not at all ("never");
- ``data: [DONE]`` last, or nothing after the last chunk (``stream_done`` false).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from suanli.providers.simulator.errors import StreamDropped
from suanli.providers.simulator.profile import SimProfile
from suanli.providers.simulator.protocol import (
    STREAM_DONE_EVENT,
    AnswerHeader,
    ChunkUsage,
    choice_object,
    chunk_event,
    completion_body,
    usage_event,
)
from suanli.providers.simulator.state import OperatorState


@dataclass(frozen=True)
class ChoicePlan:
    """One choice: the delta opening it in a stream, its content deltas, and what it costs and says whole."""

    opening: dict[str, Any]
    deltas: list[dict[str, Any]]
    finish_reason: str
    content: str | None  # the whole text; None for a tool call
    tool_calls: list[dict[str, Any]] | None
    completion_tokens: int


@dataclass(frozen=True)
class Answer:
    operator: OperatorState
    profile: SimProfile
    header: AnswerHeader
    choices: list[ChoicePlan]
    usage: dict[str, Any] | None  # None: the operator reports no usage (``report_usage`` false)
    include_usage: bool  # the client asked for usage (``stream_options.include_usage``)


@dataclass(frozen=True)
class _Piece:
    """One chunk of a stream: choice ``index``'s delta; ``step`` numbers content deltas for pacing."""

    index: int
    delta: dict[str, Any]
    step: int | None = None
    finish_reason: str | None = None


def whole_body(answer: Answer) -> bytes:
    """The non-streamed answer: every choice whole, with its index."""
    choices = [
        choice_object(index, plan.content, plan.finish_reason, plan.tool_calls)
        for index, plan in enumerate(answer.choices)
    ]
    return completion_body(answer.header, choices, answer.usage)


def generation_s(answer: Answer) -> float:
    """How long generating the answer takes at the profile's pace: the longest choice, as choices of one
    request are generated together."""
    rate = answer.profile.tokens_per_s
    return max(len(plan.deltas) for plan in answer.choices) / rate if rate else 0.0


def usage_placement(style: str, asked: bool) -> tuple[str | None, bool]:
    """Where a stream's usage goes ("chunk", "finish" or None) and whether other chunks say ``usage: null``."""
    if style == "chunk":
        return ("chunk", True) if asked else (None, False)
    if style == "chunk_always":
        return "chunk", asked
    if style == "finish":
        return ("finish" if asked else None), False
    if style == "finish_always":
        return "finish", False
    return None, False


def interleave(choices: list[ChoicePlan]) -> list[_Piece]:
    """Every choice's opening, content and finish chunks, taken round-robin across the choices."""
    sequences = [
        [
            _Piece(index, plan.opening),
            *(_Piece(index, delta, step) for step, delta in enumerate(plan.deltas)),
            _Piece(index, {}, finish_reason=plan.finish_reason),
        ]
        for index, plan in enumerate(choices)
    ]
    rounds = itertools.zip_longest(*sequences)
    return [piece for round_ in rounds for piece in round_ if piece is not None]


def _drop_if_due(answer: Answer, content_chunks_sent: int) -> None:
    if answer.profile.drop_after_chunks == content_chunks_sent:
        answer.operator.stats.streams_dropped += 1
        raise StreamDropped(f"stream dropped after {content_chunks_sent} content chunks")


async def pace(started_s: float, index: int, tokens_per_s: float) -> None:
    """Sleep until chunk ``index`` is due; deadlines from the start keep sleep error from adding up."""
    if tokens_per_s > 0:
        due_s = started_s + index / tokens_per_s
        await asyncio.sleep(max(0.0, due_s - asyncio.get_running_loop().time()))


async def after_pause(events: AsyncIterator[bytes], pause_ms: int) -> AsyncIterator[bytes]:
    """``events``, the first of them ``pause_ms`` after the headers (``headers_first_ms``)."""
    if pause_ms:
        await asyncio.sleep(pause_ms / 1000)
    async for event in events:
        yield event


async def stream_events(answer: Answer) -> AsyncIterator[bytes]:
    """The SSE events of the answer; ``drop_after_chunks`` counts content chunks over all choices."""
    where, null = usage_placement(answer.profile.stream_usage, answer.include_usage)
    if answer.usage is None:  # an operator reporting no usage at all leaves the field out everywhere
        where, null = None, False
    pieces = interleave(answer.choices)
    last_finish = max(position for position, piece in enumerate(pieces) if piece.finish_reason is not None)
    started_s = asyncio.get_running_loop().time()
    content_chunks_sent = 0
    for position, piece in enumerate(pieces):
        if piece.step is not None or piece.finish_reason is not None:
            _drop_if_due(answer, content_chunks_sent)
        if piece.step is not None:
            await pace(started_s, piece.step, answer.profile.tokens_per_s)
            content_chunks_sent += 1
        usage = ChunkUsage(null, answer.usage if where == "finish" and position == last_finish else None)
        yield chunk_event(answer.header, piece.index, piece.delta, piece.finish_reason, usage)
    if where == "chunk" and answer.usage is not None:
        yield usage_event(answer.header, answer.usage)
    if answer.profile.stream_done:
        yield STREAM_DONE_EVENT
