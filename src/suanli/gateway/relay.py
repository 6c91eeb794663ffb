"""Relaying an upstream's SSE stream to the client, event by event, and settling it exactly once.

Bytes are forwarded as they arrive, cut only at event boundaries. Real operators end a stream in several
ways, and all of them are a normal end: ``[DONE]``; or a chunk with a ``finish_reason`` for each of the
request's ``n`` answers, then the end of the body (chunked, or the connection closed), with no
``[DONE]``; or a broken connection after that final chunk. Only a body that ends before the operator's
final event is a cut.

The operator's usage, whether it comes as a chunk of its own or on the finish chunk, is read and never
forwarded as it came. After the settlement, the client gets the platform's own ending: the usage chunk
with the cost as charged (when it asked for usage: the reported usage, or the local estimate marked
``estimated``), then ``[DONE]``; so a client that saw the end of the stream knows its charge is durable.
When the upstream breaks off, the client gets an error event and pays for what it received; when the
client goes away, the upstream call is closed and the client pays for what was delivered. Where the
upstream reported no usage, the charge is the prompt as counted at admission plus the tokens of the text
delivered, marked estimated (docs/billing.md).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import orjson

from suanli.errors import SuanliError, UpstreamError
from suanli.gateway.health import Outcome
from suanli.gateway.lifecycle import Call, Settlement, settle
from suanli.gateway.platform import Platform
from suanli.gateway.sanitize import operator_error
from suanli.limits import STREAM_DELIVERED_BYTES_KEPT_MAX, STREAM_EVENT_BYTES_MAX
from suanli.metering import delivered_texts, estimate_usage, usage_from_openai
from suanli.money import nano_to_cny
from suanli.pricing import TokenUsage
from suanli.providers.base import UpstreamResponse

DONE_PREFIX = b"data: [DONE]"
DONE_EVENT = b"data: [DONE]\n\n"
CHUNK_HEADER_FIELDS = ("id", "object", "created", "model", "system_fingerprint")


def _may_finish(event: bytes) -> bool:
    """Whether a chunk may carry a finish_reason that is not null (then it is parsed). Byte counts, not a
    regular expression: this runs for every event of every stream."""
    named = event.count(b'"finish_reason"')
    return named > 0 and named != event.count(b'"finish_reason":null') + event.count(b'"finish_reason": null')


def error_event(exc: SuanliError) -> bytes:
    body = {"error": {"message": exc.message, "type": exc.type, "param": None, "code": exc.code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def parse_data(event: bytes) -> Any:
    """The JSON of an event's ``data:`` line, or None if it has none that parses."""
    start = event.find(b"data:")
    if start < 0:
        return None
    try:
        return orjson.loads(event[start + 5 :])
    except orjson.JSONDecodeError:
        return None


