"""The catalog file: operators of either protocol, and a clear error for each bad operator entry."""

from __future__ import annotations

import tomllib

import pytest

from suanli.catalog import Catalog, parse_catalog
from suanli.errors import ConfigError

OFFER = """
[models.m]
[[offers]]
operator = "op"
model = "m"
context_window = 1000
max_output_tokens = 100
price = { input = "1", output = "2" }
"""


def catalog(operator: str, environ: dict[str, str] | None = None) -> Catalog:
    return parse_catalog(tomllib.loads("[operators.op]\n" + operator + OFFER), environ or {})


def test_each_protocol_has_its_base_url() -> None:
    openai_only = catalog('base_url = "http://h/v1"').operators["op"]
    native = catalog('protocol = "anthropic"\nbase_url = "http://h/anthropic/"').operators["op"]
    both = catalog('base_url = "http://h/v1"\nanthropic_base_url = "${H:-http://h}/anthropic"').operators["op"]
    assert openai_only.endpoints == {"openai": "http://h/v1"}
    assert native.endpoints == {"anthropic": "http://h/anthropic"}
    assert both.endpoints == {"openai": "http://h/v1", "anthropic": "http://h/anthropic"}


@pytest.mark.parametrize(
    ("operator", "message"),
    [
        ('protocol = "grpc"\nbase_url = "http://h/v1"', "protocol must be one of openai, anthropic"),
        ('base_url = "ftp://h/v1"', "base_url must be an http(s) URL"),
        ('base_url = "http://h/v1"\nanthropic_base_url = "h/anthropic"', "anthropic_base_url must be an http(s) URL"),
        ('protocol = "anthropic"\nbase_url = "http://h"\nanthropic_base_url = "http://h"', "base_url is enough"),
        ('base_url = "http://h/v1"\napi_key = "sk-x"', "credentials never go in the catalog"),
        ('base_url = "${NOT_SET}/v1"', "environment variable NOT_SET is not set"),
    ],
)
def test_a_bad_operator_is_refused_with_a_clear_message(operator: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        catalog(operator)
    assert message in str(refused.value)


def test_an_operator_keeps_its_simulator_knobs_as_written() -> None:
    styled = catalog('base_url = "http://h/v1"\nsimulator = { ttft_ms = 200, tokens_per_s = 50.5, hang = false }')
    assert styled.operators["op"].simulator == {"ttft_ms": 200, "tokens_per_s": 50.5, "hang": False}
    assert catalog('base_url = "http://h/v1"').operators["op"].simulator == {}


@pytest.mark.parametrize(
    ("simulator", "message"),
    [
        ('"fast"', "operator op: simulator must be a table of knobs"),
        ("{ ttft_ms = nan }", "operator op: simulator.ttft_ms must be a string, finite number, boolean or list"),
        ("{ since = 2026-01-01 }", "operator op: simulator.since must be a string, finite number, boolean or list"),
        ("{ models = [{ name = 'm' }] }", "operator op: simulator.models must be a string, finite number"),
    ],
)
def test_a_simulator_table_of_another_shape_is_refused(simulator: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        catalog(f'base_url = "http://h/v1"\nsimulator = {simulator}')
    assert message in str(refused.value)
