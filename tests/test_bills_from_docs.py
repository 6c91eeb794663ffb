"""An auditor's test: every bill recomputed from the rules as written, never from the pricing code.

The expected amounts come from docs/billing.md (*Counting the prompt*, *Quote, reserve, settle*, *When
things go wrong*), docs/plans.md (*The arithmetic, to the token and the nano*) and the test catalog's price
list read as docs/catalog.md says (CNY per million tokens, ``"0.2"`` → 200 nano per token; cached input and
cache write default to input, reasoning to output; margin default 10 %). Nothing here imports the
gateway's pricing, metering, economy or gateway packages: a rule the documents leave open is a finding,
not something to copy from the code. Prompts are counted with cl100k, as the documents tell an auditor.

Each scenario makes its random calls once (a module fixture, seeded ``random.Random``), and each rule is
then checked over all of them by its own test, so one rule that disagrees does not hide the others; a
failure lists every call that disagrees, with the numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import pytest

from suanli.money import cny_to_nano
from tests.billing_audit import (
    ESTIMATED_CALLS,
    OFFERS,
    PACK_ACCOUNTS,
    PACK_SMALL,
    PAYG_CALLS,
    PAYG_MODELS,
    ROUGH_TOKENIZER_CALLS,
    SEED,
    SHARED_SYSTEM,
    TOPUP_CNY,
    WALLET_CALLS_AFTER_PACK,
    WEIGHT_SCALE,
    Answer,
    Offer,
    Row,
    asked_max_tokens,
    assert_agree,
    chat_body,
    classes_of,
    count,
    event_classes,
    input_bound,
    list_price_nano,
    new_account,
    offers_of,
    output_bound,
    post_chat,
    prompt_count,
    quote_nano,
    reservation_nano,
    sent_max_tokens,
    tool,
    usage_events,
    wallet_of,
    words,
)
from tests.conftest import Gateway, Simulator


@pytest.fixture(scope="module")
def client(gateway: Gateway, simulator: Simulator) -> Iterator[httpx.Client]:
    for operator in ("alpha", "beta", "rough"):  # the default knobs, whatever an earlier test left set
        simulator.reset(operator)
    with httpx.Client(base_url=gateway.url, timeout=30.0) as http:
        yield http


# --- 1. Pay-as-you-go --------------------------------------------------------------------------------


@dataclass
class PaidCall:
    body: dict[str, Any]
    answer: Answer
    event: dict[str, Any]

    @property
    def offer(self) -> Offer:
        return OFFERS[self.event["offer"]]


@dataclass
class Run:
    account: str
    topup_nano: int
    calls: list[PaidCall]


def run_of(
    gateway: Gateway, account: str, sent: list[tuple[dict[str, Any], Answer]], topup_cny: str = TOPUP_CNY
) -> Run:
    events = usage_events(gateway, account, [answer.request_id for _, answer in sent])
    calls = [PaidCall(body, answer, events[answer.request_id]) for body, answer in sent]
    return Run(account, cny_to_nano(topup_cny), calls)


@pytest.fixture(scope="module")
def payg(gateway: Gateway, simulator: Simulator, client: httpx.Client) -> Run:
    rng = random.Random(SEED)
    account, key = new_account(gateway, "audit-payg", TOPUP_CNY)
    sent = []
    for index in range(PAYG_CALLS):
        model = PAYG_MODELS[index % len(PAYG_MODELS)]
        cap = max(o.max_output_tokens for o in offers_of(model))
        body = chat_body(rng, model, f"payg#{index}", cap)
        sent.append((body, post_chat(client, key, body)))
    try:
        for index in range(ROUGH_TOKENIZER_CALLS):
            sent.append(rough_tokenizer_call(simulator, client, key, rng, f"rough#{index}"))
    finally:
        simulator.reset("rough")
    return run_of(gateway, account, sent)


def rough_tokenizer_call(
    simulator: Simulator, client: httpx.Client, key: str, rng: random.Random, tag: str
) -> tuple[dict[str, Any], Answer]:
    """A call to an operator whose tokenizer counts up to 20 % less or 50 % more than cl100k. On styled-tight
    (margin 0) with a short answer, a count above the gateway's goes beyond the reservation: billing.md has
    the balance pay the excess."""
    model = rng.choice(["styled", "styled-tight"])
    simulator.set("rough", prompt_tokens_percent=rng.randint(80, 120) if model == "styled" else rng.randint(110, 150))
    body = chat_body(rng, model, tag, OFFERS[f"rough/{model}"].max_output_tokens, images=False)
    if model == "styled-tight":
        body.pop("max_completion_tokens", None)
        body["max_tokens"] = rng.randint(1, 5)
    return body, post_chat(client, key, body)


def test_each_call_is_charged_the_list_price_of_its_reported_usage(payg: Run) -> None:
    rows: list[Row] = []
    for index, call in enumerate(payg.calls):
        event, usage = call.event, call.answer.usage
        assert (event["outcome"], event["estimated"], event["uncharged_nano"]) == ("ok", False, 0), index
        assert event["prices_nano"] == call.offer.prices_nano, index
        assert call.answer.headers["x-suanli-offer"] == event["offer"], index
        price = list_price_nano(event_classes(event), call.offer)
        rows.append((index, price, event["cost_nano"]))
        if usage is not None:
            rows.append((index, classes_of(usage), event_classes(event)))
            rows.append((index, price, cny_to_nano(usage["cost"])))
        if not call.body["stream"]:
            rows.append((index, price, cny_to_nano(call.answer.headers["x-suanli-cost"])))
    assert_agree(rows)
    assert sum(call.event["cached_input_tokens"] > 0 for call in payg.calls) > 0  # cached prices were exercised
    assert sum(call.event["cost_nano"] > call.event["reserved_nano"] for call in payg.calls) > 0  # and excesses


def test_an_empty_tools_list_is_not_counted(gateway: Gateway, client: httpx.Client) -> None:
    """billing.md counts the JSON of the request's ``tools`` and ``functions`` lists "when not empty"."""
    rng = random.Random(SEED + 3)
    account, key = new_account(gateway, "audit-empty-tools", "10")
    sent = []
    for index, field_name in enumerate(["tools", "functions"] * 4):
        messages = [{"role": "user", "content": f"empty#{index} {words(rng, 1, 30)}"}]
        body = {"model": "styled", "messages": messages, field_name: [], "max_tokens": rng.randint(1, 2000)}
        sent.append((body, post_chat(client, key, body)))
    run = run_of(gateway, account, sent, topup_cny="10")
    assert_agree([(i, reservation_nano(call.body), call.event["reserved_nano"]) for i, call in enumerate(run.calls)])


