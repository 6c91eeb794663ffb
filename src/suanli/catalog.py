"""The catalog: operators, models and offers, read from a TOML file (documented in docs/catalog.md).

Prices are written as people write them, in CNY per million tokens, and converted once, exactly, to
nano-CNY per token. Operator credentials are never in the file: an operator names the environment
variable that holds its key (``api_key_env``). ``${NAME}`` and ``${NAME:-default}`` in a base URL are
read from the environment, so one file serves the demo and a deployment.

An offer's ``price`` is its base price; a ``pricing`` table adds its dynamic rules (time-of-day windows,
long-context tiers, batch price, load surcharge) and ``price_versions`` its later prices, each from an
instant on. They become the catalog's ``price_book``, read on the ``calendar`` (time zone and holidays);
``Offer.prices`` is the base price in force when the catalog was read.
"""

from __future__ import annotations

import math
import os
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from suanli.errors import BadRequest, ConfigError
from suanli.instants import DAY_MS
from suanli.limits import (
    INPUT_ESTIMATE_MARGIN_PERCENT,
    INPUT_MARGIN_PERCENT_MAX,
    OFFER_CAPACITY_DEFAULT,
    PRICE_VERSION_HORIZON_DAYS,
    UPSTREAM_CONNECT_TIMEOUT_S,
    UPSTREAM_FIRST_BYTE_TIMEOUT_S,
    UPSTREAM_IDLE_TIMEOUT_S,
    UPSTREAM_TOTAL_TIMEOUT_S,
)
from suanli.money import MoneyFormatError, price_per_mtok_to_nano_per_token
from suanli.pricing.calendar import Calendar, epoch_ms, parse_calendar
from suanli.pricing.commission import BASIS_POINTS_WHOLE, NO_COMMISSION, CommissionVersion
from suanli.pricing.prices import Prices
from suanli.pricing.schedule import PriceBook, PriceSchedule, PriceVersion, parse_schedule

TIERS = ("enterprise", "household")
PROTOCOLS = ("openai", "anthropic")  # the OpenAI chat-completions API; the Anthropic Messages API
MODEL_KINDS = ("chat", "embedding", "image")
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait on an operator, in seconds; the defaults are the named limits."""

    connect_s: float = UPSTREAM_CONNECT_TIMEOUT_S
    first_byte_s: float = UPSTREAM_FIRST_BYTE_TIMEOUT_S
    idle_s: float = UPSTREAM_IDLE_TIMEOUT_S
    total_s: float = UPSTREAM_TOTAL_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    base_url: str
    protocol: str
    api_key: str | None = field(repr=False)
    region: str
    timeouts: Timeouts
    anthropic_base_url: str | None = None  # an OpenAI-protocol operator that also speaks Anthropic natively
    # The knobs the built-in simulator plays this operator with, as written (``suanli demo`` passes them on).
    simulator: Mapping[str, Any] = field(default_factory=dict)
    commission: tuple[CommissionVersion, ...] = NO_COMMISSION  # the platform's rate on its sales, versioned

    @property
    def endpoints(self) -> dict[str, str]:
        """The base URL of each protocol the operator speaks."""
        endpoints = {self.protocol: self.base_url}
        if self.anthropic_base_url:
            endpoints["anthropic"] = self.anthropic_base_url
        return endpoints


@dataclass(frozen=True, slots=True)
class Offer:
    id: str
    operator: str
    model: str
    upstream_model: str
    prices: Prices
    context_window_tokens: int
    max_output_tokens: int
    tiers: frozenset[str]
    capacity: int = OFFER_CAPACITY_DEFAULT  # calls in flight before other offers are preferred
    # How much more than the gateway's count (cl100k) the operator's tokenizer may count a prompt.
    input_margin_percent: int = INPUT_ESTIMATE_MARGIN_PERCENT
    image_tokens: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # size -> quality -> tokens
    commission: tuple[CommissionVersion, ...] | None = None  # the platform's rate on it; None: its operator's

    def tokens_per_image(self, size: str, quality: str | None) -> int | None:
        """Output tokens one image of this size and quality is charged as; None if not offered. With no
        quality (or "auto"), the first quality the offer lists for the size."""
        qualities = self.image_tokens.get(size)
        if not qualities:
            return None
        if quality is None or quality == "auto":
            return next(iter(qualities.values()))
        return qualities.get(quality)


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    description: str
    kind: str = "chat"  # "chat" (chat completions, messages) or "embedding"


@dataclass(frozen=True, slots=True)
class Catalog:
    operators: Mapping[str, Operator]
    models: Mapping[str, Model]
    offers: tuple[Offer, ...]
    products: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # read by economy.products
    timezone: str = "Asia/Shanghai"  # where days, weeks and price windows are counted
    calendar: Calendar = field(default_factory=Calendar)  # the same zone, with holidays and make-up workdays
    price_book: PriceBook = field(default_factory=PriceBook)  # every offer's price versions, by offer id

    def offers_for(self, model: str) -> tuple[Offer, ...]:
        return tuple(offer for offer in self.offers if offer.model == model)

    def commission_for(self, operator: str, offer_id: str) -> tuple[CommissionVersion, ...]:
        """The commission versions of an offer: its own, else its operator's (none for an unknown operator)."""
        offer = next((o for o in self.offers if o.id == offer_id and o.operator == operator), None)
        if offer is not None and offer.commission is not None:
            return offer.commission
        known = self.operators.get(operator)
        return known.commission if known is not None else NO_COMMISSION


