"""OpenAI ``chat.completion.chunk`` objects turned into Anthropic's server-sent events, with no I/O.

A stream from an OpenAI-protocol operator, for a client of the Messages API: ``message_start``, content
blocks opened, filled and closed in order, then ``message_delta`` with the usage and ``message_stop``.
``sse`` and ``error_event`` write any Anthropic event, for the pass-through relay too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from suanli.pricing import TokenUsage
from suanli.providers.anthropic_translate import anthropic_usage, first_choice, generated_id, stop_reason


def sse(data: Mapping[str, Any]) -> bytes:
    """One Anthropic server-sent event: its type on the ``event:`` line, the object on the ``data:`` line."""
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(error_type: str, message: str) -> bytes:
    return sse({"type": "error", "error": {"type": error_type, "message": message}})


@dataclass(slots=True)
class _OpenBlock:
    kind: str  # "thinking", "text" or "tool_use"
    index: int
    tool_id: str | None = None


class AnthropicStreamTranslator:
    """Turns the ``chat.completion.chunk`` objects of one OpenAI stream into Anthropic's events.

    A small state machine: at most one content block is open; a delta of another kind (thinking, text, a
    tool call) closes it and opens the next, with the next index. OpenAI streams tool calls by ``index``; the
    first delta of a call carries its ``id`` and name, later ones append to its arguments.
    """

    def __init__(self, model: str, message_id: str, input_tokens: int) -> None:
        self._model = model
        self._message_id = message_id
        self._input_tokens = input_tokens
        self._open: _OpenBlock | None = None
        self._blocks_started = 0
        self._tool_blocks: dict[str, int] = {}  # tool call id -> its block's index
        self._tool_ids: dict[int, str] = {}  # OpenAI tool call index -> tool call id
        self._finish_reason: str | None = None

    def start(self) -> bytes:
        usage = {
            "input_tokens": self._input_tokens,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return sse({"type": "message_start", "message": message})

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        choice = first_choice(chunk)
        if choice is None:
            return []  # the usage chunk, which comes with no choices
        finish_reason = choice.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            self._finish_reason = finish_reason
        delta = choice.get("delta")
        if not isinstance(delta, Mapping):
            return []
        events = [*self._text("thinking", delta.get("reasoning_content")), *self._text("text", delta.get("content"))]
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, Mapping):
                events.extend(self._tool_call(call))
        return events

    def finish(self, usage: TokenUsage, extra: Mapping[str, Any] | None = None) -> list[bytes]:
        """The closing events; ``extra`` joins the usage (the platform's ``cost``, ``estimated``)."""
        reason = stop_reason(self._finish_reason, bool(self._tool_blocks))
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {**anthropic_usage(usage), **(extra or {})},
        }
        return [*self._close(), sse(message_delta), sse({"type": "message_stop"})]

    def error(self, error_type: str, message: str) -> bytes:
        return error_event(error_type, message)

    def ping(self) -> bytes:
        return sse({"type": "ping"})

    def _text(self, kind: str, text: Any) -> list[bytes]:
        """A thinking or text delta, opening a block of that kind unless one is open."""
        if not isinstance(text, str) or not text:
            return []
        events: list[bytes] = []
        block = self._open
        if block is None or block.kind != kind:
            block = _OpenBlock(kind, self._blocks_started)
            # Anthropic's thinking blocks carry a signature; an empty one marks this one as not Anthropic's.
            content_block = (
                {"type": kind, kind: "", "signature": ""} if kind == "thinking" else {"type": kind, kind: ""}
            )
            events = self._start_block(block, content_block)
        events.append(self._delta(block.index, {"type": f"{kind}_delta", kind: text}))
        return events

    def _tool_call(self, call: Mapping[str, Any]) -> list[bytes]:
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        events: list[bytes] = []
        tool_id = self._known_tool_id(call)
        if tool_id is None:
            tool_id, events = self._start_tool(call, function)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            # Addressed by index: arguments for an earlier call that arrive after a later call began (no known
            # operator does this) still reach the right block for clients that route deltas by index.
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append(self._delta(self._tool_blocks[tool_id], delta))
        return events

    def _known_tool_id(self, call: Mapping[str, Any]) -> str | None:
        """The id of the call a tool-call delta continues, or None when it begins a new one. An id seen before
        wins, since some servers repeat the id on every delta or give every call of a batch index 0; a delta
        without an index (some servers leave it out) continues the open call."""
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            return call_id if call_id in self._tool_blocks else None
        index = call.get("index")
        if isinstance(index, int):
            return self._tool_ids.get(index)
        return self._open.tool_id if self._open is not None else None

    def _start_tool(self, call: Mapping[str, Any], function: Mapping[str, Any]) -> tuple[str, list[bytes]]:
        call_id = call.get("id")
        tool_id = call_id if isinstance(call_id, str) and call_id else generated_id("toolu_")
        index = call.get("index")
        if isinstance(index, int):
            self._tool_ids[index] = tool_id
        block = _OpenBlock("tool_use", self._blocks_started, tool_id)
        self._tool_blocks[tool_id] = block.index
        name = function.get("name")
        content_block = {"type": "tool_use", "id": tool_id, "name": name if isinstance(name, str) else "", "input": {}}
        return tool_id, self._start_block(block, content_block)

    def _start_block(self, block: _OpenBlock, content_block: Mapping[str, Any]) -> list[bytes]:
        events = self._close()
        self._open = block
        self._blocks_started += 1
        return [*events, sse({"type": "content_block_start", "index": block.index, "content_block": content_block})]

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open = self._open.index, None
        return [sse({"type": "content_block_stop", "index": index})]

    def _delta(self, index: int, delta: Mapping[str, Any]) -> bytes:
        return sse({"type": "content_block_delta", "index": index, "delta": delta})
