"""The built-in operator simulator: a real HTTP server that plays LLM operators.

It speaks the OpenAI chat-completions protocol well enough for the official SDK, answers with
deterministic text measured by the declared tokenizer, reports usage (with prefix-cached tokens) the way
OpenAI and DeepSeek do, and injects faults on demand: slow first tokens, slow streams, error statuses,
hangs and streams cut mid-body. Wire-style knobs make an operator as rough as real ones: no ``[DONE]``,
usage on the finish chunk or nowhere, close-delimited streams, its own tokenizer's prompt counts, ``n``
choices, and an output cap. One process plays several operators, each under ``/{operator}/v1``;
``/_sim`` is a control API that changes their knobs at run time.
"""

from __future__ import annotations

from suanli.providers.simulator.app import build_app
from suanli.providers.simulator.profile import (
    OVER_CAP_POLICIES,
    STREAM_USAGE_STYLES,
    SimProfile,
    parse_operator_override,
)
from suanli.providers.simulator.server import build_server, run, serve
from suanli.providers.simulator.state import operator_profiles

__all__ = [
    "OVER_CAP_POLICIES",
    "STREAM_USAGE_STYLES",
    "SimProfile",
    "build_app",
    "build_server",
    "operator_profiles",
    "parse_operator_override",
    "run",
    "serve",
]