def load_catalog(path: str | Path, environ: Mapping[str, str] | None = None) -> Catalog:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read catalog {path}: {exc}") from exc
    return parse_catalog(data, os.environ if environ is None else environ)


def parse_catalog(data: Mapping[str, Any], environ: Mapping[str, str], now_ms: int | None = None) -> Catalog:
    """``now_ms`` (epoch ms UTC, default the clock) chooses which price version is ``Offer.prices``."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    operators = {
        name: _operator(name, _table(spec, f"operators.{name}"), environ)
        for name, spec in _table(data.get("operators", {}), "operators").items()
    }
    models = {
        name: _model(name, _table(spec, f"models.{name}"))
        for name, spec in _table(data.get("models", {}), "models").items()
    }
    priced = [_offer(_table(spec, "offers[]"), operators, models, now_ms) for spec in data.get("offers", [])]
    offers = tuple(offer for offer, _ in priced)
    ids = [offer.id for offer in offers]
    if len(set(ids)) != len(ids):
        raise ConfigError("two offers share an id; give each offer a unique `id`")
    if not offers:
        raise ConfigError("the catalog has no offers")
    products = {
        str(name): _table(spec, f"products.{name}")
        for name, spec in _table(data.get("products", {}), "products").items()
    }
    calendar = parse_calendar(_table(data.get("calendar", {}), "calendar"))
    book = PriceBook({offer.id: versions for offer, versions in priced})
    return Catalog(operators, models, offers, products, calendar.timezone, calendar, book)


def _model(name: str, spec: Mapping[str, Any]) -> Model:
    kind = str(spec.get("kind", "chat"))
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model {name}: kind must be one of {', '.join(MODEL_KINDS)}")
    return Model(_name(name, "model"), str(spec.get("description", "")), kind)


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"`{where}` must be a table")
    return value


def _name(name: str, what: str) -> str:
    if not _NAME_PATTERN.match(name):
        raise ConfigError(f"{what} name {name!r} must be lowercase letters, digits, '.', '_' or '-'")
    return name


def _expand(text: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set (used in the catalog)")
        return default

    return _ENV_PATTERN.sub(replace, text)


def _operator(name: str, spec: Mapping[str, Any], environ: Mapping[str, str]) -> Operator:
    protocol = str(spec.get("protocol", "openai"))
    if protocol not in PROTOCOLS:
        raise ConfigError(f"operator {name}: protocol must be one of {', '.join(PROTOCOLS)}")
    base_url = _url(name, "base_url", spec, environ)
    anthropic_base_url = _url(name, "anthropic_base_url", spec, environ) if "anthropic_base_url" in spec else None
    if anthropic_base_url and protocol == "anthropic":
        raise ConfigError(f"operator {name}: anthropic_base_url is for OpenAI-protocol operators; base_url is enough")
    if "api_key" in spec:
        raise ConfigError(f"operator {name}: credentials never go in the catalog; use api_key_env")
    key_env = spec.get("api_key_env")
    api_key = environ.get(str(key_env)) if key_env else None
    return Operator(
        name=_name(name, "operator"),
        base_url=base_url,
        protocol=protocol,
        api_key=api_key,
        region=str(spec.get("region", "")),
        timeouts=_timeouts(name, spec),
        anthropic_base_url=anthropic_base_url,
        simulator=_simulator(name, spec.get("simulator", {})),
        commission=_commission(spec, f"operator {name}") or NO_COMMISSION,
    )


def _url(name: str, key: str, spec: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    url = _expand(str(spec.get(key, "")), environ).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"operator {name}: {key} must be an http(s) URL")
    return url


def _simulator(name: str, value: Any) -> dict[str, Any]:
    """The operator's ``simulator`` table, checked for shape only: strings, finite numbers, booleans and
    lists of them, so the demo can hand it to ``suanli simulate`` as JSON. The knobs' names and ranges
    are the simulator's to check (the demo does, before it starts it): the catalog is read by the
    providers, so it must not import one of them."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"operator {name}: simulator must be a table of knobs, e.g. simulator = {{ ttft_ms = 200 }}")
    for knob, setting in value.items():
        items = setting if isinstance(setting, list) else [setting]
        if not all(_plain_knob_value(item) for item in items):
            raise ConfigError(f"operator {name}: simulator.{knob} must be a string, finite number, boolean or list")
    return dict(value)


