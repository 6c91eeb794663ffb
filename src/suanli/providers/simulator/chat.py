"""The OpenAI-compatible endpoints of a simulated operator: chat completions and the model list.

One request goes: resolve the operator, read and parse the body, check ``max_tokens`` against the
operator's output cap, count it, then apply the faults in a fixed order (injected error, then hang) and
only then do the work: plan the ``n`` choices, measure usage against the prefix cache, wait the
time-to-first-token and answer, streamed or whole (chat_answer.py). Faults come before the prefix cache
so a failed request leaves no trace in it, as with a real operator.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from suanli.errors import InvariantViolation
from suanli.metering.tokenizer import count_text
from suanli.providers.simulator.chat_answer import (
    Answer,
    ChoicePlan,
    after_pause,
    generation_s,
    stream_events,
    whole_body,
)
from suanli.providers.simulator.completion import OverCap, output_limit, plan_completion
from suanli.providers.simulator.errors import (
    error_response,
    injected_error_response,
    invalid_request_response,
    not_found_response,
)
from suanli.providers.simulator.framing import stream_headers
from suanli.providers.simulator.profile import SimProfile
from suanli.providers.simulator.prompt import count_image_parts, count_prompt
from suanli.providers.simulator.protocol import (
    AnswerHeader,
    ChatRequest,
    InvalidRequest,
    ToolCall,
    models_body,
    parse_chat_request,
    usage_object,
)
from suanli.providers.simulator.state import DEFAULT_OPERATOR, OperatorState, SimState

REQUEST_BODY_BYTES_MAX = 8 * 1024 * 1024  # twice what the gateway forwards, so its limit is the one hit
HANG_S_MAX = 900.0  # a hanging request answers 504 after this: longer than any gateway timeout
_MS_PER_S = 1000
TOOL_ARGUMENT_CHARS_MAX = 200  # of the user's words put into a simulated tool call
OPENAI_IMAGE_PART = "image_url"  # the content part type of an image in an OpenAI message


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
    text answer and a tool call, since the cache sees only the prompt. The prompt is counted once however
    many choices there are; ``completion_tokens`` is their sum."""
    prompt = count_prompt(chat.messages, chat.definitions, count_image_parts(chat.messages, OPENAI_IMAGE_PART))
    prompt_tokens, cached_tokens = operator.measure_prompt(chat.model, prompt, profile)
    operator.stats.completion_tokens += completion_tokens
    if not profile.report_usage:
        return None
    return {**usage_object(prompt_tokens, completion_tokens, cached_tokens), **profile.usage_override}


async def _send(answer: Answer, stream: bool) -> Response:
    profile = answer.profile
    if stream:
        # The headers wait for the first token too, as they do at an operator still reading the prompt.
        await asyncio.sleep(profile.ttft_ms / _MS_PER_S)
        headers = stream_headers(profile.close_delimited)
        events = after_pause(stream_events(answer), profile.headers_first_ms)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    await asyncio.sleep(profile.ttft_ms / _MS_PER_S + generation_s(answer))
    return Response(whole_body(answer), media_type="application/json")


def _text_choice(profile: SimProfile, chat: ChatRequest, limit: int | None, index: int) -> ChoicePlan:
    completion = plan_completion(profile, chat.model, chat.messages, limit, index)
    deltas = [{"content": text} for text in completion.delta_texts()]
    opening = {"role": "assistant", "content": ""}
    return ChoicePlan(opening, deltas, completion.finish_reason, completion.text(), None, len(completion.tokens))


def _tool_call(chat: ChatRequest, tool: ToolCall, index: int) -> dict[str, Any]:
    """The call choice ``index`` makes: the user's words as the first parameter; its id is unique per choice."""
    last = chat.messages[-1].get("content")
    words = (
        last if isinstance(last, str) else " ".join(str(p.get("text", "")) for p in last or [] if isinstance(p, dict))
    )
    arguments = orjson.dumps({tool.argument: words[:TOOL_ARGUMENT_CHARS_MAX]}).decode()
    seed = arguments if index == 0 else f"{arguments}#{index}"
    call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
    return {"id": call_id, "type": "function", "function": {"name": tool.name, "arguments": arguments}}


