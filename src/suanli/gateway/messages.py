"""The Anthropic Messages API on the one chat path: passed through to Anthropic-protocol operators,
translated for OpenAI-protocol ones.

A ``/v1/messages`` request is translated into an OpenAI chat request (kept next to the client's own body)
and then takes exactly the path of ``/v1/chat/completions``: routing, reservation, failover, settlement.
An operator that speaks Anthropic's protocol gets the client's body as it came, with only the model
changed, and its answer goes back as it came with the cost added; its usage is read from the message
(or from ``message_start`` and ``message_delta`` in a stream). An OpenAI-protocol operator gets the
translation, and its answer is translated back. Costs and balances are the same for every client.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from suanli.errors import SuanliError, UpstreamError
from suanli.gateway.auth import Caller
from suanli.gateway.chat import ChatAnswer, Dialect, Passthrough, run_chat
from suanli.gateway.failover import ROUTING_FIELDS
from suanli.gateway.lifecycle import Call, Settlement
from suanli.gateway.platform import Platform
from suanli.gateway.relay import StreamRelay, TranslatingRelay, parse_data
from suanli.gateway.requests import chat_request_from
from suanli.gateway.sanitize import operator_error
from suanli.metering import delivered_texts, estimate_usage, usage_from_anthropic
from suanli.money import nano_to_cny
from suanli.pricing import TokenUsage
from suanli.providers.anthropic_stream import AnthropicStreamTranslator, error_event, sse
from suanli.providers.anthropic_translate import (
    anthropic_to_openai_request,
    anthropic_usage,
    openai_to_anthropic_message,
    without_billing_header,
)
from suanli.providers.base import UpstreamResponse

# Anthropic's error type for each HTTP status the platform answers with, and the status to send.
_ERROR_TYPES = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    405: (405, "invalid_request_error"),
    408: (408, "invalid_request_error"),
    409: (409, "invalid_request_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    502: (502, "api_error"),
    503: (529, "overloaded_error"),  # Anthropic clients know 529 as "come back shortly"
    504: (504, "timeout_error"),
}


def anthropic_error(exc: SuanliError) -> tuple[int, str]:
    """The HTTP status and Anthropic error type for one of the platform's errors."""
    return _ERROR_TYPES.get(exc.status, (500, "api_error"))


def anthropic_error_body(exc: SuanliError, request_id: str | None) -> bytes:
    _, error_type = anthropic_error(exc)
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": exc.message}, "request_id": request_id}
    )


def _answer(call: Call, data: dict[str, Any], usage: TokenUsage, settlement: Settlement, estimated: bool) -> bytes:
    message = openai_to_anthropic_message(data, call.request.model, usage)
    message["usage"]["cost"] = nano_to_cny(settlement.cost_nano)
    if estimated:
        message["usage"]["estimated"] = True
    return orjson.dumps(message)


def _relay(platform: Platform, call: Call, response: UpstreamResponse) -> StreamRelay:
    translator = AnthropicStreamTranslator(
        call.request.model, "msg_" + call.request_id.removeprefix("req_"), call.prompt_tokens
    )
    return TranslatingRelay(platform, call, response, translator, lambda exc: anthropic_error(exc)[1])


# From an operator that speaks Anthropic's protocol: its answer as it came, with the cost added.


def _native_usage(call: Call, data: dict[str, Any]) -> tuple[TokenUsage, bool]:
    reported = data.get("usage")
    usage = usage_from_anthropic(reported) if isinstance(reported, dict) and "output_tokens" in reported else None
    if usage is not None:
        return usage, False
    blocks = data["content"]
    text = "".join(str(b.get("text") or b.get("thinking") or "") for b in blocks if isinstance(b, dict))
    text += "".join(orjson.dumps(b.get("input")).decode() for b in blocks if isinstance(b, dict) and "input" in b)
    return estimate_usage(call.prompt_tokens, [text]), True


def _native_answer(call: Call, data: dict[str, Any], usage: TokenUsage, settlement: Settlement, est: bool) -> bytes:
    data["model"] = call.request.model  # as a translated answer names it: the model the client asked for
    reported = data.get("usage")
    if est or not isinstance(reported, dict):
        reported = data["usage"] = {"input_tokens": usage.input, "output_tokens": usage.output}
    reported["cost"] = nano_to_cny(settlement.cost_nano)
    if est:
        reported["estimated"] = True
    return orjson.dumps(data)


