"""Relaying an upstream's SSE stream to the client, event by event, and settling it exactly once.

Bytes are forwarded as they arrive, cut only at event boundaries; only the usage event is parsed and
re-encoded (to add the cost, or dropped when the client did not ask for usage). The stream is settled:
- on ``[DONE]``: before ``[DONE]`` is forwarded, from the upstream's usage, so a client that saw the end
  of the stream knows its charge is durable;
- when the upstream breaks off: the client gets an error event and pays for what it received;
- when the client goes away: the upstream call is closed and the client pays for what was delivered.
Where the upstream reported no usage, the charge is the prompt as counted at admission plus the tokens
of the text delivered, and the usage event is marked estimated (docs/billing.md).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import orjson

from suanli.errors import SuanliError, UpstreamError
from suanli.gateway.health import Outcome
from suanli.gateway.lifecycle import Call, settle
from suanli.gateway.platform import Platform
from suanli.limits import STREAM_DELIVERED_BYTES_KEPT_MAX, STREAM_EVENT_BYTES_MAX
from suanli.metering import delivered_text, estimate_usage, usage_from_openai
from suanli.money import nano_to_cny
from suanli.pricing import TokenUsage, charge
from suanli.providers.base import UpstreamResponse

DONE_PREFIX = b"data: [DONE]"


def error_event(exc: SuanliError) -> bytes:
    body = {"error": {"message": exc.message, "type": exc.type, "param": None, "code": exc.code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


class StreamRelay:
    def __init__(self, platform: Platform, call: Call, response: UpstreamResponse) -> None:
        self._platform = platform
        self._call = call
        self._response = response
        self._buffer = b""
        self._delivered: list[bytes] = []
        self._delivered_bytes = 0
        self._usage: TokenUsage | None = None
        self._outcome = "client_gone"
        self._error: SuanliError | None = None
        self._seen_first_chunk = False
        self._final_usage = TokenUsage()

    async def events(self) -> AsyncIterator[bytes]:
        opening = self._opening()
        if opening:
            yield opening
        try:
            async for chunk in self._response.chunks():
                for out in self._feed(chunk):
                    if self._is_end(out):
                        await self._settle("ok", 200)
                        yield self._closing(out)
                    else:
                        yield out
            if not self._call.settled:  # the upstream ended without its end event
                self._error = self._cut_error()
        except SuanliError as exc:
            self._error = exc
        finally:
            self._response.close()
            self._end_health()
            if not self._call.settled and self._error is None:
                self._platform.spawn(self._settle("client_gone", 499))  # we are being cancelled
        if self._error is not None and not self._call.settled:
            await self._settle("cut_short", 502, self._error.code)
            yield self._error_event(self._error)

    # The upstream's protocol: OpenAI's ends with [DONE].
    def _is_end(self, event: bytes) -> bool:
        return event.startswith(DONE_PREFIX)

    def _cut_error(self) -> SuanliError:
        return UpstreamError("The operator ended the stream early.", code="stream_cut")

    def _estimate(self) -> TokenUsage:
        """The usage of a stream whose upstream reported none: the prompt as counted, the text delivered."""
        return estimate_usage(self._call.prompt_tokens, delivered_text(self._delivered))

    # The client's protocol. OpenAI clients get the operator's events as they are.
    def _opening(self) -> bytes:
        return b""

    def _closing(self, done: bytes) -> bytes:
        return done

    def _error_event(self, error: SuanliError) -> bytes:
        return error_event(error)

    def _end_health(self) -> None:
        health = self._platform.health.of(self._call.offer)
        health.finish()
        if self._error is not None:  # the operator broke its stream: a failure for its breaker
            health.record(Outcome(ok=False, reason=self._error.code))

    def _feed(self, chunk: bytes) -> list[bytes]:
        """Split what arrived into whole events; return what to forward now."""
        if not self._seen_first_chunk:
            self._seen_first_chunk = True
            ttft_ms = (time.perf_counter_ns() - self._call.started_ns) / 1e6
            self._platform.health.of(self._call.offer).record_ttft(ttft_ms)
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            event = self._event(buffer[start : end + 2])
            if event:
                out.append(event)
            start = end + 2
        self._buffer = buffer[start:]
        if len(self._buffer) > STREAM_EVENT_BYTES_MAX:
            raise SuanliError("The operator sent an event larger than allowed.", code="stream_event_too_large")
        return _coalesce(out, self._is_end)

    def _event(self, event: bytes) -> bytes | None:
        if b'"usage":{' in event or b'"usage": {' in event:
            return self._usage_event(event)
        if not event.startswith(DONE_PREFIX) and self._delivered_bytes < STREAM_DELIVERED_BYTES_KEPT_MAX:
            self._delivered.append(event)
            self._delivered_bytes += len(event)
        return event

    def _usage_event(self, event: bytes) -> bytes | None:
        try:
            data: Any = orjson.loads(event[event.index(b"data:") + 5 :])
        except (ValueError, orjson.JSONDecodeError):
            return event
        if not isinstance(data, dict) or not isinstance(data.get("usage"), dict):
            return event
        self._usage = usage_from_openai(data["usage"])
        if data.get("choices"):
            self._delivered.append(event)
        elif not self._call.request.include_usage:
            return None  # the client did not ask for the usage chunk; the gateway did
        data["usage"]["cost"] = nano_to_cny(charge(self._call.quote, self._usage).cost_nano)
        data["provider"] = self._call.offer.operator
        return b"data: " + orjson.dumps(data) + b"\n\n"

    async def _settle(self, outcome: str, http_status: int, error_code: str = "") -> None:
        if self._call.settled:
            return
        usage, estimated = self._usage, False
        if usage is None:
            usage, estimated = self._estimate(), True
        if outcome == "ok" and estimated:
            outcome = "ok_estimated"
        self._final_usage = usage
        await settle(self._platform, self._call, usage, estimated=estimated, outcome=outcome,
                     http_status=http_status, error_code=error_code)  # fmt: skip


def _coalesce(events: list[bytes], is_end: Callable[[bytes], bool]) -> list[bytes]:
    """Join consecutive plain events into one write; keep the end event apart so settlement precedes it."""
    out: list[bytes] = []
    run: list[bytes] = []
    for event in events:
        if is_end(event):
            if run:
                out.append(b"".join(run))
                run = []
            out.append(event)
        else:
            run.append(event)
    if run:
        out.append(b"".join(run))
    return out


class StreamTranslator(Protocol):
    """Turns an OpenAI stream into another protocol's events (e.g. ``providers.anthropic_translate``)."""

    def start(self) -> bytes: ...

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]: ...

    def finish(self, usage: TokenUsage) -> list[bytes]: ...

    def error(self, error_type: str, message: str) -> bytes: ...


