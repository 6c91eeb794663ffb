"""The OpenAI-compatible endpoints of a simulated operator: chat completions and the model list.

One request goes: resolve the operator, read and parse the body, count it, then apply the faults in a
fixed order (injected error, then hang) and only then do the work: plan the answer, measure usage against
the prefix cache, wait the time-to-first-token and answer, streamed or whole. Faults come before the
prefix cache so a failed request leaves no trace in it, as with a real operator.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from suanli.errors import InvariantViolation
from suanli.metering.tokenizer import count_messages, count_text, encode, message_text
from suanli.providers.simulator.completion import Completion, plan_completion
from suanli.providers.simulator.errors import (
    StreamDropped,
    error_response,
    injected_error_response,
    invalid_request_response,
    not_found_response,
)
from suanli.providers.simulator.profile import SimProfile
from suanli.providers.simulator.protocol import (
    STREAM_DONE_EVENT,
    AnswerHeader,
    ChatRequest,
    InvalidRequest,
    ToolCall,
    chunk_event,
    completion_body,
    models_body,
    parse_chat_request,
    usage_event,
    usage_object,
)
from suanli.providers.simulator.state import DEFAULT_OPERATOR, OperatorState, SimState

REQUEST_BODY_BYTES_MAX = 8 * 1024 * 1024  # twice what the gateway forwards, so its limit is the one hit
HANG_S_MAX = 900.0  # a hanging request answers 504 after this: longer than any gateway timeout
_MS_PER_S = 1000
TOOL_ARGUMENT_CHARS_MAX = 200  # of the user's words put into a simulated tool call


class BodyTooLarge(Exception):
    pass


def sim_state(request: Request) -> SimState:
    state = request.app.state.sim
    if not isinstance(state, SimState):
        raise InvariantViolation("the simulator app must carry a SimState in app.state.sim")
    return state


def resolve_operator(request: Request) -> OperatorState | Response:
    name = request.path_params.get("operator", DEFAULT_OPERATOR)
    operator = sim_state(request).get(name)
    if operator is None:
        return not_found_response(f"The simulated operator '{name}' does not exist.", code="operator_not_found")
    return operator


async def read_body(request: Request) -> bytes:
    """The request body, refused past REQUEST_BODY_BYTES_MAX without reading the rest."""
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > REQUEST_BODY_BYTES_MAX:
            raise BodyTooLarge
    return bytes(body)


async def _wait_for_disconnect(request: Request) -> bool:
    """Wait until the client goes away (True) or HANG_S_MAX passes (False)."""
    try:
        async with asyncio.timeout(HANG_S_MAX):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def _measure_usage(
    operator: OperatorState, profile: SimProfile, chat: ChatRequest, completion_tokens: int
) -> dict[str, Any] | None:
    """Usage as OpenAI and DeepSeek report it, cached tokens from the operator's prefix cache: the same for a
    text answer and a tool call, since the cache sees only the prompt."""
    prompt_tokens = count_messages(chat.messages)
    prompt_ids = encode("\n".join(message_text(message) for message in chat.messages))
    seen_tokens = operator.cache.lookup_and_record(chat.model, prompt_ids, profile.cache_block_tokens)
    cached_tokens = min(seen_tokens, prompt_tokens)
    operator.stats.prompt_tokens += prompt_tokens
    operator.stats.cached_tokens += cached_tokens
    operator.stats.completion_tokens += completion_tokens
    if not profile.report_usage:
        return None
    return usage_object(prompt_tokens, completion_tokens, cached_tokens)


@dataclass(frozen=True)
class _Answer:
    operator: OperatorState
    profile: SimProfile
    header: AnswerHeader
    completion: Completion
    usage: dict[str, Any] | None
    include_usage: bool


def _drop_if_due(answer: _Answer, content_chunks_sent: int) -> None:
    if answer.profile.drop_after_chunks == content_chunks_sent:
        answer.operator.stats.streams_dropped += 1
        raise StreamDropped(f"stream dropped after {content_chunks_sent} content chunks")


async def _pace(started_s: float, index: int, tokens_per_s: float) -> None:
    """Sleep until chunk ``index`` is due; deadlines from the start keep sleep error from adding up."""
    if tokens_per_s > 0:
        due_s = started_s + index / tokens_per_s
        await asyncio.sleep(max(0.0, due_s - asyncio.get_running_loop().time()))


async def _stream_events(answer: _Answer) -> AsyncIterator[bytes]:
    header, finish_reason = answer.header, answer.completion.finish_reason
    # OpenAI marks every chunk "usage": null when usage was asked for; an operator reporting no usage
    # at all (report_usage=False) leaves the field out.
    usage_null = answer.include_usage and answer.usage is not None
    yield chunk_event(header, {"role": "assistant", "content": ""}, None, usage_null)
    deltas = answer.completion.delta_texts()
    started_s = asyncio.get_running_loop().time()
    for index, text in enumerate(deltas):
        _drop_if_due(answer, index)
        await _pace(started_s, index, answer.profile.tokens_per_s)
        yield chunk_event(header, {"content": text}, None, usage_null)
    _drop_if_due(answer, len(deltas))
    yield chunk_event(header, {}, finish_reason, usage_null)
    if usage_null and answer.usage is not None:
        yield usage_event(header, answer.usage)
    yield STREAM_DONE_EVENT


async def _answer(answer: _Answer, stream: bool) -> Response:
    profile = answer.profile
    if stream:
        # The headers wait for the first token too, as they do at an operator still reading the prompt.
        await asyncio.sleep(profile.ttft_ms / _MS_PER_S)
        return StreamingResponse(
            _stream_events(answer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    generation_s = len(answer.completion.tokens) / profile.tokens_per_s if profile.tokens_per_s else 0
    await asyncio.sleep(profile.ttft_ms / _MS_PER_S + generation_s)
    completion = answer.completion
    body = completion_body(answer.header, completion.text(), completion.finish_reason, answer.usage)
    return Response(body, media_type="application/json")


def _tool_call(chat: ChatRequest, tool: ToolCall) -> dict[str, Any]:
    last = chat.messages[-1].get("content")
    words = last if isinstance(last, str) else " ".join(
        str(p.get("text", "")) for p in last or [] if isinstance(p, dict))  # fmt: skip
    arguments = orjson.dumps({tool.argument: words[:TOOL_ARGUMENT_CHARS_MAX]}).decode()
    call_id = "call_" + hashlib.sha256(arguments.encode()).hexdigest()[:24]
    return {"id": call_id, "type": "function", "function": {"name": tool.name, "arguments": arguments}}


async def _tool_call_answer(
    operator: OperatorState, profile: SimProfile, chat: ChatRequest, tool: ToolCall
) -> Response:
    """Answer with a call of the offered tool, as a model does when it decides to use one."""
    call = _tool_call(chat, tool)
    usage = _measure_usage(operator, profile, chat, count_text(tool.name + call["function"]["arguments"]))
    header = AnswerHeader(f"chatcmpl-sim-{secrets.token_hex(12)}", int(time.time()), chat.model)
    await asyncio.sleep(profile.ttft_ms / _MS_PER_S)
    if not chat.stream:
        return Response(completion_body(header, None, "tool_calls", usage, [call]), media_type="application/json")
    return StreamingResponse(_tool_call_events(header, call, usage, chat.include_usage), media_type="text/event-stream")


async def _tool_call_events(
    header: AnswerHeader, call: dict[str, Any], usage: dict[str, Any] | None, include_usage: bool
) -> AsyncIterator[bytes]:
    usage_null = include_usage and usage is not None
    arguments = call["function"]["arguments"]
    half = len(arguments) // 2
    opening = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"],
                                                                             "arguments": ""}}  # fmt: skip
    yield chunk_event(header, {"role": "assistant", "content": None, "tool_calls": [opening]}, None, usage_null)
    for piece in (arguments[:half], arguments[half:]):  # arguments arrive in pieces, as real models send them
        yield chunk_event(header, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None, usage_null)
    yield chunk_event(header, {}, "tool_calls", usage_null)
    if usage_null and usage is not None:
        yield usage_event(header, usage)
    yield STREAM_DONE_EVENT


async def _parse(request: Request) -> ChatRequest | Response:
    try:
        return parse_chat_request(await read_body(request))
    except BodyTooLarge:
        message = f"The request body is larger than {REQUEST_BODY_BYTES_MAX} bytes."
        return invalid_request_response(message, code="body_too_large", status=413)
    except InvalidRequest as error:
        return invalid_request_response(error.message, param=error.param, code=error.code)


async def chat_completions(request: Request) -> Response:
    operator = resolve_operator(request)
    if isinstance(operator, Response):
        return operator
    chat = await _parse(request)
    if isinstance(chat, Response):
        return chat
    operator.stats.requests += 1
    operator.note_model(chat.model)
    profile = operator.profile  # this request keeps these knobs if the control API changes them later
    if operator.draw_error():
        operator.stats.errors_injected += 1
        return injected_error_response(profile.error_status)
    if profile.hang:
        operator.stats.hangs += 1
        if await _wait_for_disconnect(request):
            return Response(status_code=499)  # nobody is left to read it; uvicorn discards it
        return error_response(504, "The simulated operator hung.", "server_error", code="timeout")
    if chat.tool is not None:
        return await _tool_call_answer(operator, profile, chat, chat.tool)
    completion = plan_completion(profile, chat.model, chat.messages, chat.max_tokens)
    usage = _measure_usage(operator, profile, chat, len(completion.tokens))
    header = AnswerHeader(f"chatcmpl-sim-{secrets.token_hex(12)}", int(time.time()), chat.model)
    answer = _Answer(operator, profile, header, completion, usage, chat.include_usage)
    return await _answer(answer, chat.stream)


async def list_models(request: Request) -> Response:
    operator = resolve_operator(request)
    if isinstance(operator, Response):
        return operator
    body = models_body(operator.name, operator.model_names(), sim_state(request).started_s)
    return Response(body, media_type="application/json")
