"""Simulated image generation (``POST /v1/images/generations``): ``n`` small PNGs and OpenAI-style usage.

The picture is the same one-pixel PNG every time: what the simulator plays is the metering, not the
art. Usage is reported as gpt-image models do (``input_tokens``, ``output_tokens``); the gateway charges
images at the rate each offer declares, whatever an operator reports for them.
"""

from __future__ import annotations

import base64
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from suanli.metering.tokenizer import count_text
from suanli.providers.simulator.chat import BodyTooLarge, read_body, resolve_operator
from suanli.providers.simulator.errors import injected_error_response, invalid_request_response

ONE_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
IMAGES_MAX = 10
REPORTED_TOKENS_PER_IMAGE = 1056  # what the simulator reports; the gateway uses the offer's own rate


async def generations(request: Request) -> Response:
    operator = resolve_operator(request)
    if isinstance(operator, Response):
        return operator
    try:
        body = orjson.loads(await read_body(request))
    except BodyTooLarge:
        return invalid_request_response("The request body is too large.", code="body_too_large", status=413)
    except orjson.JSONDecodeError:
        return invalid_request_response("The request body is not valid JSON.", code="invalid_json")
    prompt, count = (body.get("prompt"), body.get("n", 1)) if isinstance(body, dict) else (None, None)
    if not isinstance(prompt, str) or not prompt:
        return invalid_request_response("'prompt' is required.", param="prompt", code="missing_required_parameter")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= IMAGES_MAX:
        return invalid_request_response(f"'n' must be from 1 to {IMAGES_MAX}.", param="n", code="invalid_value")
    operator.stats.requests += 1
    if operator.draw_error():
        operator.stats.errors_injected += 1
        return injected_error_response(operator.profile.error_status)
    picture = base64.b64encode(ONE_PIXEL_PNG).decode()
    input_tokens, output_tokens = count_text(prompt), count * REPORTED_TOKENS_PER_IMAGE
    answer = {
        "created": int(time.time()),
        "data": [{"b64_json": picture, "revised_prompt": prompt} for _ in range(count)],
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }
    return Response(orjson.dumps(answer), media_type="application/json")