def test_usage_is_shown_in_a_stream_only_when_asked(payg: Run) -> None:
    for index, call in enumerate(payg.calls):
        asked = not call.body["stream"] or "stream_options" in call.body
        assert (call.answer.usage is not None) == asked, index


def test_each_reservation_is_the_dearest_quote_of_the_counted_prompt(payg: Run) -> None:
    rows = [(index, reservation_nano(call.body), call.event["reserved_nano"]) for index, call in enumerate(payg.calls)]
    assert_agree(rows)


def test_a_stream_announces_its_reservation(payg: Run) -> None:
    rows = [
        (index, reservation_nano(call.body), cny_to_nano(call.answer.headers["x-suanli-reserved"]))
        for index, call in enumerate(payg.calls)
        if call.body["stream"]
    ]
    assert rows
    assert_agree(rows)


def test_the_operator_is_sent_the_bound_and_a_lowered_limit_is_announced(payg: Run) -> None:
    for index, call in enumerate(payg.calls):
        sent = sent_max_tokens(call.body, call.offer)
        asked = asked_max_tokens(call.body)
        clamped = call.answer.headers.get("x-suanli-max-tokens-clamped")
        assert clamped == (str(sent) if asked is not None and asked > sent else None), index
        if "tool_calls" not in call.answer.finish_reasons:  # the simulator never cuts a tool call's arguments
            completion = call.event["output_tokens"] + call.event["reasoning_tokens"]
            assert completion <= output_bound(call.body, call.offer), index