class AnthropicRelay(StreamRelay):
    """An Anthropic-protocol operator's stream, relayed as it comes. Only ``message_start`` (the input
    classes), ``message_delta`` (the output and the stop reason) and ``error`` are parsed. The
    ``message_delta`` is held: after the settlement it goes to the client with the cost as charged, then
    ``message_stop``, whether or not the operator sent one before closing."""

    def __init__(self, platform: Platform, call: Call, response: UpstreamResponse) -> None:
        super().__init__(platform, call, response)
        self._held: dict[str, Any] | None = None  # the operator's message_delta, until the settlement

    def _estimate(self) -> TokenUsage:
        """Input as reported by ``message_start``, if it came; the output as delivered, counted."""
        reported = None if self._reported is None else usage_from_anthropic(self._reported)
        if reported is None:
            return super()._estimate()
        delivered = estimate_usage(0, delivered_texts(self._delivered))
        return replace(reported, output=delivered.output)

    def _error_event(self, error: SuanliError) -> bytes:
        return error_event(anthropic_error(error)[1], error.message)

    def _closing(self, settlement: Settlement | None) -> bytes:
        delta = self._held or {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        usage = delta.get("usage") if isinstance(delta.get("usage"), dict) else None
        if usage is None or self._final_estimated:
            usage = delta["usage"] = {**(usage or {}), **anthropic_usage(self._final_usage)}
        if settlement is not None:
            usage["cost"] = nano_to_cny(settlement.cost_nano)
            if self._final_estimated:
                usage["estimated"] = True
        return sse(_typed(delta, b"message_delta")) + sse({"type": "message_stop"})

    def _event(self, event: bytes) -> bytes | None:
        name = _event_name(event)
        if name == b"content_block_delta":
            self._deliver(event)
            return event
        if name == b"message_stop":
            self._ended = True
            return None  # the platform's own follows the settlement
        if name not in (b"message_start", b"message_delta", b"error"):
            return event
        data = parse_data(event)
        if not isinstance(data, dict):
            return event
        if name == b"error":  # the operator gave up mid-stream; the client gets the platform's error
            operator = self._platform.catalog.operators[self._call.offer.operator]
            detail = operator_error(data, operator).message  # sanitized: it may echo the operator's key
            self._upstream_error = UpstreamError(
                f"Operator {operator.name} failed mid-stream: {detail}", code="stream_cut"
            )
            return None
        if name == b"message_delta":
            self._hold(data)
            return None
        message: Any = data.get("message")
        reported = message.get("usage") if isinstance(message, dict) else None
        if isinstance(reported, dict):
            self._reported = {**(self._reported or {}), **reported}
            message["model"] = self._call.request.model
        return sse(_typed(data, name))

    def _hold(self, data: dict[str, Any]) -> None:
        """Keep the ``message_delta``: its usage completes the reported classes, its stop reason ends the answer."""
        reported = data.get("usage")
        if isinstance(reported, dict):
            self._reported = {**(self._reported or {}), **reported}
            self._usage = usage_from_anthropic(self._reported)
        delta = data.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            self._finished_choices.add(0)
        self._held = data


def _event_name(event: bytes) -> bytes:
    """The event's type: its ``event:`` line, which Anthropic sends first (else the data's ``type``)."""
    if event.startswith(b"event:"):
        return event[6 : event.find(b"\n")].strip()
    try:
        data: Any = orjson.loads(event[event.index(b"data:") + 5 :])
    except (ValueError, orjson.JSONDecodeError):
        return b""
    return str(data.get("type", "")).encode() if isinstance(data, dict) else b""


def _typed(data: dict[str, Any], name: bytes) -> dict[str, Any]:
    data.setdefault("type", name.decode())  # Anthropic puts it in the data too; keep its place if it is there
    return data


ANTHROPIC = Dialect(
    "anthropic",
    answer=_answer,
    relay=_relay,
    passthrough=Passthrough(answer_field="content", usage=_native_usage, answer=_native_answer, relay=AnthropicRelay),
)


async def anthropic_messages(
    platform: Platform, caller: Caller, body: dict[str, Any], request_id: str, body_bytes: int = 0
) -> ChatAnswer:
    translated = anthropic_to_openai_request(body)
    translated.update({name: body[name] for name in ROUTING_FIELDS if name in body})  # the gateway's own fields
    request = chat_request_from(translated)
    # An Anthropic-protocol operator gets the body as it came, but for Claude Code's billing line, whose suffix
    # changes with every conversation: at the front of the prompt it would defeat the operator's prefix cache.
    request.protocol, request.native_body = "anthropic", without_billing_header(body)
    request.body_bytes = body_bytes
    return await run_chat(platform, caller, request, request_id, ANTHROPIC)


async def count_tokens(platform: Platform, body: dict[str, Any], body_bytes: int) -> int:
    """Input tokens of a Messages request, counted as admission counts them (docs/billing.md, *Counting
    the prompt*): the messages, system prompt, images and tool definitions of its OpenAI translation,
    before the offer's margin; a large one off the event loop."""
    translated = anthropic_to_openai_request({**body, "max_tokens": body.get("max_tokens") or 1})
    return await platform.counter.count(translated, translated["messages"], body_bytes)
