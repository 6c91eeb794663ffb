"""Translation between Anthropic's Messages API and OpenAI chat completions, with no I/O.

Coding tools (Claude Code, Cline...) speak Anthropic's protocol; every operator upstream speaks OpenAI's. A
Messages request becomes a chat.completions request (``anthropic_to_openai_request``); the answer comes back
as an Anthropic ``message`` (``openai_to_anthropic_message``) or, streamed, as Anthropic's server-sent events
(``anthropic_stream.AnthropicStreamTranslator``).

The protocols differ, and each loss is named where it happens: thinking blocks in the history, ``cache_control``
markers, ``top_k``, ``thinking`` and other settings have no OpenAI counterpart and are dropped; images a tool returns
travel in the user message that follows, because an OpenAI tool message holds only text; a system turn in the
middle of the conversation becomes user text, because many OpenAI-compatible servers take a system message only
first; Claude Code's billing line is cut from the system prompt; tools that Anthropic runs on its servers (web
search...) are left out; and a stop sequence cannot be reported, because OpenAI does not say which one matched.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any, Final

import orjson

from suanli.errors import BadRequest
from suanli.pricing import TokenUsage

# Text blocks joined into one OpenAI string (a system prompt, a tool result, an assistant turn) are kept apart
# by a blank line, so that neighbouring paragraphs do not run together.
TEXT_BLOCKS_SEPARATOR: Final = "\n\n"
# OpenAI's tool message has no error flag, so a failed tool result says so in its text.
TOOL_ERROR_PREFIX: Final = "Error: "
# Random bytes in an id made up for an answer that came without one: 24 hex characters, like Anthropic's ids.
GENERATED_ID_BYTES: Final = 12
# Claude Code (2.1) opens its system prompt with an attribution line for Anthropic's billing,
# "x-anthropic-billing-header: cc_version=2.1.197.e1a; cc_entrypoint=sdk-cli;", whose suffix (and, in some
# versions, a "cch=" field) changes from one conversation or request to the next. It means nothing to an
# operator's model, and at the very front of the prompt it defeats every operator's prefix cache, so the whole
# prompt would be billed uncached on every call. A system text that starts with it loses its first line.
BILLING_HEADER_PREFIX: Final = "x-anthropic-billing-header:"
# A system turn after the conversation began (Claude Code sends one with its "mid-conversation-system" beta)
# travels as user text in the wrapper Claude Code itself uses for such context: many OpenAI-compatible model
# servers refuse a system message that is not first (Qwen's chat templates) or silently drop it (Llama's), and a
# conversation ending in a system message leaves the model no user turn to answer. It joins the user message it
# follows, or else the next one, after that turn's tool results, which must directly follow the tool calls.
SYSTEM_TURN_TAG: Final = "system-reminder"

# Tools that Anthropic runs on its own servers. No operator can run them, so they are left out and the model
# answers without them; refusing the request instead would stop clients that offer one by default (the Cline CLI
# 3.0 sends web_search_20250305 with every request). Other typed tools (bash_..., text_editor_...) are run by the
# client but have no schema to give another model, and are refused.
SERVER_TOOL_TYPE_PREFIXES: Final = ("web_search_", "web_fetch_", "code_execution_")

_STOP_REASONS: Final[Mapping[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_TOOL_CHOICES: Final[Mapping[str, str]] = {"auto": "auto", "any": "required", "none": "none"}
# Assistant history blocks with no OpenAI counterpart. OpenAI-compatible reasoners (DeepSeek) reject their
# own reasoning when it is sent back, and the signatures are Anthropic's, meaningless to any operator.
_DROPPED_ASSISTANT_BLOCKS: Final = frozenset({"thinking", "redacted_thinking"})


# Request: Anthropic Messages -> OpenAI chat.completions.


def anthropic_to_openai_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI chat.completions request body for an Anthropic Messages request; ``BadRequest`` names the
    offending field when the request is malformed."""
    request: dict[str, Any] = {"model": _model(body.get("model"))}
    request["messages"] = _conversation(body.get("system"), body.get("messages"))
    request["max_tokens"] = _max_tokens(body.get("max_tokens"))
    request.update(_sampling(body))
    request.update(_tooling(body.get("tools"), body.get("tool_choice")))
    request.update(_streaming(body.get("stream")))
    request.update(_user(body.get("metadata")))
    # Every other field (``top_k``, ``thinking``, ``output_config``, ``cache_control``...) is dropped: OpenAI has
    # no counterpart, and the operator's model decides how to reason.
    return request


