"""The knobs of one simulated operator, validated wherever a profile is made.

A profile is immutable: the control API changes an operator by building a new profile from the old
one's ``to_dict()`` merged with the requested changes, so a request in flight keeps the profile it
started with. Every knob has a bound, because a profile can arrive over HTTP from a test or a demo
script, and an unbounded delay or completion length would turn a typo into a stuck server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

TTFT_MS_MAX = 600_000  # ten minutes: longer than any gateway timeout we would want to test
TOKENS_PER_S_MAX = 1_000_000.0
ERROR_STATUS_MIN = 400
ERROR_STATUS_MAX = 599
COMPLETION_TOKENS_MAX = 131_072  # one answer; generating more would only measure the simulator
DROP_AFTER_CHUNKS_MAX = 1_000_000
CACHE_BLOCK_TOKENS_MAX = 65_536
SEED_ABS_MAX = 2**63 - 1
MODELS_COUNT_MAX = 256
USAGE_OVERRIDE_FIELDS_MAX = 16
MODEL_NAME_CHARS_MAX = 256
PROMPT_TOKENS_PERCENT_MIN = 50  # an operator's tokenizer counting half of cl100k's tokens is already extreme
PROMPT_TOKENS_PERCENT_MAX = 200
OUTPUT_CAP_TOKENS_MAX = 1_000_000  # above every model's real output limit
# Where an OpenAI-style stream puts its usage: OpenAI's separate chunk when asked ("chunk"), on the finish
# chunk when asked ("finish"), on the finish chunk always (transformers serve), a separate chunk always,
# or nowhere.
STREAM_USAGE_STYLES = ("chunk", "finish", "finish_always", "chunk_always", "never")
OVER_CAP_POLICIES = ("honour", "refuse")  # serve a max_tokens above output_cap_tokens, or answer 400


def _require_int(name: str, value: object, low: int, high: int) -> None:
    # bool is a subclass of int, but `"hang": 1` and `"seed": true` are mistakes worth reporting.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def _require_optional_int(name: str, value: object, low: int, high: int) -> None:
    if value is not None:
        _require_int(name, value, low, high)


def _require_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {type(value).__name__}")


def _require_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _require_rate(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or not 0 <= value <= TOKENS_PER_S_MAX:
        raise ValueError(f"{name} must be between 0 and {TOKENS_PER_S_MAX:g}, got {value}")


def _require_fields(name: str, value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{name} must be an object, got {type(value).__name__}")
    if len(value) > USAGE_OVERRIDE_FIELDS_MAX:
        raise ValueError(f"{name} may hold at most {USAGE_OVERRIDE_FIELDS_MAX} fields, got {len(value)}")


def _require_models(name: str, value: object) -> None:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of model names, got {type(value).__name__}")
    if len(value) > MODELS_COUNT_MAX:
        raise ValueError(f"{name} may hold at most {MODELS_COUNT_MAX} names, got {len(value)}")
    for model in value:
        if not isinstance(model, str) or not 0 < len(model) <= MODEL_NAME_CHARS_MAX:
            raise ValueError(f"{name} must hold non-empty strings of at most {MODEL_NAME_CHARS_MAX} characters")


@dataclass(frozen=True)
class SimProfile:
    """How one simulated operator behaves; the defaults make a fast, healthy operator.

    - ``ttft_ms``: delay before a non-streamed answer, or before a stream's headers and first chunk.
    - ``headers_first_ms``: a stream's headers go out at once (after ``ttft_ms``) and its first chunk this
      much later, as at an operator that answers before it has read the prompt (vLLM does).
    - ``tokens_per_s``: pace of a stream's content chunks (a non-streamed answer waits as long);
      0 answers as fast as possible.
    - ``error_rate_percent`` / ``error_status``: share of requests (0-100) answered with this HTTP status
      in the OpenAI error shape; a 429 carries ``Retry-After``. Draws come from ``random.Random(seed)``.
    - ``hang``: accept the request and never answer, until the client goes away.
    - ``drop_after_chunks``: close a stream's connection mid-body after this many content chunks (no
      finish chunk, usage or ``[DONE]``); it never applies to non-streamed answers.
    - ``completion_tokens``: fixed answer length in tokens; by default a length of 8-64 derived from the
      request's hash. ``max_tokens`` (without it, ``output_cap_tokens``) caps it. An ``echo:`` answer has
      its own length.
    - ``report_usage``: False leaves ``usage`` out of answers, like an upstream that reports none.
    - ``usage_override``: fields set in every usage report as they are given, e.g. ``{"prompt_tokens": -50}``
      for an operator whose usage is malformed.
    - ``seed``: changes every generated answer and the error sequence.
    - ``cache_block_tokens``: prefix-cache granularity for ``cached_tokens``, as DeepSeek's 64.
    - ``models``: names ``/v1/models`` lists (besides those served); empty lists ``sim-model``.

    The wire-style knobs make the operator as rough as real ones, whose differences break billing:

    - ``stream_done``: False ends an OpenAI stream without ``data: [DONE]`` (an Anthropic one without
      ``message_stop``).
    - ``stream_usage``: where an OpenAI stream carries usage, one of STREAM_USAGE_STYLES.
    - ``close_delimited``: frame a streamed body by closing the connection (no chunked encoding, no length).
    - ``prompt_tokens_percent``: the operator's tokenizer counts this share of cl100k's prompt tokens.
    - ``output_cap_tokens``: the longest answer; with no ``max_tokens`` in a request, answers stop there.
    - ``over_cap``: a ``max_tokens`` above the cap is served anyway ("honour") or refused with 400 ("refuse").
    """

    ttft_ms: int = 0
    headers_first_ms: int = 0
    tokens_per_s: float = 0.0
    error_rate_percent: int = 0
    error_status: int = 500
    hang: bool = False
    drop_after_chunks: int | None = None
    completion_tokens: int | None = None
    report_usage: bool = True
    usage_override: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    cache_block_tokens: int = 64
    models: list[str] = field(default_factory=list)
    stream_done: bool = True
    stream_usage: str = "chunk"
    close_delimited: bool = False
    prompt_tokens_percent: int = 100
    output_cap_tokens: int | None = None
    over_cap: str = "honour"

    def __post_init__(self) -> None:
        # Validated here rather than only in from_mapping, so a profile built in code holds too.
        _require_int("ttft_ms", self.ttft_ms, 0, TTFT_MS_MAX)
        _require_int("headers_first_ms", self.headers_first_ms, 0, TTFT_MS_MAX)
        _require_rate("tokens_per_s", self.tokens_per_s)
        _require_int("error_rate_percent", self.error_rate_percent, 0, 100)
        _require_int("error_status", self.error_status, ERROR_STATUS_MIN, ERROR_STATUS_MAX)
        _require_bool("hang", self.hang)
        _require_optional_int("drop_after_chunks", self.drop_after_chunks, 0, DROP_AFTER_CHUNKS_MAX)
        _require_optional_int("completion_tokens", self.completion_tokens, 0, COMPLETION_TOKENS_MAX)
        _require_bool("report_usage", self.report_usage)
        _require_fields("usage_override", self.usage_override)
        _require_int("seed", self.seed, -SEED_ABS_MAX, SEED_ABS_MAX)
        _require_int("cache_block_tokens", self.cache_block_tokens, 1, CACHE_BLOCK_TOKENS_MAX)
        _require_models("models", self.models)
        _require_bool("stream_done", self.stream_done)
        _require_choice("stream_usage", self.stream_usage, STREAM_USAGE_STYLES)
        _require_bool("close_delimited", self.close_delimited)
        _require_int(
            "prompt_tokens_percent", self.prompt_tokens_percent, PROMPT_TOKENS_PERCENT_MIN, PROMPT_TOKENS_PERCENT_MAX
        )
        _require_optional_int("output_cap_tokens", self.output_cap_tokens, 1, OUTPUT_CAP_TOKENS_MAX)
        _require_choice("over_cap", self.over_cap, OVER_CAP_POLICIES)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> SimProfile:
        """Build a profile from JSON-like data; missing knobs take their defaults.

        Raises ValueError naming the knob when a key is unknown or a value has the wrong type or range.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"a profile must be an object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise ValueError(f"unknown simulator knob(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        arguments: dict[str, Any] = dict(values)
        rate = arguments.get("tokens_per_s")
        if isinstance(rate, int) and not isinstance(rate, bool):
            arguments["tokens_per_s"] = float(rate)
        if isinstance(arguments.get("usage_override"), dict):
            arguments["usage_override"] = dict(arguments["usage_override"])
        if isinstance(arguments.get("models"), list):
            # A copy, so the caller's list can't change a profile after validation.
            arguments["models"] = list(arguments["models"])
        return cls(**arguments)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_operator_override(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME=JSON`` (a command line's ``--operator-profile``) as the name and its knob object.

    Only the shape is checked here (a name, ``=``, a JSON object); the knobs are validated when merged into
    a profile. Raises ValueError saying what is wrong.
    """
    name, separator, text = spec.partition("=")
    if not separator or not name:
        raise ValueError(f"--operator-profile takes NAME=JSON, got {spec!r}")
    try:
        knobs = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"--operator-profile {name}: not valid JSON: {error}") from error
    if not isinstance(knobs, dict):
        raise ValueError(f"--operator-profile {name}: the knobs must be a JSON object")
    return name, knobs
