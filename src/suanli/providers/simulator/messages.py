"""The Anthropic Messages endpoint of a simulated operator (``POST /v1/messages``).

It answers as Anthropic's API does, so the demo can hold an operator that speaks Anthropic natively: a
``message`` object, or the event stream from ``message_start`` to ``message_stop``, and errors in the
``{"type": "error", "error": {...}}`` shape. Behind the protocol it is the chat endpoint: the request is
converted to chat messages, the same planner writes the text, the same prefix cache measures the cached
tokens, and the same knobs apply in the same order (injected error, hang, then the answer).

Anthropic splits the prompt's tokens into three classes that add up to the whole: read from the cache,
written to it (the prefix up to the last ``cache_control`` breakpoint, where not read), and the rest.
The prompt is counted as chat.py counts it (prompt.py): the tool definitions and an object
``tool_choice`` first, as Anthropic renders them before the system prompt, each image block as
IMAGE_PART_TOKENS, all scaled by the operator's ``prompt_tokens_percent``.

The wire-style knobs that apply here: ``stream_done`` false ends a stream after ``message_delta`` (no
``message_stop``), ``close_delimited`` frames a stream by closing the connection, and a refusing
``over_cap`` answers a ``max_tokens`` above ``output_cap_tokens`` with Anthropic's 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from suanli.errors import InvariantViolation, invariant
from suanli.metering.tokenizer import count_messages, count_text
from suanli.providers.simulator.chat import (  # shared with chat.py on purpose: one behaviour, two protocols
    _MS_PER_S,
    REQUEST_BODY_BYTES_MAX,
    TOOL_ARGUMENT_CHARS_MAX,
    BodyTooLarge,
    _wait_for_disconnect,
    read_body,
    sim_state,
)
from suanli.providers.simulator.chat_answer import after_pause, pace
from suanli.providers.simulator.completion import OverCap, output_limit, plan_completion
from suanli.providers.simulator.errors import RETRY_AFTER_S, StreamDropped
from suanli.providers.simulator.framing import stream_headers
from suanli.providers.simulator.profile import SimProfile
from suanli.providers.simulator.prompt import (
    IMAGE_PART_TOKENS,
    count_image_parts,
    count_prompt,
    definition_texts,
    definitions_tokens,
    scale_tokens,
)
from suanli.providers.simulator.protocol import InvalidRequest, ToolCall
from suanli.providers.simulator.state import DEFAULT_OPERATOR, OperatorState

ROLES = ("user", "assistant", "system")  # a system turn among the messages, as Claude Code sends one
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}  # the planner's finish reason → Anthropic's
IMAGE_BLOCK = "image"  # the content block type of an image in an Anthropic message
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class MessagesRequest:
    """The fields the simulator acts on; every message's content is a list of blocks."""

    model: str
    max_tokens: int
    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    stream: bool
    tool: ToolCall | None
    definitions: tuple[str, ...] = ()  # tools, tool_choice, response_format: JSON the prompt holds too