@pytest.mark.parametrize("run_name", ["payg", "estimated"])
def test_the_wallet_paid_exactly_the_sum_of_the_charges(
    gateway: Gateway, request: pytest.FixtureRequest, run_name: str
) -> None:
    run: Run = request.getfixturevalue(run_name)
    wallet = wallet_of(gateway, run.account)
    charged = sum(call.event["cost_nano"] for call in run.calls)
    assert (wallet["balance_nano"], wallet["reserved_nano"]) == (run.topup_nano - charged, 0)


# --- 2. A pack, then the wallet (plans.md, The arithmetic) -------------------------------------------


def weight_thousandths(text: str) -> int:
    value = Decimal(text) * WEIGHT_SCALE
    assert value == value.to_integral_value(), text
    return int(value)


def pack_weights(product: dict[str, Any]) -> dict[str, int]:
    """plans.md: cached input and cache write default to input's weight, reasoning to output's, else 1."""
    given = product.get("weights", {})
    weights = {
        "input": weight_thousandths(given.get("input", "1")),
        "output": weight_thousandths(given.get("output", "1")),
    }
    for name, default in (("cached_input", "input"), ("cache_write", "input"), ("reasoning", "output")):
        weights[name] = weight_thousandths(given[name]) if name in given else weights[default]
    return weights


PACK_WEIGHTS = pack_weights(PACK_SMALL)
PACK_OFFER = OFFERS["alpha/deepseek-v3.2"]  # the model's only offer, so the dearest candidate too


def most_draw(body: dict[str, Any]) -> int:
    w = PACK_WEIGHTS
    dearest_input = max(w["input"], w["cached_input"], w["cache_write"])
    dearest_output = max(w["output"], w["reasoning"])
    bounds = (
        input_bound(prompt_count(body), PACK_OFFER) * dearest_input + output_bound(body, PACK_OFFER) * dearest_output
    )
    return math.ceil(Fraction(bounds, WEIGHT_SCALE))


def weighted_thousandths(classes: dict[str, int]) -> int:
    return sum(tokens * PACK_WEIGHTS[name] for name, tokens in classes.items())


def usage_draw(classes: dict[str, int]) -> Fraction:
    """plans.md: a usage's draw is exact, a fraction."""
    return Fraction(weighted_thousandths(classes), WEIGHT_SCALE)


@dataclass
class Source:
    """One source's part in a call: within its reservation, and beyond it (plans.md, Beyond the reservation).

    A pack's figures are tokens, the wallet's nano-CNY; ``uncharged_nano`` is what the source could not pay.
    """

    reserved: int = 0
    used: int = 0
    overrun: int = 0
    charged: int = 0
    uncharged_nano: int = 0


@dataclass
class Funding:
    pack: Source
    wallet: Source


def reserve(body: dict[str, Any], pack_available: int) -> Funding:
    """plans.md, Reserving: the pack reserves its share of the most draw, the wallet the quote's share left."""
    most = most_draw(body)
    share = Fraction(1)
    pack_reserved = min(pack_available, math.ceil(most * share))
    share -= Fraction(pack_reserved, most)
    return Funding(Source(pack_reserved), Source(math.ceil(quote_nano(body, PACK_OFFER) * share)))