class StreamRelay:
    """An OpenAI-protocol operator's stream, relayed to an OpenAI client."""

    def __init__(self, platform: Platform, call: Call, response: UpstreamResponse) -> None:
        self._platform = platform
        self._call = call
        self._response = response
        self._buffer = b""
        self._delivered: list[bytes] = []
        self._delivered_bytes = 0
        self._usage: TokenUsage | None = None
        self._reported: dict[str, Any] | None = None  # the operator's usage object as it came
        # The id, model and creation time of the operator's chunks, for the usage chunk the platform adds.
        self._header: dict[str, Any] = {
            "id": "chatcmpl-" + call.request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.request.model,
        }
        self._header_read = False
        self._finished_choices: set[int] = set()
        self._ended = False  # the operator's end event ([DONE]) arrived
        self._released = False
        self._seen_first_chunk = False
        self._upstream_error: SuanliError | None = None  # what the operator said when it gave up mid-stream
        self._final_usage = TokenUsage()  # what was settled, and whether it was counted locally
        self._final_estimated = False

    async def events(self) -> AsyncIterator[bytes]:
        error: SuanliError | None = None
        try:
            opening = self._opening()
            if opening:
                yield opening
            async for chunk in self._response.chunks():
                out = self._feed(chunk)
                if out:
                    yield out
                if self._ended and self._call.open:
                    yield await self._end_normally()
        except SuanliError as exc:
            error = exc
        except BaseException:
            self._leave()  # the client went away, or the server is cancelling us
            raise
        self._release()
        if not self._call.open:
            return
        if self._finished:  # the final event came; the body's end, however it came, is no cut
            yield await self._end_normally()
            return
        error = error or self._cut_error()
        self._platform.health.of(self._call.offer).record(Outcome(ok=False, reason=error.code))
        await self._settle("cut_short", 502, error.code)
        yield self._error_event(error)

    @property
    def _finished(self) -> bool:
        """Every answer the request asked for has its finish chunk."""
        return len(self._finished_choices) >= self._call.request.choices

    async def _end_normally(self) -> bytes:
        try:
            settlement = await self._settle("ok", 200)
        except SuanliError as exc:  # the store failed for good; the sweep resolves the reservation
            return self._error_event(exc)
        return self._closing(settlement)

    def _release(self) -> None:
        """Close the upstream call and end its in-flight count, once."""
        if self._released:
            return
        self._released = True
        self._response.close()
        self._platform.health.of(self._call.offer).finish()

    def close(self) -> None:
        """Release what the call holds, once, however the stream ended or if it never started: the
        upstream call, the offer's in-flight count, and (if it is still open) the reservation, charged for
        what was delivered. The response calls it in its ``finally``; calling it again does nothing."""
        self._leave()

    def _leave(self) -> None:
        self._release()
        if self._call.open:
            self._platform.spawn(self._settle("client_gone", 499))

    def _cut_error(self) -> SuanliError:
        return self._upstream_error or UpstreamError("The operator ended the stream early.", code="stream_cut")

    def _estimate(self) -> TokenUsage:
        """The usage of a stream whose upstream reported none: the prompt as counted, the text delivered."""
        return estimate_usage(self._call.prompt_tokens, delivered_texts(self._delivered))

    # The client's protocol. OpenAI clients get the operator's events as they are.
    def _opening(self) -> bytes:
        return b""

    def _closing(self, settlement: Settlement | None) -> bytes:
        """The platform's usage chunk, if the client asked for usage, then ``[DONE]``."""
        if not self._call.request.include_usage or settlement is None:
            return DONE_EVENT
        usage = settlement_usage(self._reported, settlement, self._final_estimated)
        chunk = {**self._header, "choices": [], "usage": usage, "provider": self._call.offer.operator}
        return b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE_EVENT

    def _error_event(self, error: SuanliError) -> bytes:
        return error_event(error)

    def _feed(self, chunk: bytes) -> bytes:
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
        while not self._ended and (end := buffer.find(b"\n\n", start)) >= 0:
            event = self._event(buffer[start : end + 2])
            if event:
                out.append(event)
            start = end + 2
        self._buffer = b"" if self._ended else buffer[start:]
        if len(self._buffer) > STREAM_EVENT_BYTES_MAX:
            raise SuanliError("The operator sent an event larger than allowed.", code="stream_event_too_large")
        return b"".join(out)

    def _deliver(self, event: bytes) -> None:
        if self._delivered_bytes < STREAM_DELIVERED_BYTES_KEPT_MAX:
            self._delivered.append(event)
            self._delivered_bytes += len(event)

    def _event(self, event: bytes) -> bytes | None:
        if event.startswith(DONE_PREFIX):
            self._ended = True
            return None  # the platform's own [DONE] follows the settlement
        has_usage = b'"usage":{' in event or b'"usage": {' in event
        if b'"error"' in event and b'"choices"' not in event and self._operator_failed(event):
            return None  # the client gets the platform's error, sanitized, when the stream ends
        if not has_usage and not _may_finish(event):
            if self._delivered_bytes < STREAM_DELIVERED_BYTES_KEPT_MAX:  # inline: this runs for every event
                self._delivered.append(event)
                self._delivered_bytes += len(event)
            return event
        data = parse_data(event)
        if not isinstance(data, dict):
            return event
        self._note_final(data)
        if not has_usage or not isinstance(data.get("usage"), dict):
            self._deliver(event)
            return event
        self._reported = data.pop("usage")
        self._usage = usage_from_openai(self._reported)
        if not data.get("choices"):
            return None  # the usage chunk: the client gets the platform's, with the cost, at the end
        event = b"data: " + orjson.dumps(data) + b"\n\n"  # a finish chunk that carried the usage, without it
        self._deliver(event)
        return event

    def _operator_failed(self, event: bytes) -> bool:
        """An error object mid-stream (vLLM and others send one, then stop): kept, sanitized, as the cut's
        reason, since its text may echo the operator's own credentials."""
        data = parse_data(event)
        if not isinstance(data, dict) or "error" not in data:
            return False
        operator = self._platform.catalog.operators[self._call.offer.operator]
        detail = operator_error(data, operator).message
        self._upstream_error = UpstreamError(f"Operator {operator.name} failed mid-stream: {detail}", code="stream_cut")
        return True

    def _note_final(self, data: Mapping[str, Any]) -> None:
        """Remember the chunks' header and which answers have finished."""
        if not self._header_read:
            self._header_read = True
            self._header.update({name: data[name] for name in CHUNK_HEADER_FIELDS if name in data})
        for choice in data.get("choices") or ():
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                index = choice.get("index", 0)
                self._finished_choices.add(index if isinstance(index, int) else 0)

    async def _settle(self, outcome: str, http_status: int, error_code: str = "") -> Settlement | None:
        if not self._call.open:
            return None
        usage, estimated = self._usage, False
        if usage is None:
            usage, estimated = self._estimate(), True
        if outcome == "ok" and estimated:
            outcome = "ok_estimated"
        self._final_usage, self._final_estimated = usage, estimated
        return await settle(
            self._platform,
            self._call,
            usage,
            estimated=estimated,
            outcome=outcome,
            http_status=http_status,
            error_code=error_code,
        )