def _plain_knob_value(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _timeouts(name: str, spec: Mapping[str, Any]) -> Timeouts:
    values: dict[str, float] = {}
    for field_name in ("connect_s", "first_byte_s", "idle_s", "total_s"):
        value = spec.get(f"{field_name.removesuffix('_s')}_timeout_s")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            raise ConfigError(f"operator {name}: {field_name.removesuffix('_s')}_timeout_s must be 0..3600 s")
        values[field_name] = float(value)
    return Timeouts(**values)


def _offer(
    spec: Mapping[str, Any], operators: Mapping[str, Operator], models: Mapping[str, Model], now_ms: int
) -> tuple[Offer, tuple[PriceVersion, ...]]:
    """The offer, with its base price in force at ``now_ms``, and its price versions."""
    operator, model = str(spec.get("operator", "")), str(spec.get("model", ""))
    where = f"offer {operator}/{model}"
    if operator not in operators:
        raise ConfigError(f"{where}: unknown operator {operator!r}")
    if model not in models:
        raise ConfigError(f"{where}: unknown model {model!r}")
    tiers = frozenset(spec.get("tiers", TIERS))
    if not tiers or not tiers <= set(TIERS):
        raise ConfigError(f"{where}: tiers must be a non-empty subset of {', '.join(TIERS)}")
    versions = _price_versions(spec, where, now_ms)
    in_force = [v for v in versions if v.effective_from_ms <= now_ms][-1]  # the first is in force from 1970
    offer = Offer(
        id=str(spec.get("id", f"{operator}/{model}")),
        operator=operator,
        model=model,
        upstream_model=str(spec.get("upstream_model", model)),
        prices=in_force.schedule.base,
        context_window_tokens=_positive(spec, "context_window", where),
        max_output_tokens=_positive(spec, "max_output_tokens", where),
        tiers=tiers,
        capacity=_positive(spec, "capacity", where) if "capacity" in spec else OFFER_CAPACITY_DEFAULT,
        input_margin_percent=_margin(spec, where),
        image_tokens=_image_tokens(spec.get("image_tokens", {}), where),
        commission=_commission(spec, where),
    )
    return offer, versions


def _commission(spec: Mapping[str, Any], where: str) -> tuple[CommissionVersion, ...] | None:
    """``commission_bp`` (in force from the beginning; default 0) and ``commission_versions``, each
    ``{ effective_from, commission_bp }`` later than the one before; None when neither is given."""
    if "commission_bp" not in spec and "commission_versions" not in spec:
        return None
    versions = [CommissionVersion(0, _basis_points(spec.get("commission_bp", 0), f"{where}: commission_bp"))]
    entries = spec.get("commission_versions", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: commission_versions must be a list of {{ effective_from, commission_bp }}")
    for index, entry in enumerate(entries):
        at = f"{where}.commission_versions[{index}]"
        table = _table(entry, at)
        unknown = sorted(set(table) - {"effective_from", "commission_bp"})
        if unknown:
            raise ConfigError(f"{at}: unknown key {unknown[0]!r} (expected effective_from, commission_bp)")
        start_ms = _instant(table.get("effective_from"), f"{at}.effective_from")
        if start_ms <= versions[-1].effective_from_ms:
            raise ConfigError(f"{at}.effective_from must be later than the version before it")
        versions.append(CommissionVersion(start_ms, _basis_points(table.get("commission_bp"), f"{at}.commission_bp")))
    return tuple(versions)


def _basis_points(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BASIS_POINTS_WHOLE:
        raise ConfigError(f"{where} must be a whole number of basis points from 0 to {BASIS_POINTS_WHOLE} (500 = 5%)")
    return value


def _margin(spec: Mapping[str, Any], where: str) -> int:
    value = spec.get("input_margin_percent", INPUT_ESTIMATE_MARGIN_PERCENT)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INPUT_MARGIN_PERCENT_MAX:
        raise ConfigError(f"{where}: input_margin_percent must be a whole number from 0 to {INPUT_MARGIN_PERCENT_MAX}")
    return value


def _price_versions(spec: Mapping[str, Any], where: str, now_ms: int) -> tuple[PriceVersion, ...]:
    """The offer's ``price`` (with its ``pricing``) in force from the start of time, then each of its
    ``price_versions`` from its ``effective_from``, at most ``PRICE_VERSION_HORIZON_DAYS`` after ``now_ms``;
    a version without a ``pricing`` table keeps the offer's rules, applied to its own base price."""
    rules = _table(spec.get("pricing", {}), f"{where}.pricing")
    versions = [
        PriceVersion(
            0, _schedule(_prices(_table(spec.get("price", {}), f"{where}.price"), where), rules, f"{where}.pricing")
        )
    ]
    entries = spec.get("price_versions", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: price_versions must be a list of tables ([[offers.price_versions]])")
    for index, entry in enumerate(entries):
        at = f"{where}.price_versions[{index}]"
        table = _table(entry, at)
        unknown = sorted(set(table) - {"effective_from", "price", "pricing"})
        if unknown:
            raise ConfigError(f"{at}: unknown key {unknown[0]!r} (expected effective_from, price, pricing)")
        start_ms = _instant(table.get("effective_from"), f"{at}.effective_from")
        if start_ms <= versions[-1].effective_from_ms:
            raise ConfigError(f"{at}.effective_from must be later than the version before it")
        if start_ms > now_ms + PRICE_VERSION_HORIZON_DAYS * DAY_MS:
            raise ConfigError(f"{at}.effective_from is more than {PRICE_VERSION_HORIZON_DAYS} days ahead")
        base = _prices(_table(table.get("price", {}), f"{at}.price"), at)
        versions.append(
            PriceVersion(
                start_ms, _schedule(base, _table(table.get("pricing", rules), f"{at}.pricing"), f"{at}.pricing")
            )
        )
    return tuple(versions)


def parse_version_table(table: Mapping[str, Any], previous: PriceSchedule, where: str) -> PriceVersion:
    """A later price of an offer set while the platform runs: ``{"effective_from", "price", "pricing"?}``
    as in ``[[offers.price_versions]]``; without ``pricing`` it keeps the rules of the version before it,
    applied to its own base price. Raises ``ConfigError`` naming the field."""
    unknown = sorted(set(table) - {"effective_from", "price", "pricing"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected effective_from, price, pricing)")
    start_ms = _instant(table.get("effective_from"), f"{where}.effective_from")
    base = _prices(_table(table.get("price", {}), f"{where}.price"), where)
    if "pricing" in table:
        return PriceVersion(start_ms, _schedule(base, _table(table["pricing"], f"{where}.pricing"), f"{where}.pricing"))
    return PriceVersion(start_ms, replace(previous, base=base))


def _schedule(base: Prices, rules: Mapping[str, Any], where: str) -> PriceSchedule:
    try:
        return parse_schedule(base, rules, where)
    except BadRequest as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _instant(value: Any, where: str) -> int:
    """An ISO 8601 date-time with its zone (a TOML offset date-time, or a string), as epoch ms UTC."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ConfigError(f"{where}: {value!r} is not a date-time with its zone (write e.g. 2026-03-01T00:00:00+08:00)")
    return epoch_ms(moment)


def _image_tokens(spec: Any, where: str) -> dict[str, dict[str, int]]:
    """``image_tokens = { "1024x1024" = { low = 272, medium = 1056, high = 4160 } }``: the declared rate."""
    table: dict[str, dict[str, int]] = {}
    for size, qualities in _table(spec, f"{where}.image_tokens").items():
        for quality, tokens in _table(qualities, f"{where}.image_tokens.{size}").items():
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens <= 0:
                raise ConfigError(f"{where}: image_tokens.{size}.{quality} must be a positive integer")
            table.setdefault(str(size), {})[str(quality)] = tokens
    return table


def _positive(spec: Mapping[str, Any], key: str, where: str) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}: `{key}` must be a positive integer")
    return value


def _prices(spec: Mapping[str, Any], where: str) -> Prices:
    def price(key: str, fallback: str | None = None) -> int:
        text = spec.get(key, spec.get(fallback) if fallback else None)
        if text is None:
            raise ConfigError(f"{where}: price.{key} is required (CNY per million tokens)")
        if isinstance(text, float):
            raise ConfigError(f'{where}: write price.{key} as a string, e.g. "2.5", so it stays exact')
        try:
            return price_per_mtok_to_nano_per_token(text)
        except MoneyFormatError as exc:
            raise ConfigError(f"{where}: price.{key}: {exc}") from exc

    return Prices(
        input_nano=price("input"),
        cached_input_nano=price("cached_input", "input"),
        output_nano=price("output"),
        reasoning_nano=price("reasoning", "output"),
        cache_write_nano=price("cache_write", "input"),
    )