def settle(body: dict[str, Any], before: tuple[int, int], classes: dict[str, int]) -> Funding:
    """plans.md, Settling and Beyond the reservation; ``before`` is (pack tokens, wallet nano) available."""
    funding = reserve(body, before[0])
    pack, wallet = funding.pack, funding.wallet
    draw, cost = usage_draw(classes), list_price_nano(classes, PACK_OFFER)
    share = Fraction(1)
    pack.used = min(pack.reserved, math.floor(draw * share))
    # plans.md: a pack whose reservation holds its draw for the share covers the rest of the call; else the
    # share falls by what it reserved over the draw.
    share = Fraction(0) if draw == 0 or pack.reserved >= draw * share else share - pack.reserved / draw
    value = math.floor(cost * share)
    if wallet.reserved:  # the wallet pays its whole share, beyond its reservation from its balance
        wallet.used = min(value, wallet.reserved)
        wallet.overrun = value - wallet.used
        wallet.charged = min(wallet.overrun, before[1] - wallet.reserved)
        wallet.uncharged_nano = wallet.overrun - wallet.charged
    elif math.floor(draw * share):  # funded by the pack alone: it draws the rest of its share from what it has
        pack.overrun = math.floor(draw * share)
        pack.charged = min(pack.overrun, before[0] - pack.reserved)
        pack.uncharged_nano = value - value * pack.charged // pack.overrun
    return funding


def funding_of(event: dict[str, Any]) -> Funding:
    """The event's legs. A source that reserved nothing may be listed with zeros or left out."""
    sources = {"pack": Source(), "wallet": Source()}
    for leg in event["funding"] or []:
        source = sources[leg["source"]]
        if "overrun" in leg:
            source.overrun, source.charged = leg["overrun"], leg["charged"]
            source.uncharged_nano = leg["uncharged_nano"]
        else:
            assert (source.reserved, source.used) == (0, 0), event["funding"]  # one leg per source
            source.reserved, source.used = leg["reserved"], leg["used"]
    return Funding(sources["pack"], sources["wallet"])


@dataclass
class PackCall:
    body: dict[str, Any]
    answer: Answer
    before: tuple[int, int]  # the pack's tokens and the wallet's nano, available before the call
    after: tuple[int, int]
    event: dict[str, Any] = field(default_factory=dict)

    @property
    def settled(self) -> Funding:
        return settle(self.body, self.before, event_classes(self.event))

    @property
    def split_on_a_rounded_draw(self) -> bool:
        """Pack and wallet share a usage whose draw is not a whole number of tokens: the share the wallet pays
        is then ``1 - reserved / draw`` with the exact draw, as plans.md writes it (checked apart, below)."""
        funding, classes = self.settled, event_classes(self.event)
        return funding.pack.used > 0 and funding.wallet.used > 0 and weighted_thousandths(classes) % WEIGHT_SCALE != 0


def beyond_the_bounds(body: dict[str, Any], rng: random.Random) -> None:
    """Make the call a tool call with max_tokens 1: the simulator writes the call's arguments whatever the
    limit, as an operator that ignores max_tokens would, so the usage goes beyond the reservation."""
    body.pop("max_completion_tokens", None)
    body.update(max_tokens=1, tools=[tool(rng, 0)], tool_choice="auto")
    body.pop("functions", None)


def holdings(gateway: Gateway, client: httpx.Client, account: str, key: str) -> tuple[int, int]:
    response = client.get("/v1/plans", headers={"Authorization": f"Bearer {key}"})
    (pack,) = response.json()["packs"]
    return int(pack["available"]), int(wallet_of(gateway, account)["available_nano"])


