"""Counting a prompt without taking the event loop from other tenants.

A prompt of a few megabytes takes the tokenizer a good part of a second, and the event loop serves every
tenant: counted on it, one such request stalls all the others. So:

1. A request is first bounded from its text's length alone, with no tokenizer: no token of cl100k is
   longer than ``TOKEN_CHARS_MAX`` characters, so a text of N characters is at least N / 128 tokens. A
   request that bound already refuses is refused at once: too long for every offer's context window
   (400), or more than a pay-as-you-go wallet could pay for even that many tokens (402).
2. What passes is counted: on the loop when small (the usual case, and cheaper than a thread hand-off),
   else in a worker thread, at most ``COUNTING_THREADS_MAX`` at a time, waiting at most
   ``COUNTING_WAIT_S`` for one (then 503). The tokenizer releases the GIL while it works, and a long text
   is counted in pieces (``metering.tokenizer``), so the loop keeps running meanwhile; the thread runs at
   a lower CPU priority, so on a busy machine the loop's thread comes first. A count that passes the
   largest context window on offer stops there: the prompt is refused whatever its exact size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from suanli.catalog import Offer
from suanli.errors import BadRequest, PaymentRequired, ServiceUnavailable
from suanli.ledger import Balance
from suanli.limits import COUNT_ON_LOOP_BYTES_MAX, COUNTING_THREADS_MAX, COUNTING_WAIT_S
from suanli.metering import count_request
from suanli.pricing.prices import Prices

COUNTING_THREAD_NICE = 10  # how much lower a counting thread's CPU priority is than the event loop's

TOKEN_CHARS_MAX = 128  # the longest token of cl100k_base, in characters (and in bytes)


def text_chars(messages: Sequence[Mapping[str, Any]]) -> int:
    """Characters of the messages' texts (content strings and parts, names, tool-call arguments): a walk
    over the structure, no tokenizer. A lower bound on the text a tokenizer will see."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p["text"]) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
                total += len(function["arguments"])
    return total


def tokens_at_least(messages: Sequence[Mapping[str, Any]]) -> int:
    """The fewest tokens the messages can be, from their length alone."""
    return -(-text_chars(messages) // TOKEN_CHARS_MAX)


def refuse_early(
    plan: Sequence[Offer],
    tokens_min: int,
    wallet: Balance | None,
    prices_now: Mapping[str, Prices],
) -> None:
    """Refuse a request its lower bound already rules out, before any counting: no offer's context window
    holds it (400), or ``wallet`` (given for a pay-as-you-go account) can't pay for that many input tokens
    at the cheapest input price on offer (402). Nothing is written either way."""
    if plan and tokens_min > max(offer.context_window_tokens for offer in plan):
        raise BadRequest(
            f"The prompt takes at least {tokens_min} tokens; the largest context window on offer is "
            f"{max(offer.context_window_tokens for offer in plan)}.",
            code="context_length_exceeded",
            param="messages",
        )
    if wallet is None or not plan:
        return
    cheapest = min(min(p.input_nano, p.cached_input_nano, p.cache_write_nano) for p in prices_now.values())
    if wallet.available < tokens_min * cheapest:
        raise PaymentRequired(
            f"Insufficient balance: this prompt alone takes at least {tokens_min} tokens, more than the account's "
            "available balance pays for. Top up. Nothing was charged."
        )


def _lower_priority() -> None:
    """A counting thread yields the CPU to the event loop's thread (Linux schedules threads one by one)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COUNTING_THREAD_NICE)


class PromptCounter:
    """Counts prompts on the loop when small, in a few worker threads of lower priority when large."""

    def __init__(self) -> None:
        self._threads = asyncio.Semaphore(COUNTING_THREADS_MAX)
        self._pool = ThreadPoolExecutor(COUNTING_THREADS_MAX, "suanli-count", initializer=_lower_priority)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def is_large(body_bytes: int, messages: Sequence[Mapping[str, Any]]) -> bool:
        """Whether to count off the loop: by the body's size when known (its text can't be longer, JSON only
        adds to it), else by walking the messages' texts."""
        return (body_bytes or text_chars(messages)) > COUNT_ON_LOOP_BYTES_MAX

    async def count(
        self, body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], body_bytes: int, above: int | None = None
    ) -> int:
        """``metering.count_request`` of the request, off the loop if it is large; with ``above`` (the
        largest context window on offer), a large count stops once past it."""
        if not self.is_large(body_bytes, messages):
            return count_request(body, messages)
        try:
            async with asyncio.timeout(COUNTING_WAIT_S):
                await self._threads.acquire()
        except TimeoutError:
            raise ServiceUnavailable(
                "The platform is counting other large prompts; retry shortly.", code="overloaded"
            ) from None
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, count_request, body, messages, above)
        finally:
            self._threads.release()