class TranslatingRelay(StreamRelay):
    """A relay for clients of another protocol: every upstream event is parsed and re-encoded."""

    def __init__(
        self,
        platform: Platform,
        call: Call,
        response: UpstreamResponse,
        translator: StreamTranslator,
        error_type: Callable[[SuanliError], str],
    ) -> None:
        super().__init__(platform, call, response)
        self._translator = translator
        self._error_type = error_type

    def _opening(self) -> bytes:
        return self._translator.start()

    def _closing(self, done: bytes) -> bytes:
        return b"".join(self._translator.finish(self._final_usage))

    def _error_event(self, error: SuanliError) -> bytes:
        return self._translator.error(self._error_type(error), error.message)

    def _event(self, event: bytes) -> bytes | None:
        if event.startswith(DONE_PREFIX):
            return event
        try:
            data: Any = orjson.loads(event[event.index(b"data:") + 5 :])
        except (ValueError, orjson.JSONDecodeError):
            return None  # comments and keep-alives have no counterpart
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("usage"), dict):
            self._usage = usage_from_openai(data["usage"])
        if data.get("choices") and self._delivered_bytes < STREAM_DELIVERED_BYTES_KEPT_MAX:
            self._delivered.append(event)
            self._delivered_bytes += len(event)
        return b"".join(self._translator.feed(data)) or None