def spend_a_pack(gateway: Gateway, client: httpx.Client, rng: random.Random, tag: str) -> list[PackCall]:
    """Buy pack-small, call until it is spent (split calls on the way), then a few calls from the wallet."""
    account, key = new_account(gateway, "audit-pack", "5")
    bought = client.post("/v1/packs", json={"product": "pack-small"}, headers={"Authorization": f"Bearer {key}"})
    assert bought.status_code == 201, bought.text
    states = [holdings(gateway, client, account, key)]
    assert states[0] == (PACK_SMALL["tokens"], cny_to_nano("5") - cny_to_nano(PACK_SMALL["price"]))
    sent: list[tuple[dict[str, Any], Answer]] = []
    while sum(state[0] == 0 for state in states) <= WALLET_CALLS_AFTER_PACK:
        assert len(sent) < 200, "the pack was never spent"
        body = chat_body(rng, PACK_OFFER.model, f"{tag}#{len(sent)}", 150, images=rng.random() < 0.05)
        if body["messages"][0]["role"] != "system" and rng.random() < 0.8:  # cached input: draws of tenths
            body["messages"].insert(0, {"role": "system", "content": SHARED_SYSTEM})
        if rng.random() < 0.1:
            beyond_the_bounds(body, rng)
        sent.append((body, post_chat(client, key, body)))
        states.append(holdings(gateway, client, account, key))
    events = usage_events(gateway, account, [answer.request_id for _, answer in sent])
    return [
        PackCall(body, answer, states[i], states[i + 1], events[answer.request_id])
        for i, (body, answer) in enumerate(sent)
    ]


@pytest.fixture(scope="module")
def pack_calls(gateway: Gateway, simulator: Simulator, client: httpx.Client) -> list[PackCall]:
    rng = random.Random(SEED + 1)
    calls = []
    try:
        for i in range(PACK_ACCOUNTS):  # longer answers spend a pack in fewer calls: more packs, more splits
            simulator.set("alpha", completion_tokens=rng.choice([None, 60, 150, 300]))
            calls += spend_a_pack(gateway, client, rng, f"pack{i}")
    finally:
        simulator.reset("alpha")
    return calls


def test_the_pack_runs_out_and_calls_are_split(pack_calls: list[PackCall]) -> None:
    legs = [funding_of(call.event) for call in pack_calls]
    assert sum(bool(f.pack.used and f.wallet.used) for f in legs) >= PACK_ACCOUNTS // 2
    assert sum(call.before[0] == 0 for call in pack_calls) == PACK_ACCOUNTS * WALLET_CALLS_AFTER_PACK
    assert sum(call.split_on_a_rounded_draw for call in pack_calls) >= 3  # fractional draws were exercised
    assert sum(call.settled.pack.overrun > 0 for call in pack_calls) > 0  # a pack paid beyond its reservation
    assert sum(call.settled.wallet.overrun > 0 for call in pack_calls) > 0  # and a wallet


def settlement_rows(index: int, call: PackCall) -> list[Row]:
    """What plans.md says each source pays for one call, against the event and the balances."""
    assert call.event["outcome"] == "ok" and call.event["prices_nano"] == PACK_OFFER.prices_nano, index
    classes, expected = event_classes(call.event), call.settled
    if call.answer.usage is not None:
        assert classes_of(call.answer.usage) == classes, index
    paid = (expected.pack.used + expected.pack.charged, expected.wallet.used + expected.wallet.charged)
    uncharged = expected.pack.uncharged_nano + expected.wallet.uncharged_nano
    rows: list[Row] = [
        (index, expected, funding_of(call.event)),
        (index, uncharged, call.event["uncharged_nano"]),
        # billing.md: "cost_nano is what the customer paid", the list price less what was left uncharged
        (index, list_price_nano(classes, PACK_OFFER) - uncharged, call.event["cost_nano"]),
        (index, paid, (call.before[0] - call.after[0], call.before[1] - call.after[1])),
    ]
    if not call.body["stream"]:  # api.md: x-suanli-balance is the available balance after the charge
        rows.append((index, call.after[1], cny_to_nano(call.answer.headers["x-suanli-balance"])))
    return rows


def test_each_source_reserves_its_share_of_the_most(pack_calls: list[PackCall]) -> None:
    rows: list[Row] = []
    for index, call in enumerate(pack_calls):
        expected, actual = reserve(call.body, call.before[0]), funding_of(call.event)
        rows.append(
            (index, (expected.pack.reserved, expected.wallet.reserved), (actual.pack.reserved, actual.wallet.reserved))
        )
        rows.append((index, expected.wallet.reserved, call.event["reserved_nano"]))
    assert_agree(rows)


