"""Reading a client's chat request: parse the JSON once, check only what the gateway relies on.

The body is parsed with orjson into plain dicts and forwarded with its unknown fields intact; a heavy
validation layer would cost more than the rest of the hot path, and the upstream validates the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from suanli.errors import BadRequest
from suanli.limits import CHOICES_MAX, MAX_TOKENS_DEFAULT_CAP, MESSAGES_COUNT_MAX


@dataclass(slots=True)
class ChatRequest:
    body: dict[str, Any]  # the client's request; forwarded with only model and stream options changed
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool  # the client asked for the usage chunk at the end of a stream
    max_output_tokens: int | None
    kind: str = "chat"  # "chat"; "embedding": no output tokens to reserve for; "image"
    choices: int = 1  # ``n``: answers generated for the prompt, each up to ``max_output_tokens``
    body_bytes: int = 0  # the size of the client's body as sent (whether to count it off the event loop)
    image: ImageSpec | None = None
    protocol: str = "openai"  # the protocol the client speaks
    native_body: dict[str, Any] | None = None  # the client's own body, when ``body`` is its OpenAI translation


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """What an image request asks for; each offer declares the tokens one such image is charged as."""

    size: str
    quality: str | None
    count: int


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise BadRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def parse_chat_request(raw: bytes) -> ChatRequest:
    request = chat_request_from(parse_json_object(raw))
    request.body_bytes = len(raw)
    return request


def chat_request_from(body: dict[str, Any]) -> ChatRequest:
    """Check an OpenAI chat request body (parsed, or translated from another protocol)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string.", code="missing_field", param="model")
    messages = _messages(body.get("messages"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false.", code="invalid_field", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object.", code="invalid_field", param="stream_options")
    include_usage = bool(stream and options and options.get("include_usage") is True)
    return ChatRequest(body, model, messages, stream, include_usage, _max_output(body), choices=_choices(body))


def _choices(body: dict[str, Any]) -> int:
    value = body.get("n", 1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= CHOICES_MAX:
        raise BadRequest(f"'n' must be an integer from 1 to {CHOICES_MAX}.", code="invalid_field", param="n")
    return value


def _messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise BadRequest("'messages' is required.", code="missing_field", param="messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", code="invalid_field", param="messages")
    if len(messages) > MESSAGES_COUNT_MAX:
        raise BadRequest(
            f"'messages' holds more than {MESSAGES_COUNT_MAX} messages.",
            code="invalid_field",
            param="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                f"messages[{index}] must be an object with a 'role'.",
                code="invalid_field",
                param=f"messages[{index}]",
            )
    return messages


def _max_output(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_TOKENS_DEFAULT_CAP:
            raise BadRequest(
                f"'{name}' must be an integer from 1 to {MAX_TOKENS_DEFAULT_CAP}.",
                code="invalid_field",
                param=name,
            )
        return value
    return None


def parse_embedding_request(raw: bytes) -> ChatRequest:
    """An OpenAI embeddings request, as a request with its input as messages and no output to pay for."""
    body = parse_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string.", code="missing_field", param="model")
    texts = _embedding_inputs(body.get("input"))
    if body.get("stream"):
        raise BadRequest("Embeddings are not streamed.", code="invalid_field", param="stream")
    messages = [{"role": "user", "content": text} for text in texts]
    return ChatRequest(body, model, messages, False, False, None, kind="embedding")


def _embedding_inputs(value: Any) -> list[str]:
    if value is None:
        raise BadRequest("'input' is required.", code="missing_field", param="input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise BadRequest(
            "'input' must be a non-empty string or an array of non-empty strings.", code="invalid_field", param="input"
        )
    if len(texts) > MESSAGES_COUNT_MAX:
        raise BadRequest(f"'input' holds more than {MESSAGES_COUNT_MAX} texts.", code="invalid_field", param="input")
    return texts


IMAGE_SIZE_DEFAULT = "1024x1024"
IMAGES_PER_REQUEST_MAX = 10


def parse_image_request(raw: bytes) -> ChatRequest:
    """An OpenAI image generation request: the prompt is its input, the images its output tokens."""
    body = parse_json_object(raw)
    model, prompt = body.get("model"), body.get("prompt")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string.", code="missing_field", param="model")
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("'prompt' is required and must be a non-empty string.", code="missing_field", param="prompt")
    count = body.get("n", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= IMAGES_PER_REQUEST_MAX:
        raise BadRequest(f"'n' must be an integer from 1 to {IMAGES_PER_REQUEST_MAX}.", code="invalid_field", param="n")
    size, quality = body.get("size", IMAGE_SIZE_DEFAULT), body.get("quality")
    if not isinstance(size, str) or (quality is not None and not isinstance(quality, str)):
        raise BadRequest("'size' and 'quality' must be strings.", code="invalid_field", param="size")
    messages = [{"role": "user", "content": prompt}]
    return ChatRequest(body, model, messages, False, False, None, kind="image", image=ImageSpec(size, quality, count))