# --- Parsing: pure, raising InvalidRequest with Anthropic-style messages ("field: problem").


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}") from error
    if not isinstance(parsed, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return parsed


def _parse_blocks(where: str, content: object) -> list[dict[str, Any]]:
    """Content as a list of blocks: a string becomes one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: Input should be a string or a list of content blocks")
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"{where}.{index}: Input should be an object with a string 'type'")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.{index}.text: Field required")
    return content


def _parse_messages(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("messages: at least one message is required")
    parsed: list[dict[str, Any]] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidRequest(f"messages.{index}.role: Input should be 'user', 'assistant' or 'system'")
        where = f"messages.{index}.content"
        blocks = _parse_blocks(where, message.get("content"))
        if message["role"] == "system" and any(block["type"] != "text" for block in blocks):
            raise InvalidRequest(f"{where}: a system turn takes only text blocks")
        parsed.append({**message, "content": blocks})
    return parsed


def _parse_system(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    blocks = _parse_blocks("system", value)
    if any(block["type"] != "text" for block in blocks):
        raise InvalidRequest("system: only text blocks are allowed")
    return blocks


def _require(fields: Mapping[str, Any], name: str, kind: type) -> Any:
    value = fields.get(name)
    if value is None:
        raise InvalidRequest(f"{name}: Field required")
    # bool is a subclass of int, but `"max_tokens": true` is a mistake worth reporting.
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise InvalidRequest(f"{name}: Input should be a valid {kind.__name__}")
    return value


def parse_messages_request(body: bytes) -> MessagesRequest:
    """Validate the fields the simulator acts on; raise InvalidRequest describing the first problem."""
    fields = _parse_object(body)
    model = _require(fields, "model", str)
    max_tokens = _require(fields, "max_tokens", int)
    if not model:
        raise InvalidRequest("model: String should have at least 1 character")
    if max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 1")
    messages = _parse_messages(fields.get("messages"))
    system = _parse_system(fields.get("system"))
    stream = False if fields.get("stream") is None else _require(fields, "stream", bool)
    tool = _tool_to_call(fields.get("tools"), fields.get("tool_choice"), messages)
    definitions = definition_texts(fields.get("tools"), fields.get("tool_choice"), fields.get("response_format"))
    return MessagesRequest(model, max_tokens, system, messages, stream, tool, tuple(definitions))


def _last_turn(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last user or assistant turn: a system turn after it (Claude Code puts one after the user's
    prompt) is context for the model, not a turn to answer."""
    return next((message for message in reversed(messages) if message["role"] != "system"), None)


def _is_client_tool(tool: Mapping[str, Any]) -> bool:
    """A tool the client defines and runs. A typed tool (``web_search_20250305``, ``code_execution_...``,
    ``bash_...``) has no ``input_schema`` to fill, and the server ones run at Anthropic, never at the client,
    so the simulated model never calls one."""
    return tool.get("type") in (None, "custom")


def _tool_to_call(tools: object, choice: object, messages: list[dict[str, Any]]) -> ToolCall | None:
    """The named client tool (``tool_choice`` of type "tool") or the first; none after a ``tool_result`` (the
    simulator then answers in text, closing the round trip), when ``tool_choice`` is "none", or when the
    last turn is not the user's."""
    if tools is None or tools == []:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise InvalidRequest("tools: Input should be a list of tools, each with a string 'name'")
    offered = [tool for tool in tools if _is_client_tool(tool)]
    choice_fields = choice if isinstance(choice, dict) else {}
    last = _last_turn(messages)
    if not offered or choice_fields.get("type") == "none" or last is None or last["role"] != "user":
        return None
    if any(block["type"] == "tool_result" for block in last["content"]):
        return None
    tool = next((t for t in offered if t["name"] == choice_fields.get("name")), offered[0])
    schema = tool.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    argument = next(iter(properties), "input") if isinstance(properties, dict) else "input"
    return ToolCall(tool["name"], str(argument))


# --- Conversion and token accounting: pure.


def _block_text(block: Mapping[str, Any]) -> str:
    """What a tokenizer reads of a block: text, a tool call's name and input, a tool result's text."""
    kind = block["type"]
    if kind == "text":
        return str(block.get("text", ""))  # a tool result's nested blocks are not validated
    if kind == "tool_use":
        return f"{block.get('name', '')} {orjson.dumps(block.get('input', {})).decode()}"
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return "\n".join(_block_text(part) for part in content if isinstance(part, dict) and "type" in part)
        return content if isinstance(content, str) else ""
    return ""  # an image counts apart (IMAGE_PART_TOKENS); a document is not counted


def chat_messages(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request as chat messages: the system blocks as one system message, blocks as their text, tool
    results as tool messages. A system
    turn stays a system message where it stands, so the planner reads it as context and answers the last
    user turn before it (``echo:`` included), and the prompt's prefix stays as the client sent it."""
    converted = [{"role": "system", "content": "\n".join(_block_text(b) for b in system)}] if system else []
    for message in messages:
        blocks = message["content"]
        results = [b for b in blocks if b["type"] == "tool_result"]
        # Tool results are the tool's turn, as in the chat protocol: the planner answers the user's last words.
        converted.extend({"role": "tool", "content": _block_text(b)} for b in results)
        rest = [b for b in blocks if b["type"] != "tool_result"]
        if rest or not results:
            converted.append({"role": message["role"], "content": "\n".join(_block_text(b) for b in rest)})
    return converted


def _prefix_tokens(request: MessagesRequest, system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> int:
    """Tokens of a prompt prefix: the definitions (rendered first), then these system blocks and messages."""
    converted = count_messages(chat_messages(system, messages))
    images = IMAGE_PART_TOKENS * count_image_parts(messages, IMAGE_BLOCK)
    return definitions_tokens(request.definitions) + converted + images


def breakpoint_tokens(request: MessagesRequest) -> int:
    """Prompt tokens up to and including the last block marked ``cache_control`` (0 without one), in cl100k
    tokens; the definitions before the system prompt are part of every such prefix."""
    prefix: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
    for index, block in enumerate(request.system):
        if block.get("cache_control") is not None:
            prefix = (request.system[: index + 1], [])
    for m_index, message in enumerate(request.messages):
        for b_index, block in enumerate(message["content"]):
            if block.get("cache_control") is not None:
                cut = {**message, "content": message["content"][: b_index + 1]}
                prefix = (request.system, [*request.messages[:m_index], cut])
    return 0 if prefix is None else _prefix_tokens(request, *prefix)


def split_input_tokens(prompt_tokens: int, read_tokens: int, breakpoint: int) -> dict[str, int]:
    """Anthropic's three input classes: the breakpoint prefix not read from the cache is written to it."""
    read = min(read_tokens, prompt_tokens)
    created = min(max(0, breakpoint - read), prompt_tokens - read)
    usage = {
        "input_tokens": prompt_tokens - read - created,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
    }
    invariant(min(usage.values()) >= 0 and sum(usage.values()) == prompt_tokens, f"input classes {usage}")
    return usage


# --- Answers.


@dataclass(frozen=True)
class _Reply:
    operator: OperatorState
    profile: SimProfile
    message_id: str
    model: str
    block: dict[str, Any]  # the one content block, whole
    opening: dict[str, Any]  # the same block as ``content_block_start`` announces it, still empty
    deltas: list[dict[str, Any]]
    stop_reason: str
    usage: dict[str, Any]  # counts, but for the fields ``usage_override`` sets


def _measure_usage(
    operator: OperatorState, profile: SimProfile, request: MessagesRequest, output_tokens: int
) -> dict[str, Any]:
    """Usage as Anthropic reports it, counted into the operator's stats as chat.py counts it."""
    converted = chat_messages(request.system, request.messages)
    images = count_image_parts(request.messages, IMAGE_BLOCK)
    prompt = count_prompt(converted, request.definitions, images)
    prompt_tokens, read_tokens = operator.measure_prompt(request.model, prompt, profile)
    breakpoint = scale_tokens(breakpoint_tokens(request), profile.prompt_tokens_percent)
    usage = split_input_tokens(prompt_tokens, read_tokens, breakpoint)
    operator.stats.completion_tokens += output_tokens
    return {**usage, "output_tokens": output_tokens, **profile.usage_override}


def _text_reply(operator: OperatorState, profile: SimProfile, request: MessagesRequest) -> _Reply:
    converted = chat_messages(request.system, request.messages)
    completion = plan_completion(profile, request.model, converted, request.max_tokens)
    usage = _measure_usage(operator, profile, request, len(completion.tokens))
    deltas = [{"type": "text_delta", "text": text} for text in completion.delta_texts()]
    block = {"type": "text", "text": completion.text()}
    stop_reason = STOP_REASONS[completion.finish_reason]
    opening = {"type": "text", "text": ""}
    return _Reply(operator, profile, _message_id(), request.model, block, opening, deltas, stop_reason, usage)


def _tool_reply(operator: OperatorState, profile: SimProfile, request: MessagesRequest, tool: ToolCall) -> _Reply:
    """A call of the offered tool with the user's words as its first parameter, as chat.py's ``_tool_call``."""
    last = _last_turn(request.messages)
    if last is None:  # pragma: no cover - _tool_to_call offers a tool only after a user turn
        raise InvariantViolation("a tool is called only in answer to a user turn")
    words = chat_messages([], [last])[0]["content"]
    arguments = orjson.dumps({tool.argument: words[:TOOL_ARGUMENT_CHARS_MAX]}).decode()
    call_id = "toolu_sim_" + hashlib.sha256(arguments.encode()).hexdigest()[:24]
    opening = {"type": "tool_use", "id": call_id, "name": tool.name, "input": {}}
    half = len(arguments) // 2  # the input arrives in pieces, as real models send it
    deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in (arguments[:half], arguments[half:])]
    usage = _measure_usage(operator, profile, request, count_text(tool.name + arguments))
    block = {**opening, "input": orjson.loads(arguments)}
    return _Reply(operator, profile, _message_id(), request.model, block, opening, deltas, "tool_use", usage)


def _message_id() -> str:
    return f"msg_sim_{secrets.token_hex(12)}"


def _message(
    reply: _Reply, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": reply.message_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _event(kind: str, fields: Mapping[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


def _drop_if_due(reply: _Reply, deltas_sent: int) -> None:
    if reply.profile.drop_after_chunks == deltas_sent:
        reply.operator.stats.streams_dropped += 1
        raise StreamDropped(f"stream dropped after {deltas_sent} deltas")


async def _stream_events(reply: _Reply) -> AsyncIterator[bytes]:
    # Anthropic's message_start reports the input classes and an output of 1; message_delta the real output.
    yield _event("message_start", {"message": _message(reply, [], None, {**reply.usage, "output_tokens": 1})})
    yield _event("content_block_start", {"index": 0, "content_block": reply.opening})
    yield _event("ping", {})
    started_s = asyncio.get_running_loop().time()
    for index, delta in enumerate(reply.deltas):
        _drop_if_due(reply, index)
        await pace(started_s, index, reply.profile.tokens_per_s)
        yield _event("content_block_delta", {"index": 0, "delta": delta})
    _drop_if_due(reply, len(reply.deltas))
    yield _event("content_block_stop", {"index": 0})
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    yield _event("message_delta", {"delta": delta, "usage": {"output_tokens": reply.usage["output_tokens"]}})
    if reply.profile.stream_done:
        yield _event("message_stop", {})


async def _send(reply: _Reply, stream: bool) -> Response:
    profile = reply.profile
    if stream:
        # The headers wait for the first token too, as they do at an operator still reading the prompt.
        await asyncio.sleep(profile.ttft_ms / _MS_PER_S)
        headers = stream_headers(profile.close_delimited)
        events = after_pause(_stream_events(reply), profile.headers_first_ms)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    generation_s = len(reply.deltas) / profile.tokens_per_s if profile.tokens_per_s else 0
    await asyncio.sleep(profile.ttft_ms / _MS_PER_S + generation_s)
    body = _message(reply, [reply.block], reply.stop_reason, reply.usage)
    return Response(orjson.dumps(body), media_type="application/json")


# --- Errors and the handler.


def anthropic_error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    error_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _resolve_operator(request: Request) -> OperatorState | Response:
    name = request.path_params.get("operator", DEFAULT_OPERATOR)
    operator = sim_state(request).get(name)
    if operator is None:
        return anthropic_error_response(404, f"The simulated operator '{name}' does not exist.")
    return operator


async def _parse(request: Request) -> MessagesRequest | Response:
    try:
        return parse_messages_request(await read_body(request))
    except BodyTooLarge:
        return anthropic_error_response(413, f"The request body is larger than {REQUEST_BODY_BYTES_MAX} bytes.")
    except InvalidRequest as error:
        return anthropic_error_response(400, error.message)


def _over_cap_refusal(profile: SimProfile, request: MessagesRequest) -> Response | None:
    """Anthropic's 400 for a ``max_tokens`` above a refusing operator's output cap, else None.

    ``max_tokens`` is required here, so the cap never shortens an answer on its own; an honouring operator
    serves up to ``max_tokens``.
    """
    try:
        output_limit(profile, request.max_tokens)
    except OverCap as over:
        message = (
            f"max_tokens: {over.requested} > {over.cap}, which is the maximum allowed number of output tokens "
            f"for {request.model}"
        )
        return anthropic_error_response(400, message)
    return None


async def _fault(request: Request, operator: OperatorState, profile: SimProfile) -> Response | None:
    """The injected error or hang this request gets, in chat.py's order, or None to answer it."""
    if operator.draw_error():
        operator.stats.errors_injected += 1
        status = profile.error_status
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
        message = f"The simulated operator failed this request on purpose (HTTP {status})."
        return anthropic_error_response(status, message, headers)
    if profile.hang:
        operator.stats.hangs += 1
        if await _wait_for_disconnect(request):
            return Response(status_code=499)  # nobody is left to read it; uvicorn discards it
        return anthropic_error_response(504, "The simulated operator hung.")
    return None


async def messages(request: Request) -> Response:
    operator = _resolve_operator(request)
    if isinstance(operator, Response):
        return operator
    if not request.headers.get("anthropic-version"):  # as Anthropic's API does
        return anthropic_error_response(400, "anthropic-version: header is required")
    parsed = await _parse(request)
    if isinstance(parsed, Response):
        return parsed
    profile = operator.profile  # this request keeps these knobs if the control API changes them later
    refusal = _over_cap_refusal(profile, parsed)  # like a malformed request: not counted, no error draw
    if refusal is not None:
        return refusal
    operator.stats.requests += 1
    operator.note_model(parsed.model)
    fault = await _fault(request, operator, profile)
    if fault is not None:
        return fault
    if parsed.tool is not None:
        return await _send(_tool_reply(operator, profile, parsed, parsed.tool), parsed.stream)
    return await _send(_text_reply(operator, profile, parsed), parsed.stream)