def test_each_source_pays_its_share_of_the_usage(pack_calls: list[PackCall]) -> None:
    rows: list[Row] = []
    for index, call in enumerate(pack_calls):
        if not call.split_on_a_rounded_draw:
            rows += settlement_rows(index, call)
    assert_agree(rows)


def test_a_split_call_leaves_the_wallet_the_share_of_the_exact_draw(pack_calls: list[PackCall]) -> None:
    """plans.md: "the share falls by reserved / draw", the draw exact, the charges each rounded down once."""
    rows: list[Row] = []
    for index, call in enumerate(pack_calls):
        if call.split_on_a_rounded_draw:
            rows += settlement_rows(index, call)
    assert rows
    assert_agree(rows)


# --- 3. Usage the operator never reported (billing.md, When things go wrong) -------------------------


@pytest.fixture(scope="module")
def estimated(gateway: Gateway, simulator: Simulator, client: httpx.Client) -> Run:
    rng = random.Random(SEED + 2)
    account, key = new_account(gateway, "audit-estimated", TOPUP_CNY)
    sent = []
    simulator.set("rough", report_usage=False)
    try:
        for index in range(ESTIMATED_CALLS):
            body = chat_body(rng, "styled", f"estimate#{index}", OFFERS["rough/styled"].max_output_tokens)
            sent.append((body, post_chat(client, key, body)))
    finally:
        simulator.reset("rough")
    return run_of(gateway, account, sent)


def estimate_classes(call: PaidCall) -> dict[str, int]:
    """billing.md: the prompt as counted at admission, and the delivered text counted, all as output."""
    output = sum(count(text) for text in call.answer.delivered)  # each answer counted on its own, then added
    return {"input": prompt_count(call.body), "cached_input": 0, "cache_write": 0, "output": output, "reasoning": 0}


def estimate_rows(calls: list[PaidCall], tool_calls: bool) -> list[Row]:
    rows: list[Row] = []
    for index, call in enumerate(calls):
        assert (call.event["outcome"], call.event["estimated"]) == ("ok_estimated", True), index
        if ("tool_calls" in call.answer.finish_reasons) == tool_calls:
            label = f"{index} ({'streamed' if call.body['stream'] else 'not streamed'})"
            rows.append((label, estimate_classes(call), event_classes(call.event)))
    assert rows
    return rows


def test_an_unreported_text_answer_is_estimated_from_the_prompt_and_the_text(estimated: Run) -> None:
    assert_agree(estimate_rows(estimated.calls, tool_calls=False))


def test_an_unreported_tool_call_is_estimated_from_the_prompt_and_the_call(estimated: Run) -> None:
    """billing.md: the text delivered includes the tool calls' names and arguments."""
    assert_agree(estimate_rows(estimated.calls, tool_calls=True))


def test_an_estimate_is_charged_at_list_price_and_shown_as_estimated(estimated: Run) -> None:
    rows: list[Row] = []
    for index, call in enumerate(estimated.calls):
        classes, usage = event_classes(call.event), call.answer.usage
        assert call.event["prices_nano"] == call.offer.prices_nano, index
        price = list_price_nano(classes, call.offer)
        rows.append((index, price, call.event["cost_nano"]))
        rows.append((index, reservation_nano(call.body), call.event["reserved_nano"]))
        if usage is not None:
            assert usage.get("estimated") is True, index
            rows.append(
                (index, (classes["input"], classes["output"]), (usage["prompt_tokens"], usage["completion_tokens"]))
            )
            rows.append((index, price, cny_to_nano(usage["cost"])))
        if not call.body["stream"]:
            rows.append((index, price, cny_to_nano(call.answer.headers["x-suanli-cost"])))
    assert_agree(rows)
