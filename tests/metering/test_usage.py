"""Reading operators' usage reports: a malformed one is no report (None), so the caller charges its estimate."""

from __future__ import annotations

from typing import Any

import pytest

from suanli.limits import REPORTED_TOKENS_MAX
from suanli.metering import reported_count, usage_from_anthropic, usage_from_openai
from suanli.pricing import TokenUsage

MALFORMED_COUNTS: list[Any] = [-50, "many", 1.5, True, None, REPORTED_TOKENS_MAX + 1, 2**64, [3], {"n": 3}]


def test_a_well_formed_openai_report_is_read_into_disjoint_classes() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 10},
    }
    assert usage_from_openai(usage) == TokenUsage(input=36, cached_input=64, output=30, reasoning=10)
    assert usage_from_openai({"prompt_tokens": 7, "total_tokens": 7}) == TokenUsage(input=7)  # embeddings
    assert usage_from_openai({"prompt_tokens": 9, "completion_tokens": 0, "prompt_cache_hit_tokens": 4}) == TokenUsage(
        input=5, cached_input=4
    )


@pytest.mark.parametrize("bad", [b for b in MALFORMED_COUNTS if b is not None])
@pytest.mark.parametrize(
    "where", ["prompt_tokens", "completion_tokens", "prompt_cache_hit_tokens", "cached_tokens", "reasoning_tokens"]
)
def test_a_malformed_openai_count_makes_the_report_none(where: str, bad: Any) -> None:
    usage: dict[str, Any] = {"prompt_tokens": 100, "completion_tokens": 40}
    if where == "cached_tokens":
        usage["prompt_tokens_details"] = {"cached_tokens": bad}
    elif where == "reasoning_tokens":
        usage["completion_tokens_details"] = {"reasoning_tokens": bad}
    else:
        usage[where] = bad
    assert usage_from_openai(usage) is None


def test_an_openai_report_of_neither_count_is_none() -> None:
    assert usage_from_openai({}) is None
    assert usage_from_openai({"total_tokens": 5, "prompt_tokens": None}) is None


@pytest.mark.parametrize("bad", [b for b in MALFORMED_COUNTS if b is not None])
@pytest.mark.parametrize(
    "where", ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]
)
def test_a_malformed_anthropic_count_makes_the_report_none(where: str, bad: Any) -> None:
    usage = {"input_tokens": 10, "output_tokens": 5, where: bad}
    assert usage_from_anthropic(usage) is None


def test_a_well_formed_anthropic_report_is_read() -> None:
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2}
    assert usage_from_anthropic(usage) == TokenUsage(input=10, cached_input=3, output=5, cache_write=2)
    assert usage_from_anthropic({"cache_read_input_tokens": 3}) is None


@pytest.mark.parametrize("bad", MALFORMED_COUNTS)
def test_a_reported_count_is_a_bounded_whole_number(bad: Any) -> None:
    assert reported_count(bad) is None
    assert reported_count(0) == 0 and reported_count(REPORTED_TOKENS_MAX) == REPORTED_TOKENS_MAX
