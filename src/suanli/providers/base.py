"""The seam between the gateway and any upstream: one small interface, like httpx's transport.

``Upstream.send`` posts a request body to a path of the operator's API and returns once the response
headers have arrived; the body is then read whole (``read``) or chunk by chunk (``chunks``). Failures to
reach the operator raise ``UpstreamError`` or ``UpstreamTimeout``; an HTTP error answer is a response
like any other, for the caller to judge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class Upstream(Protocol):
    operator: str

    async def send(self, path: str, body: bytes) -> UpstreamResponse: ...

    async def probe(self, path: str, timeout_s: float) -> bool | None: ...  # None: no verdict (pool busy)

    async def close(self) -> None: ...
