"""The OpenAI chat-completions wire format, as the simulator reads and writes it.

Parsing is deliberately narrow and cheap: only the fields the simulator acts on are checked, the rest of
a request is accepted as an operator would accept it. Bodies are built as plain dicts and encoded with
orjson once; the shapes follow what OpenAI sends (``usage: null`` on every chunk but the last when usage
is requested, an empty ``choices`` list on the usage chunk), because clients and the gateway parse them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from suanli.providers.simulator.prompt import definition_texts

SYSTEM_FINGERPRINT = "fp_suanli_sim"
STREAM_DONE_EVENT = b"data: [DONE]\n\n"
SIM_N_MAX = 8  # choices per request; OpenAI allows 128, but more would only measure the simulator


class InvalidRequest(Exception):
    """A request the simulator refuses with 400, described the way OpenAI describes it."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class ToolCall:
    """The tool the simulator calls: it answers a user turn with a call whenever tools are offered."""

    name: str
    argument: str  # the first parameter of the tool's schema, given the user's words as its value


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    tool: ToolCall | None = None
    n: int = 1
    max_tokens_param: str | None = None  # the field ``max_tokens`` came from, which an error names
    definitions: tuple[str, ...] = ()  # tools, tool_choice, response_format: JSON the prompt holds too


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {error}", code="invalid_json"
        ) from error
    if not isinstance(parsed, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return parsed


def _parse_messages(value: object) -> list[dict[str, Any]]:
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages", code="invalid_value")
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"Invalid 'messages[{index}]': expected an object with a string 'role'.",
                param=f"messages[{index}]",
                code="invalid_value",
            )
    return value


def _parse_model(value: object) -> str:
    if value is None:
        raise InvalidRequest("You must provide a model parameter.", param="model", code="missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise InvalidRequest("'model' must be a non-empty string.", param="model", code="invalid_type")
    return value


def _parse_positive_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"Invalid '{name}': expected an integer of at least 1.", param=name, code="invalid_value")
    return value


def _parse_flag(name: str, value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean.", param=name, code="invalid_type")
    return value


def _parse_include_usage(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options", code="invalid_type")
    return _parse_flag("stream_options.include_usage", value.get("include_usage"))


def _parse_n(value: object) -> int:
    n = _parse_positive_int("n", value)
    if n is not None and n > SIM_N_MAX:
        message = f"Invalid 'n': integer above maximum value. Expected a value <= {SIM_N_MAX}, but got {n} instead."
        raise InvalidRequest(message, param="n", code="integer_above_max_value")
    return 1 if n is None else n


def _smallest_limit(fields: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The smaller of ``max_tokens`` and ``max_completion_tokens``, and the name of the field it came from."""
    given = [
        (limit, name)
        for name in ("max_tokens", "max_completion_tokens")
        if (limit := _parse_positive_int(name, fields.get(name))) is not None
    ]
    return min(given) if given else (None, None)


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate the fields the simulator acts on; raise InvalidRequest describing the first problem."""
    fields = _parse_object(body)
    model = _parse_model(fields.get("model"))
    messages = _parse_messages(fields.get("messages"))
    n = _parse_n(fields.get("n"))
    max_tokens, max_tokens_param = _smallest_limit(fields)
    stream = _parse_flag("stream", fields.get("stream"))
    include_usage = _parse_include_usage(fields.get("stream_options"))
    tool = _tool_to_call(fields.get("tools"), fields.get("tool_choice"), messages)
    definitions = definition_texts(fields.get("tools"), fields.get("tool_choice"), fields.get("response_format"))
    return ChatRequest(
        model, messages, stream, stream and include_usage, max_tokens, tool, n, max_tokens_param, tuple(definitions)
    )


def _tool_to_call(tools: object, choice: object, messages: list[dict[str, Any]]) -> ToolCall | None:
    """Which tool to call: the one ``tool_choice`` names, else the first; none after a tool's result
    (then the simulator answers in text, closing the round trip) or when ``tool_choice`` is "none"."""
    if not isinstance(tools, list) or not tools or choice == "none" or messages[-1].get("role") != "user":
        return None
    functions = [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if not functions:
        raise InvalidRequest("'tools' must be a list of function tools.", param="tools", code="invalid_value")
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    function = next((f for f in functions if f.get("name") == named), functions[0])
    properties = (function.get("parameters") or {}).get("properties") or {}
    argument = next(iter(properties), "input") if isinstance(properties, dict) else "input"
    return ToolCall(str(function.get("name", "tool")), str(argument))


def error_body(message: str, error_type: str, *, param: str | None, code: str | None) -> bytes:
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return orjson.dumps({"error": error})


def usage_object(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


@dataclass(frozen=True)
class AnswerHeader:
    """What every object of one answer repeats: its id, creation time and model."""

    completion_id: str
    created_s: int
    model: str

    def fields(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": kind,
            "created": self.created_s,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }


def choice_object(
    index: int, content: str | None, finish_reason: str, tool_calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One choice of a non-streamed answer."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def completion_body(header: AnswerHeader, choices: list[dict[str, Any]], usage: Mapping[str, Any] | None) -> bytes:
    answer = header.fields("chat.completion")
    answer["choices"] = choices
    if usage is not None:
        answer["usage"] = usage
    return orjson.dumps(answer)


@dataclass(frozen=True)
class ChunkUsage:
    """What a chunk says about usage: nothing (no field), OpenAI's ``usage: null``, or the usage itself."""

    null: bool = False
    usage: Mapping[str, Any] | None = None


NO_CHUNK_USAGE = ChunkUsage()


def chunk_event(
    header: AnswerHeader,
    index: int,
    delta: Mapping[str, Any],
    finish_reason: str | None,
    usage: ChunkUsage = NO_CHUNK_USAGE,
) -> bytes:
    """One SSE event carrying a chunk of choice ``index``."""
    chunk = header.fields("chat.completion.chunk")
    chunk["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    if usage.usage is not None:
        chunk["usage"] = usage.usage
    elif usage.null:
        chunk["usage"] = None
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def usage_event(header: AnswerHeader, usage: Mapping[str, Any]) -> bytes:
    chunk = header.fields("chat.completion.chunk")
    chunk["choices"] = []
    chunk["usage"] = usage
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def models_body(operator: str, models: list[str], created_s: int) -> bytes:
    data = [{"id": model, "object": "model", "created": created_s, "owned_by": operator} for model in models]
    return orjson.dumps({"object": "list", "data": data})
