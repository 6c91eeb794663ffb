"""A body trickled after a complete head is cut off by the body deadline with 408, in the JSON shape;
a body that arrives in time, however it is split, is read whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.api.errors import handle_suanli_error
from suanli.api.middleware.body_timeout import BodyTimeoutMiddleware
from suanli.errors import RequestTimeout, SuanliError
from suanli.gateway.messages import anthropic_error

DEADLINE_S = 0.3


async def echo(request: Request) -> Response:
    return Response(await request.body())


APP = Starlette(
    routes=[Route("/echo", echo, methods=["POST"])],
    middleware=[Middleware(BodyTimeoutMiddleware, body_timeout_s=DEADLINE_S)],
    exception_handlers={SuanliError: handle_suanli_error},
)


def post(pieces: list[bytes], pause_s: float) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            await asyncio.sleep(pause_s)
            yield piece

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://gw") as client:
            return await client.post("/echo", content=body())

    return asyncio.run(main())


def test_a_body_in_time_is_read_whole() -> None:
    response = post([b"one ", b"two ", b"three"], pause_s=0.01)
    assert response.status_code == 200 and response.content == b"one two three"


def test_a_trickled_body_gets_408_in_the_json_shape() -> None:
    response = post([b"x"] * 10, pause_s=0.1)  # a second in all, past the deadline
    assert response.status_code == 408
    assert orjson.loads(response.content)["error"]["code"] == "body_timeout"


def test_an_anthropic_client_gets_the_408_in_its_own_shape() -> None:
    assert anthropic_error(RequestTimeout("late")) == (408, "invalid_request_error")
