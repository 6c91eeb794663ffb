"""An operator that echoes the request's credential, URL and host into its errors: none of it reaches a customer.

The operator here is a real HTTP server on a real socket (a Starlette app under uvicorn in a thread), as
careless as real ones: its 400 quotes the ``Authorization`` header it got, the URL and the host; its
Anthropic stream dies with an ``error`` event quoting ``x-api-key``. The gateway is the real one, started
as ``suanli serve``, with a catalog that points at it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import Gateway, Simulator, start_gateway, stop
from tests.providers.sim_server import bound_socket, serving
from tests.stores import inspect

START_TIMEOUT_S = 5.0
# Shaped like no known credential: only the gateway's knowledge of its own operator's key can hide it.
ECHO_KEY = "tiger-lantern-violet-42"
ECHO_ANTHROPIC_KEY = "sk-ant-api03-Zx81-echoed-credential-0042"
ECHO_CATALOG = """
[operators.echo]
base_url = "${SIM_URL}/v1"
api_key_env = "ECHO_KEY"
[operators.echoant]
protocol = "anthropic"
base_url = "${SIM_URL}"
api_key_env = "ECHO_ANTHROPIC_KEY"

[models.echo-chat]
[models.echo-claude]

[[offers]]
operator = "echo"
model = "echo-chat"
context_window = 8000
max_output_tokens = 100
price = { input = "1", output = "2" }

[[offers]]
operator = "echoant"
model = "echo-claude"
context_window = 8000
max_output_tokens = 100
price = { input = "1", output = "2" }
"""
MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "msg_echo",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 5, "output_tokens": 0},
    },
}


def _echo(request: Request) -> str:
    """What a careless server tells about a request: its URL, its host and its credentials."""
    headers = request.headers
    credentials = f"Authorization: {headers.get('authorization')} x-api-key: {headers.get('x-api-key')}"
    return f"request {request.url} to host {headers.get('host')} with {credentials}"


async def chat(request: Request) -> Response:
    body = await request.json()
    if body.get("stream"):  # vLLM's way of giving up mid-stream: an error object, then the end
        chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
        failure = {"error": {"message": f"{_echo(request)}: engine died", "type": "server_error", "code": 500}}

        async def events() -> AsyncIterator[bytes]:
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            yield b"data: " + orjson.dumps(failure) + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    message = f"{_echo(request)} failed: 'max_tokens' is too large"
    error = {"message": message, "type": "invalid_request_error", "code": "context_length_exceeded"}
    return JSONResponse({"error": error}, 400)


def _sse(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def messages(request: Request) -> Response:
    body = await request.json()
    error = {"type": "error", "error": {"type": "overloaded_error", "message": f"{_echo(request)}: overloaded"}}
    if not body.get("stream"):
        return JSONResponse(error, 400)

    async def events() -> AsyncIterator[bytes]:
        yield _sse("message_start", MESSAGE_START)
        yield _sse("error", error)

    return StreamingResponse(events(), media_type="text/event-stream")


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": []})


ECHO_APP = Starlette(
    routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(ECHO_APP, log_config=None, log_level="warning"))
    with serving(server, bound_socket()) as url:
        yield url


@pytest.fixture(scope="module")
def echo_gateway(echo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ECHO_KEY", ECHO_KEY)
        env.setenv("ECHO_ANTHROPIC_KEY", ECHO_ANTHROPIC_KEY)
        running = start_gateway(tmp_path_factory.mktemp("echo"), Simulator(echo_url), catalog_text=ECHO_CATALOG)
    try:
        yield running
    finally:
        stop(running.process)


def assert_nothing_secret(text: str, echo_url: str) -> None:
    host_port = echo_url.removeprefix("http://")
    for secret in (ECHO_KEY, ECHO_ANTHROPIC_KEY, host_port, host_port.split(":")[1], "127.0.0.1", "Zx81"):
        assert secret not in text


def test_an_operators_400_reaches_the_client_without_its_credential(
    echo_gateway: Gateway, echo_url: str, unique: str
) -> None:
    key = echo_gateway.account(unique)
    body = {"model": "echo-chat", "messages": [{"role": "user", "content": "Hi"}]}
    response = httpx.post(
        f"{echo_gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "upstream_rejected"
    assert error["message"].startswith("Operator echo rejected the request (HTTP 400, context_length_exceeded): ")
    assert error["message"].endswith("failed: 'max_tokens' is too large")  # what helps the customer stays
    assert_nothing_secret(response.text, echo_url)
    assert key not in response.text


def test_an_anthropic_operators_error_reaches_the_client_without_its_credential(
    echo_gateway: Gateway, echo_url: str, unique: str
) -> None:
    key = echo_gateway.account(unique)
    body = {"model": "echo-claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
    response = httpx.post(f"{echo_gateway.url}/v1/messages", json=body, headers={"x-api-key": key})
    assert response.status_code == 400 and "overloaded" in response.json()["error"]["message"]
    assert_nothing_secret(response.text, echo_url)


def test_an_error_event_mid_stream_reaches_the_client_without_its_credential(
    echo_gateway: Gateway, echo_url: str, unique: str
) -> None:
    key = echo_gateway.account(unique)
    body = {"model": "echo-claude", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream("POST", f"{echo_gateway.url}/v1/messages", json=body, headers={"x-api-key": key}) as response:
        text = response.read().decode()
    assert "event: error" in text and "Operator echoant failed mid-stream: " in text and "overloaded" in text
    assert_nothing_secret(text, echo_url)


def test_an_openai_error_object_mid_stream_reaches_the_client_without_its_credential(
    echo_gateway: Gateway, echo_url: str, unique: str
) -> None:
    key = echo_gateway.account(unique)
    body = {"model": "echo-chat", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{echo_gateway.url}/v1/chat/completions", json=body, headers=headers) as response:
        text = response.read().decode()
    assert '"code":"stream_cut"' in text and "failed mid-stream: " in text and "engine died" in text
    assert_nothing_secret(text, echo_url)


def test_the_operators_credential_is_not_in_the_gateways_database_either(echo_gateway: Gateway) -> None:
    # Attempts and usage are recorded with outcome labels, never the operator's text.
    conn = inspect(echo_gateway.database)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert "upstream_rejected" in dump and ECHO_KEY not in dump and ECHO_ANTHROPIC_KEY not in dump
