"""Everything the simulator remembers, held by one object that ``build_app`` attaches to the app.

Each operator has its profile, the profile it started with (what ``reset`` restores), a prefix cache,
counters, the model names it has served, and its own ``random.Random``: error injection draws one number
per request from it, so a given seed gives the same sequence of failures on every run. All of it is used
from the one event loop that serves the app, so no locks are needed.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from suanli.providers.simulator.prefix_cache import PrefixCache
from suanli.providers.simulator.profile import SimProfile
from suanli.providers.simulator.prompt import PromptCount, scale_tokens

DEFAULT_OPERATOR = "default"
DEFAULT_MODEL = "sim-model"
OPERATORS_COUNT_MAX = 1024  # the control API can create operators; this bounds what it can create
SERVED_MODELS_COUNT_MAX = 1024  # distinct model names remembered per operator for /v1/models
_OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class OperatorLimitReached(Exception):
    """The control API asked for a new operator beyond OPERATORS_COUNT_MAX."""


def check_operator_name(name: str) -> None:
    """Names become a path segment, so they are limited to URL-safe characters."""
    if not _OPERATOR_NAME.fullmatch(name):
        raise ValueError(
            f"operator name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


def operator_profiles(
    names: Iterable[str], base: SimProfile, overrides: Mapping[str, Mapping[str, object]]
) -> dict[str, SimProfile]:
    """The profile of each operator: ``base`` for the named ones, and ``base`` with an override's knobs merged
    over it for each operator in ``overrides`` (which is served too, named or not).

    Raises ValueError naming the operator when a name can't be a path segment or an override's knob is
    invalid, so a command line can refuse it before any server starts.
    """
    profiles = {name: base for name in names}
    for name, knobs in overrides.items():
        try:
            profiles[name] = SimProfile.from_mapping({**base.to_dict(), **knobs})
        except ValueError as error:
            raise ValueError(f"operator {name}: {error}") from error
    for name in profiles:
        check_operator_name(name)
    return profiles


@dataclass
class OperatorStats:
    """Counts since start or reset; ``requests`` counts every parsed chat request, failed ones too."""

    requests: int = 0
    errors_injected: int = 0
    hangs: int = 0
    streams_dropped: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class OperatorState:
    """One simulated operator: its knobs and what it has seen since it started or was last reset."""

    def __init__(self, name: str, profile: SimProfile) -> None:
        self.name = name
        self.initial_profile = profile
        self.profile = profile
        self.rng = random.Random(profile.seed)
        self.cache = PrefixCache()
        self.stats = OperatorStats()
        self._served_models: dict[str, None] = {}  # insertion-ordered set

    def update(self, changes: Mapping[str, object]) -> SimProfile:
        """Merge ``changes`` into the profile (ValueError if invalid); a new seed restarts the RNG."""
        profile = SimProfile.from_mapping({**self.profile.to_dict(), **changes})
        self.profile = profile
        if "seed" in changes:
            self.rng = random.Random(profile.seed)
        return profile

    def reset(self) -> None:
        self.profile = self.initial_profile
        self.rng = random.Random(self.profile.seed)
        self.cache.clear()
        self.stats = OperatorStats()
        self._served_models.clear()

    def draw_error(self) -> bool:
        """Whether this request gets an injected error. One draw per request keeps the sequence fixed."""
        return self.rng.randrange(100) < self.profile.error_rate_percent

    def measure_prompt(self, model: str, prompt: PromptCount, profile: SimProfile) -> tuple[int, int]:
        """(prompt tokens, cached tokens) as this operator reports them, added to its stats.

        Both are scaled by the operator's tokenizer (``prompt_tokens_percent``); the cached part is the
        prefix cache's hit scaled the same way and never more than the prompt.
        """
        seen_tokens = self.cache.lookup_and_record(model, prompt.cache_ids, profile.cache_block_tokens)
        prompt_tokens = scale_tokens(prompt.tokens, profile.prompt_tokens_percent)
        cached_tokens = min(scale_tokens(seen_tokens, profile.prompt_tokens_percent), prompt_tokens)
        self.stats.prompt_tokens += prompt_tokens
        self.stats.cached_tokens += cached_tokens
        return prompt_tokens, cached_tokens

    def note_model(self, model: str) -> None:
        if model in self._served_models or len(self._served_models) < SERVED_MODELS_COUNT_MAX:
            self._served_models[model] = None

    def model_names(self) -> list[str]:
        names = dict.fromkeys(self.profile.models or [DEFAULT_MODEL])
        names.update(self._served_models)
        return list(names)


class SimState:
    """All operators of one simulator app; ``default`` always exists (it serves the bare /v1 routes)."""

    def __init__(self, profiles: Mapping[str, SimProfile]) -> None:
        self.started_s = int(time.time())
        self.operators: dict[str, OperatorState] = {}
        for name, profile in profiles.items():
            check_operator_name(name)
            self.operators[name] = OperatorState(name, profile)
        if DEFAULT_OPERATOR not in self.operators:
            self.operators[DEFAULT_OPERATOR] = OperatorState(DEFAULT_OPERATOR, SimProfile())
        if len(self.operators) > OPERATORS_COUNT_MAX:
            raise ValueError(f"at most {OPERATORS_COUNT_MAX} simulated operators, got {len(profiles)}")

    def get(self, name: str) -> OperatorState | None:
        return self.operators.get(name)

    def put(self, name: str, changes: Mapping[str, object]) -> OperatorState:
        """Change an operator's knobs, creating it with default knobs first if it is new.

        Raises ValueError for a bad name or knob (and then creates nothing), OperatorLimitReached when
        the operator is new and there are already OPERATORS_COUNT_MAX of them.
        """
        existing = self.operators.get(name)
        if existing is not None:
            existing.update(changes)
            return existing
        check_operator_name(name)
        if len(self.operators) >= OPERATORS_COUNT_MAX:
            raise OperatorLimitReached(f"at most {OPERATORS_COUNT_MAX} simulated operators")
        created = OperatorState(name, SimProfile())
        created.update(changes)
        self.operators[name] = created
        return created