def _tool_choice(chat: ChatRequest, tool: ToolCall, index: int) -> ChoicePlan:
    """A call of the offered tool, as a model answers when it decides to use one; its arguments arrive in two
    pieces, as real models stream them."""
    call = _tool_call(chat, tool, index)
    name, arguments = call["function"]["name"], call["function"]["arguments"]
    opening_call = {"index": 0, "id": call["id"], "type": "function", "function": {"name": name, "arguments": ""}}
    opening = {"role": "assistant", "content": None, "tool_calls": [opening_call]}
    half = len(arguments) // 2
    deltas = [
        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        for piece in (arguments[:half], arguments[half:])
    ]
    return ChoicePlan(opening, deltas, "tool_calls", None, [call], count_text(name + arguments))


def _plan_choices(profile: SimProfile, chat: ChatRequest, limit: int | None) -> list[ChoicePlan]:
    """The ``n`` choices: tool calls when a tool is to be called (each choice calls it), else text."""
    if chat.tool is not None:
        return [_tool_choice(chat, chat.tool, index) for index in range(chat.n)]
    return [_text_choice(profile, chat, limit, index) for index in range(chat.n)]


async def _parse(request: Request) -> ChatRequest | Response:
    try:
        return parse_chat_request(await read_body(request))
    except BodyTooLarge:
        message = f"The request body is larger than {REQUEST_BODY_BYTES_MAX} bytes."
        return invalid_request_response(message, code="body_too_large", status=413)
    except InvalidRequest as error:
        return invalid_request_response(error.message, param=error.param, code=error.code)


def _output_limit(profile: SimProfile, chat: ChatRequest) -> int | Response | None:
    """The answer's token limit, or OpenAI's 400 for a ``max_tokens`` above a refusing operator's cap."""
    try:
        return output_limit(profile, chat.max_tokens)
    except OverCap as over:
        message = (
            f"max_tokens is too large: {over.requested}. This model supports at most {over.cap} completion "
            f"tokens, whereas you provided {over.requested}."
        )
        return invalid_request_response(message, param=chat.max_tokens_param, code="invalid_value")


async def _fault(request: Request, operator: OperatorState, profile: SimProfile) -> Response | None:
    """The injected error or hang this request gets, or None to answer it."""
    if operator.draw_error():
        operator.stats.errors_injected += 1
        return injected_error_response(profile.error_status)
    if profile.hang:
        operator.stats.hangs += 1
        if await _wait_for_disconnect(request):
            return Response(status_code=499)  # nobody is left to read it; uvicorn discards it
        return error_response(504, "The simulated operator hung.", "server_error", code="timeout")
    return None


async def chat_completions(request: Request) -> Response:
    operator = resolve_operator(request)
    if isinstance(operator, Response):
        return operator
    chat = await _parse(request)
    if isinstance(chat, Response):
        return chat
    profile = operator.profile  # this request keeps these knobs if the control API changes them later
    limit = _output_limit(profile, chat)  # refused like a malformed request: not counted, no error draw
    if isinstance(limit, Response):
        return limit
    operator.stats.requests += 1
    operator.note_model(chat.model)
    fault = await _fault(request, operator, profile)
    if fault is not None:
        return fault
    choices = _plan_choices(profile, chat, limit)
    usage = _measure_usage(operator, profile, chat, sum(plan.completion_tokens for plan in choices))
    header = AnswerHeader(f"chatcmpl-sim-{secrets.token_hex(12)}", int(time.time()), chat.model)
    return await _send(Answer(operator, profile, header, choices, usage, chat.include_usage), chat.stream)


async def list_models(request: Request) -> Response:
    operator = resolve_operator(request)
    if isinstance(operator, Response):
        return operator
    body = models_body(operator.name, operator.model_names(), sim_state(request).started_s)
    return Response(body, media_type="application/json")