def settlement_usage(reported: Mapping[str, Any] | None, settlement: Settlement, estimated: bool) -> dict[str, Any]:
    """The usage object a client gets: the operator's as it came, or the local count in its shape, with
    the cost as charged."""
    if reported is not None and not estimated:
        usage = dict(reported)
    else:
        tokens = settlement.usage
        prompt, completion = tokens.input + tokens.cached_input, tokens.output + tokens.reasoning
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        usage["estimated"] = True
    usage["cost"] = nano_to_cny(settlement.cost_nano)
    return usage


class StreamTranslator(Protocol):
    """Turns an OpenAI stream into another protocol's events (e.g. ``providers.anthropic_translate``)."""

    def start(self) -> bytes: ...

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]: ...

    def finish(self, usage: TokenUsage, extra: Mapping[str, Any] | None = None) -> list[bytes]: ...

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

    def _closing(self, settlement: Settlement | None) -> bytes:
        extra: dict[str, Any] = {}
        if settlement is not None:
            extra["cost"] = nano_to_cny(settlement.cost_nano)
            if self._final_estimated:
                extra["estimated"] = True
        return b"".join(self._translator.finish(self._final_usage, extra))

    def _error_event(self, error: SuanliError) -> bytes:
        return self._translator.error(self._error_type(error), error.message)

    def _event(self, event: bytes) -> bytes | None:
        if event.startswith(DONE_PREFIX):
            self._ended = True
            return None
        data = parse_data(event)
        if not isinstance(data, dict):
            return None  # comments and keep-alives have no counterpart
        if isinstance(data.get("usage"), dict):
            self._reported = data["usage"]
            self._usage = usage_from_openai(data["usage"])
        if data.get("choices"):
            self._note_final(data)
            self._deliver(event)
        return b"".join(self._translator.feed(data)) or None
