"""Simulated embeddings (``POST /v1/embeddings``): deterministic unit vectors, usage by the tokenizer.

A text's vector is a function of (seed, model, text) alone, so equal texts embed equally and tests can
compare answers. Usage is reported as OpenAI does: ``prompt_tokens`` and ``total_tokens``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from suanli.metering.tokenizer import count_text
from suanli.providers.simulator.chat import BodyTooLarge, read_body, resolve_operator
from suanli.providers.simulator.errors import injected_error_response, invalid_request_response

EMBEDDING_DIMENSIONS_DEFAULT = 256
EMBEDDING_DIMENSIONS_MAX = 4096
EMBEDDING_INPUTS_MAX = 2048


class _Invalid(Exception):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _inputs(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise _Invalid("'input' must be a non-empty string or array of non-empty strings.", "input")
    if len(texts) > EMBEDDING_INPUTS_MAX:
        raise _Invalid(f"'input' holds more than {EMBEDDING_INPUTS_MAX} texts.", "input")
    return texts


def _dimensions(value: Any) -> int:
    if value is None:
        return EMBEDDING_DIMENSIONS_DEFAULT
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= EMBEDDING_DIMENSIONS_MAX:
        raise _Invalid(f"'dimensions' must be an integer from 1 to {EMBEDDING_DIMENSIONS_MAX}.", "dimensions")
    return value


def vector(seed: int, model: str, text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(f"{seed}\0{model}\0{text}".encode()).digest()
    rng = random.Random(digest)
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def _encoded(values: list[float], encoding_format: Any) -> list[float] | str:
    if encoding_format == "base64":  # what the openai SDK asks for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


async def embeddings(request: Request) -> Response:
    operator = resolve_operator(request)
    if isinstance(operator, Response):
        return operator
    try:
        body = orjson.loads(await read_body(request))
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise _Invalid("'model' is required.", "model")
        texts, dimensions = _inputs(body.get("input")), _dimensions(body.get("dimensions"))
    except BodyTooLarge:
        return invalid_request_response("The request body is too large.", code="body_too_large", status=413)
    except orjson.JSONDecodeError:
        return invalid_request_response("The request body is not valid JSON.", code="invalid_json")
    except _Invalid as error:
        return invalid_request_response(str(error), param=error.param, code="invalid_value")
    operator.stats.requests += 1
    if operator.draw_error():
        operator.stats.errors_injected += 1
        return injected_error_response(operator.profile.error_status)
    seed, model = operator.profile.seed, body["model"]
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encoded(vector(seed, model, t, dimensions), body.get("encoding_format")),
        }
        for i, t in enumerate(texts)
    ]
    tokens = sum(count_text(t) for t in texts)
    operator.stats.prompt_tokens += tokens
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return Response(
        orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage}), media_type="application/json"
    )
