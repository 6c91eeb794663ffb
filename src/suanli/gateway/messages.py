"""The Anthropic Messages API on the one chat path: translated to OpenAI for the operators, and back.

A ``/v1/messages`` request is translated into an OpenAI chat request and then takes exactly the path of
``/v1/chat/completions`` (routing, reservation, failover, settlement); only the shape of the answer
differs, through the ``ANTHROPIC`` dialect. Costs and balances are the same as for an OpenAI client.
"""

from __future__ import annotations

from typing import Any

import orjson

from suanli.errors import SuanliError
from suanli.gateway.auth import Caller
from suanli.gateway.chat import ChatAnswer, Dialect, run_chat
from suanli.gateway.lifecycle import Call, Settlement
from suanli.gateway.platform import Platform
from suanli.gateway.relay import StreamRelay, TranslatingRelay
from suanli.gateway.requests import chat_request_from
from suanli.metering import count_messages
from suanli.money import nano_to_cny
from suanli.pricing import TokenUsage
from suanli.providers.anthropic_translate import (
    AnthropicStreamTranslator,
    anthropic_to_openai_request,
    openai_to_anthropic_message,
)
from suanli.providers.base import UpstreamResponse

# Anthropic's error type for each HTTP status the platform answers with, and the status to send.
_ERROR_TYPES = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
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
    message["usage"]["cost"] = nano_to_cny(settlement.charge.cost_nano)
    if estimated:
        message["usage"]["estimated"] = True
    return orjson.dumps(message)


def _relay(platform: Platform, call: Call, response: UpstreamResponse) -> StreamRelay:
    translator = AnthropicStreamTranslator(call.request.model, "msg_" + call.request_id.removeprefix("req_"),
                                           call.prompt_tokens)  # fmt: skip
    return TranslatingRelay(platform, call, response, translator, lambda exc: anthropic_error(exc)[1])


ANTHROPIC = Dialect(answer=_answer, relay=_relay)


async def anthropic_messages(platform: Platform, caller: Caller, body: dict[str, Any], request_id: str) -> ChatAnswer:
    request = chat_request_from(anthropic_to_openai_request(body))
    return await run_chat(platform, caller, request, request_id, ANTHROPIC)


def count_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a Messages request, counted with the declared tokenizer (what a call reserves for,
    before the margin); the tool definitions count as text."""
    translated = anthropic_to_openai_request({**body, "max_tokens": body.get("max_tokens") or 1})
    tools = translated.get("tools")
    extra = [{"role": "system", "content": orjson.dumps(tools).decode()}] if tools else []
    return count_messages([*translated["messages"], *extra])
