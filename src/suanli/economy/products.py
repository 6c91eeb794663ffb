"""Token products: what an account can buy besides pay-as-you-go, as the catalog (or an operator) lists them.

Two kinds, after the public offers they model:
- a **pack**: N tokens of a model set, at a price, valid for some days (China Telecom's household packs,
  ¥9.9 for 10M tokens). Each token class draws the pack down at the weight the product publishes
  (``weights``, in pack tokens per token; an output token usually draws more than an input token).
- a **subscription** (the Coding Plan): a monthly fee for allowances per rolling 5-hour window, per
  calendar week and per month, counted in requests or in tokens, on a model set.

A product is sold to the tiers it names. What it sells for goes to the platform's plan account, which
pays the operators for every token served from a pack or an allowance at the offer's quoted prices, as
the wallet would; so operators are paid per token whatever funded it. Weights are exact: written as
decimal strings, kept as integer thousandths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from suanli.errors import BadRequest
from suanli.limits import AMOUNT_NANO_MAX, TOKENS_AMOUNT_MAX
from suanli.money import MoneyFormatError, cny_to_nano, nano_to_cny
from suanli.pricing import TokenUsage

PRODUCT_KINDS = ("pack", "subscription")
FUNDING_SOURCES = ("subscription", "packs", "wallet")  # the default order a request is funded in
WINDOWS = ("5h", "week", "month")  # a rolling 5 hours from the first request, a calendar week, the billing month
UNITS = ("requests", "tokens")
TOKEN_CLASSES = ("input", "cached_input", "output", "reasoning", "cache_write")
WEIGHT_SCALE = 1000  # weights are kept in thousandths of a pack token per token
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PACK_DAYS_MAX = 3660
PACK_TOKENS_MAX = 10**13


@dataclass(frozen=True, slots=True)
class Weights:
    """Pack tokens drawn per token of each class, in thousandths."""

    input: int = WEIGHT_SCALE
    cached_input: int = WEIGHT_SCALE
    output: int = WEIGHT_SCALE
    reasoning: int = WEIGHT_SCALE
    cache_write: int = WEIGHT_SCALE

    def draw_exact(self, usage: TokenUsage) -> Fraction:
        """Pack tokens a usage draws, as an exact fraction: the share of it a pack is charged is rounded down
        once, to a whole token (the customer's favour)."""
        scaled = (
            usage.input * self.input
            + usage.cached_input * self.cached_input
            + usage.output * self.output
            + usage.reasoning * self.reasoning
            + usage.cache_write * self.cache_write
        )
        return Fraction(scaled, WEIGHT_SCALE)

    def draw_max(self, input_tokens: int, output_tokens: int) -> int:
        """The most a request with these bounds can draw: each bound at its dearest class, rounded up (a
        reservation is a bound, never a charge)."""
        scaled = input_tokens * max(self.input, self.cached_input, self.cache_write) + output_tokens * max(
            self.output, self.reasoning
        )
        return -(-scaled // WEIGHT_SCALE)


@dataclass(frozen=True, slots=True)
class Allowance:
    window: str  # "5h" | "week" | "month"
    unit: str  # "requests" | "tokens"
    amount: int


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    kind: str
    title: str
    price_nano: int  # a pack's price, or a subscription's monthly fee
    tiers: frozenset[str]
    models: frozenset[str]  # the models it may be spent on
    tokens: int = 0  # a pack's tokens
    valid_days: int = 0  # a pack's life
    weights: Weights = Weights()
    allowances: tuple[Allowance, ...] = ()  # a subscription's
    retired: bool = False

    def covers(self, model: str) -> bool:
        return model in self.models

    def public(self) -> dict[str, Any]:
        """The product as the API and CLI show it."""
        shown: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "price": nano_to_cny(self.price_nano),
            "tiers": sorted(self.tiers),
            "models": sorted(self.models),
            "retired": self.retired,
        }
        if self.kind == "pack":
            shown.update(
                tokens=self.tokens,
                valid_days=self.valid_days,
                weights={c: _weight_text(getattr(self.weights, c)) for c in TOKEN_CLASSES},
            )
        else:
            shown["allowances"] = [{"window": a.window, a.unit: a.amount} for a in self.allowances]
        return shown


def _weight_text(thousandths: int) -> str:
    return str((Decimal(thousandths) / WEIGHT_SCALE).normalize())


def parse_product(
    product_id: str, spec: Mapping[str, Any], *, models: frozenset[str], tiers: tuple[str, ...]
) -> Product:
    """Read a product from the catalog's ``[products.ID]`` table or the admin API's JSON; a bad field is
    a ``BadRequest`` naming it (the catalog turns it into a configuration error)."""
    where = f"product {product_id}"
    if not _ID_PATTERN.match(product_id):
        raise BadRequest(f"{where}: the id must be lowercase letters, digits, '.', '_' or '-'.", param="id")
    kind = spec.get("kind")
    if kind not in PRODUCT_KINDS:
        raise BadRequest(f"{where}: kind must be one of {', '.join(PRODUCT_KINDS)}.", param="kind")
    title = spec.get("title", product_id)
    if not isinstance(title, str) or not title or len(title) > 200:
        raise BadRequest(f"{where}: title must be a non-empty string.", param="title")
    product_models = _string_set(spec.get("models"), f"{where}: models", "models")
    unknown = product_models - models
    if unknown:
        raise BadRequest(f"{where}: unknown models {', '.join(sorted(unknown))}.", param="models")
    product_tiers = _string_set(spec.get("tiers", list(tiers)), f"{where}: tiers", "tiers")
    if not product_tiers <= set(tiers):
        raise BadRequest(f"{where}: tiers must be among {', '.join(tiers)}.", param="tiers")
    common = {
        "id": product_id,
        "kind": kind,
        "title": title,
        "price_nano": _price(spec.get("price"), where),
        "tiers": product_tiers,
        "models": product_models,
    }
    if kind == "pack":
        return Product(
            **common,
            tokens=_int(spec, "tokens", where, 1, PACK_TOKENS_MAX),
            valid_days=_int(spec, "valid_days", where, 1, PACK_DAYS_MAX),
            weights=_weights(spec.get("weights", {}), where),
        )
    return Product(**common, allowances=_allowances(spec.get("allowances"), where))


def _string_set(value: Any, where: str, param: str) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{where} must be a non-empty list of names.", param=param)
    return frozenset(value)


def _price(value: Any, where: str) -> int:
    if not isinstance(value, str):
        raise BadRequest(f'{where}: price must be a string of CNY, e.g. "9.9", so it stays exact.', param="price")
    try:
        nano = cny_to_nano(value)
    except MoneyFormatError as exc:
        raise BadRequest(f"{where}: price: {exc}", param="price") from None
    if not 0 < nano <= AMOUNT_NANO_MAX:
        raise BadRequest(f"{where}: price must be more than zero and at most 1000000000.", param="price")
    return nano


def _int(spec: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{where}: {key} must be an integer from {low} to {high}.", param=key)
    return value


def _weights(spec: Any, where: str) -> Weights:
    if not isinstance(spec, Mapping):
        raise BadRequest(f"{where}: weights must be a table of token class to weight.", param="weights")
    unknown = set(spec) - set(TOKEN_CLASSES)
    if unknown:
        raise BadRequest(f"{where}: weights: unknown token classes {', '.join(sorted(unknown))}.", param="weights")
    values: dict[str, int] = {}
    for name in TOKEN_CLASSES:
        text = spec.get(name)
        if text is None:
            continue
        try:
            scaled = Decimal(str(text)) * WEIGHT_SCALE if isinstance(text, str | int) else None
        except ArithmeticError:  # not a number, or one too large to scale ("1e999999")
            scaled = None
        if scaled is None or scaled != scaled.to_integral_value() or not 0 <= scaled <= 100 * WEIGHT_SCALE:
            raise BadRequest(
                f'{where}: weights.{name} must be a decimal string from "0" to "100", at most three decimal places.',
                param="weights",
            )
        values[name] = int(scaled)
    values.setdefault("cached_input", values.get("input", WEIGHT_SCALE))
    values.setdefault("cache_write", values.get("input", WEIGHT_SCALE))
    values.setdefault("reasoning", values.get("output", WEIGHT_SCALE))
    return Weights(**values)


def _allowances(spec: Any, where: str) -> tuple[Allowance, ...]:
    if not isinstance(spec, list) or not spec:
        raise BadRequest(f"{where}: allowances must be a non-empty list.", param="allowances")
    allowances: list[Allowance] = []
    for entry in spec:
        window = entry.get("window") if isinstance(entry, Mapping) else None
        units = [u for u in UNITS if isinstance(entry, Mapping) and u in entry]
        if window not in WINDOWS or len(units) != 1:
            raise BadRequest(
                f"{where}: each allowance is {{ window = one of {', '.join(WINDOWS)}, requests = N }} or tokens = N.",
                param="allowances",
            )
        amount = entry[units[0]]
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= TOKENS_AMOUNT_MAX:
            raise BadRequest(
                f"{where}: an allowance's amount must be a whole number from 1 to {TOKENS_AMOUNT_MAX}.",
                param="allowances",
            )
        if any(a.window == window and a.unit == units[0] for a in allowances):
            raise BadRequest(f"{where}: two allowances for the same window and unit.", param="allowances")
        allowances.append(Allowance(window, units[0], amount))
    return tuple(allowances)