def without_billing_header(body: Mapping[str, Any]) -> dict[str, Any]:
    """An Anthropic request as it came, but with Claude Code's billing line cut from its system prompt: what an
    Anthropic-protocol operator should get, since its prefix cache suffers from the line as much as any."""
    system = body.get("system")
    if isinstance(system, str):
        return {**body, "system": _without_billing_header(system)}
    if not isinstance(system, list):
        return dict(body)
    blocks: list[Any] = []
    for block in system:
        text = block.get("text") if isinstance(block, dict) else None
        if not isinstance(text, str) or not text.startswith(BILLING_HEADER_PREFIX):
            blocks.append(block)  # anything malformed is the operator's to refuse
        elif rest := _without_billing_header(text):
            blocks.append({**block, "text": rest})
    return {**body, "system": blocks}


def _missing(param: str) -> BadRequest:
    return BadRequest(f"'{param}' is required.", code="missing_field", param=param)


def _invalid(param: str, expected: str) -> BadRequest:
    return BadRequest(f"'{param}' must be {expected}.", code="invalid_field", param=param)


def _string(value: Any, param: str) -> str:
    if value is None:
        raise _missing(param)
    if not isinstance(value, str):
        raise _invalid(param, "a string")
    return value


def _object(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        raise _missing(param)
    if not isinstance(value, dict):
        raise _invalid(param, "an object")
    return value


def _objects(value: Any, param: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object of the array ``value``, with its own parameter path (``param[i]``)."""
    if not isinstance(value, list):
        raise _invalid(param, "an array")
    for index, item in enumerate(value):
        yield f"{param}[{index}]", _object(item, f"{param}[{index}]")


def _block_type(block: Mapping[str, Any], param: str) -> str:
    return _string(block.get("type"), f"{param}.type")


def _unsupported(kind: str, param: str) -> BadRequest:
    return BadRequest(
        f"Content blocks of type {kind!r} are not supported here.", code="invalid_field", param=f"{param}.type"
    )


def _model(value: Any) -> str:
    model = _string(value, "model")
    if not model:
        raise _invalid("model", "a non-empty string")
    return model


def _max_tokens(value: Any) -> int:
    if value is None:
        raise _missing("max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("max_tokens", "a positive integer")
    return value


def _text_block(block: Mapping[str, Any], param: str) -> str:
    if _block_type(block, param) != "text":
        raise _invalid(f"{param}.type", "'text'")
    return _string(block.get("text"), f"{param}.text")


def _system_text(system: Any, param: str) -> str:
    """A system prompt (a string or text blocks) as one string, without Claude Code's billing line."""
    if isinstance(system, str):
        texts = [system]
    elif isinstance(system, list):
        texts = [_text_block(block, path) for path, block in _objects(system, param)]
    else:
        raise _invalid(param, "a string or an array of text blocks")
    return TEXT_BLOCKS_SEPARATOR.join(text for text in map(_without_billing_header, texts) if text)


def _without_billing_header(text: str) -> str:
    return text.partition("\n")[2] if text.startswith(BILLING_HEADER_PREFIX) else text


def _conversation(system: Any, messages: Any) -> list[dict[str, Any]]:
    """The OpenAI messages: one system message first (the system prompt, then any system turns that come before
    the first user or assistant turn; some operators accept only one, as a string), then the turns. A later system
    turn becomes text of a user message: the one it follows, else the next one."""
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "a non-empty array")
    system_texts = [] if system is None else [_system_text(system, "system")]
    turns: list[dict[str, Any]] = []
    reminders: list[dict[str, Any]] = []  # later system turns, as text parts waiting for a user message
    for param, message in _objects(messages, "messages"):
        role, content = _role_and_content(message, param)
        if role == "system":
            text = _system_text(content, f"{param}.content")
            if not turns:
                system_texts.append(text)
            elif text:
                reminders.append({"type": "text", "text": f"<{SYSTEM_TURN_TAG}>\n{text}\n</{SYSTEM_TURN_TAG}>"})
        elif role == "user":
            turns.extend(_with_leading_parts(_user_messages(content, param), reminders))
            reminders = []
        else:
            _append_parts(turns, reminders)
            reminders = []
            turns.append(_assistant_message(content, param))
    _append_parts(turns, reminders)
    system_text = TEXT_BLOCKS_SEPARATOR.join(text for text in system_texts if text)
    return [{"role": "system", "content": system_text}, *turns] if system_text else turns


def _role_and_content(message: Mapping[str, Any], param: str) -> tuple[str, Any]:
    role = message.get("role")
    if role is None:
        raise _missing(f"{param}.role")
    # Recent versions of the API (and of its SDK) accept system turns among the messages, text only.
    if role not in ("user", "assistant", "system"):
        raise _invalid(f"{param}.role", "'user', 'assistant' or 'system'")
    content = message.get("content")
    if content is None:
        raise _missing(f"{param}.content")
    return role, content


def _as_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _with_leading_parts(messages: list[dict[str, Any]], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user turn's messages with ``parts`` put first in its user message: after its tool messages, which must
    directly follow the assistant's tool calls."""
    if not parts:
        return messages
    if messages and messages[-1]["role"] == "user":
        last = messages[-1]
        return [*messages[:-1], {"role": "user", "content": [*parts, *_as_parts(last["content"])]}]
    return [*messages, {"role": "user", "content": _collapsed(parts)}]


def _append_parts(turns: list[dict[str, Any]], parts: list[dict[str, Any]]) -> None:
    """``parts`` added to the last message if it is a user message, else as a user message of their own."""
    if not parts:
        return
    last = turns[-1]
    if last["role"] == "user":
        last["content"] = [*_as_parts(last["content"]), *parts]
    else:
        turns.append({"role": "user", "content": _collapsed(parts)})


def _user_messages(content: Any, param: str) -> list[dict[str, Any]]:
    """One user turn: its tool results first, as the OpenAI tool messages that must directly follow the
    assistant's tool calls, then the rest of its content as one user message (when there is any)."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    translated: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block_param, block in _objects(content, f"{param}.content"):
        kind = _block_type(block, block_param)
        if kind == "tool_result":
            tool_message, images = _tool_result(block, block_param)
            translated.append(tool_message)
            parts.extend(images)
        elif kind == "text":
            parts.append({"type": "text", "text": _string(block.get("text"), f"{block_param}.text")})
        elif kind == "image":
            parts.append(_image_part(block, block_param))
        else:
            raise _unsupported(kind, block_param)
    if parts:
        translated.append({"role": "user", "content": _collapsed(parts)})
    return translated


def _collapsed(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone text part as a plain string, which every operator accepts; anything else as parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _tool_result(block: Mapping[str, Any], param: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The OpenAI tool message for a ``tool_result`` block, and the images it returned (for the user message)."""
    call_id = _string(block.get("tool_use_id"), f"{param}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        for inner_param, inner in _objects(content, f"{param}.content"):
            kind = _block_type(inner, inner_param)
            if kind == "text":
                texts.append(_string(inner.get("text"), f"{inner_param}.text"))
            elif kind == "image":
                images.append(_image_part(inner, inner_param))
            else:
                raise _unsupported(kind, inner_param)
    text = TEXT_BLOCKS_SEPARATOR.join(texts)
    if block.get("is_error") is True:
        text = TOOL_ERROR_PREFIX + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _image_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = _object(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type = _string(source.get("media_type"), f"{param}.source.media_type")
        data = _string(source.get("data"), f"{param}.source.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = _string(source.get("url"), f"{param}.source.url")
    elif kind is None:
        raise _missing(f"{param}.source.type")
    else:
        raise _invalid(f"{param}.source.type", "'base64' or 'url'")
    return {"type": "image_url", "image_url": {"url": url}}


def _assistant_message(content: Any, param: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block_param, block in _objects(content, f"{param}.content"):
        kind = _block_type(block, block_param)
        if kind == "text":
            texts.append(_string(block.get("text"), f"{block_param}.text"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, block_param))
        elif kind not in _DROPPED_ASSISTANT_BLOCKS:
            raise _unsupported(kind, block_param)
    # OpenAI wants text or tool calls: content may be null only beside tool calls.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": TEXT_BLOCKS_SEPARATOR.join(texts) if texts or not calls else None,
    }
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    call_id = _string(block.get("id"), f"{param}.id")
    name = _string(block.get("name"), f"{param}.name")
    arguments = orjson.dumps(_object(block.get("input"), f"{param}.input")).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    sampling: dict[str, Any] = {}
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(name, "a number")
        sampling[name] = value
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list):
            raise _invalid("stop_sequences", "an array of strings")
        if stops:
            sampling["stop"] = [_string(stop, f"stop_sequences[{index}]") for index, stop in enumerate(stops)]
    return sampling


def _tooling(tools: Any, tool_choice: Any) -> dict[str, Any]:
    """OpenAI's ``tools`` and ``tool_choice``; both are left out without tools, since OpenAI rejects an empty
    ``tools`` array and a ``tool_choice`` with nothing to choose from."""
    declared = [] if tools is None else list(_objects(tools, "tools"))
    translated = [_tool(tool, param) for param, tool in declared if not _is_server_tool(tool)]
    choice = None if tool_choice is None else _tool_choice(tool_choice)
    if not translated:
        return {}
    return {"tools": translated} if choice is None else {"tools": translated, "tool_choice": choice}


def _is_server_tool(tool: Mapping[str, Any]) -> bool:
    kind = tool.get("type")
    return isinstance(kind, str) and kind.startswith(SERVER_TOOL_TYPE_PREFIXES)


def _tool(tool: Mapping[str, Any], param: str) -> dict[str, Any]:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise BadRequest(
            f"Tool type {kind!r} is defined by Anthropic, with no schema an operator's model could use; declare "
            "the tool with a name and an input_schema.",
            code="invalid_field",
            param=f"{param}.type",
        )
    function: dict[str, Any] = {"name": _string(tool.get("name"), f"{param}.name")}
    description = tool.get("description")
    if description is not None:
        function["description"] = _string(description, f"{param}.description")
    function["parameters"] = _object(tool.get("input_schema"), f"{param}.input_schema")
    return {"type": "function", "function": function}


def _tool_choice(tool_choice: Any) -> str | dict[str, Any]:
    choice = _object(tool_choice, "tool_choice")
    kind = _string(choice.get("type"), "tool_choice.type")
    if kind == "tool":
        return {"type": "function", "function": {"name": _string(choice.get("name"), "tool_choice.name")}}
    if kind not in _TOOL_CHOICES:
        raise _invalid("tool_choice.type", "'auto', 'any', 'tool' or 'none'")
    return _TOOL_CHOICES[kind]


def _streaming(stream: Any) -> dict[str, Any]:
    if stream is None:
        return {}
    if not isinstance(stream, bool):
        raise _invalid("stream", "true or false")
    # The final usage chunk is what a streamed call is settled on.
    return {"stream": True, "stream_options": {"include_usage": True}} if stream else {"stream": False}


def _user(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    user_id = _object(metadata, "metadata").get("user_id")
    return {} if user_id is None else {"user": _string(user_id, "metadata.user_id")}


# Answer: OpenAI chat.completion -> Anthropic message.


def anthropic_usage(usage: TokenUsage) -> dict[str, int]:
    """Anthropic's usage object. Its ``input_tokens`` excludes cache reads, like our disjoint ``input``; its
    ``output_tokens`` includes the thinking, which we count apart as ``reasoning``."""
    return {
        "input_tokens": usage.input,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cached_input,
        "output_tokens": usage.output + usage.reasoning,
    }


def openai_to_anthropic_message(data: Mapping[str, Any], model: str, usage: TokenUsage) -> dict[str, Any]:
    """The Anthropic ``message`` for a non-streamed OpenAI ``chat.completion``, answered as ``model``."""
    choice = first_choice(data) or {}
    message = choice.get("message")
    content = _content_blocks(message if isinstance(message, Mapping) else {})
    used_tools = any(block["type"] == "tool_use" for block in content)
    return {
        "id": _message_id(data.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), used_tools),
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }


def first_choice(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Choice 0: the only one a Messages client asked for."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        return None
    return next((c for c in choices if isinstance(c, Mapping) and c.get("index", 0) == 0), None)


def generated_id(prefix: str) -> str:
    return prefix + secrets.token_hex(GENERATED_ID_BYTES)


def _message_id(upstream_id: Any) -> str:
    return "msg_" + upstream_id if isinstance(upstream_id, str) and upstream_id else generated_id("msg_")


def _content_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        # DeepSeek's reasoning; the empty signature marks it as not Anthropic's own.
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        blocks.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        blocks.extend(_tool_use_block(call) for call in calls if isinstance(call, Mapping))
    return blocks


def _tool_use_block(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    call_id = call.get("id")
    name = function.get("name")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else generated_id("toolu_"),
        "name": name if isinstance(name, str) else "",
        "input": _tool_input(function.get("arguments")),
    }


def _tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic wants. Models sometimes emit broken JSON; the client
    then still gets the text, under ``_raw``, instead of losing the call."""
    if isinstance(arguments, Mapping):
        return dict(arguments)  # a few operators send the object itself rather than its JSON
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def stop_reason(finish_reason: Any, used_tools: bool) -> str:
    reason = _STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    # Some OpenAI-compatible servers finish a tool-calling turn with "stop"; an Anthropic client runs the tools
    # of a turn that ends in "tool_use".
    return "tool_use" if used_tools and reason == "end_turn" else reason
