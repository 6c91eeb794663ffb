"""Every error the simulator answers with, in the OpenAI error shape, and the one it raises on purpose.

The bodies are ``{"error": {"message", "type", "param", "code"}}`` because that is what the ``openai`` SDK
and the gateway parse. ``StreamDropped`` is not an answer: it is raised inside a streaming response to make
uvicorn close the connection mid-body, which is how the simulator plays an upstream that dies mid-stream.
"""

from __future__ import annotations

from starlette.responses import Response

from suanli.providers.simulator.protocol import error_body

RETRY_AFTER_S = 1  # what an injected 429 tells the client to wait

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_STATUS_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


class StreamDropped(Exception):
    """Raised on purpose to abort a streamed answer; the server's log filter keeps it out of the log."""


def error_response(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = error_body(message, error_type, param=param, code=code)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def injected_error_response(status: int) -> Response:
    """The answer of a request picked for failure by ``error_rate_percent``."""
    if status >= 500:
        error_type, code = "server_error", "server_error"
    else:
        error_type = _STATUS_TYPES.get(status, "invalid_request_error")
        code = _STATUS_CODES.get(status, "simulated_error")
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
    message = f"The simulated operator failed this request on purpose (HTTP {status})."
    return error_response(status, message, error_type, code=code, headers=headers)


def not_found_response(message: str, code: str | None = None) -> Response:
    return error_response(404, message, "invalid_request_error", code=code)


def invalid_request_response(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> Response:
    return error_response(status, message, "invalid_request_error", param=param, code=code)
