"""OpenAI-compatible operators (DeepSeek, Zhipu GLM, Qwen, vLLM, Ollama, the simulator) over aiohttp.

One long-lived ``aiohttp.ClientSession`` per operator keeps a pool of keep-alive connections. aiohttp is
chosen over httpx for the hot path: it costs several times less CPU per request (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp

from suanli.catalog import Operator
from suanli.errors import UpstreamError, UpstreamTimeout
from suanli.limits import UPSTREAM_BODY_BYTES_MAX, UPSTREAM_CONNECTIONS_PER_OPERATOR_MAX

STREAM_READ_BYTES = 64 * 1024


class AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse, operator: str) -> None:
        self._response = response
        self._operator = operator
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            if (self._response.content_length or 0) > UPSTREAM_BODY_BYTES_MAX:
                raise UpstreamError(f"operator {self._operator} sent an answer larger than allowed")
            body = await self._response.content.read(UPSTREAM_BODY_BYTES_MAX + 1)
            if len(body) > UPSTREAM_BODY_BYTES_MAX:
                raise UpstreamError(f"operator {self._operator} sent an answer larger than allowed")
            return body
        except TimeoutError as exc:
            raise UpstreamTimeout(f"operator {self._operator} stopped answering") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"operator {self._operator} broke off its answer") from exc
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises UpstreamError/UpstreamTimeout if the stream breaks."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(f"operator {self._operator} stream went idle") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"operator {self._operator} broke off the stream", code="stream_cut") from exc

    def close(self) -> None:
        self._response.close()


class OpenAICompatUpstream:
    def __init__(self, operator: Operator) -> None:
        self.operator = operator.name
        self._base_url = operator.base_url
        self._timeouts = operator.timeouts
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if operator.api_key:
            self._headers["Authorization"] = f"Bearer {operator.api_key}"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily so that it binds to the serving event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS_PER_OPERATOR_MAX, ttl_dns_cache=300)
            t = self._timeouts
            timeout = aiohttp.ClientTimeout(total=t.total_s, sock_connect=t.connect_s, sock_read=t.idle_s)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self._headers, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def send(self, path: str, body: bytes) -> AiohttpResponse:
        url = self._base_url + path
        try:
            async with asyncio.timeout(self._timeouts.first_byte_s):
                response = await self._client().post(url, data=body)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"operator {self.operator} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"operator {self.operator} is unreachable", code="upstream_unreachable") from exc
        return AiohttpResponse(response, self.operator)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let aiohttp close its transports before the loop stops
            self._session = None
