"""An operator's error text, made safe to show a customer: no credential, no URL, no host, a short line."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from suanli.catalog import Operator, Timeouts
from suanli.gateway.sanitize import NO_DETAILS, operator_error, operator_text, redact_keys
from suanli.limits import OPERATOR_MESSAGE_CHARS_MAX

OPERATOR_KEY = "tiger-lantern-violet-42"  # shaped like no credential: only the operator's own key hides it
OPERATOR = Operator(
    name="echo",
    base_url="http://10.20.30.40:8000/v1",
    protocol="openai",
    api_key=OPERATOR_KEY,
    region="cn",
    timeouts=Timeouts(),
    anthropic_base_url="https://inference.vendor.internal:9443",
)
HOSTS = ("10.20.30.40", "inference.vendor.internal")
SECRETS = (
    OPERATOR_KEY,
    "sk-proj-abcdef0123456789",
    *HOSTS,
    "10.20.30.40:8000",
    "http://10.20.30.40:8000/v1",
    "inference.vendor.internal:9443",
)


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("'max_tokens' is too large: 100000 > 8192", "'max_tokens' is too large: 100000 > 8192"),
        ("messages.0.content must be a string", "messages.0.content must be a string"),
        ("model Qwen2-VL-72B-Instruct-GPTQ-Int4-AWQ not found", "model Qwen2-VL-72B-Instruct-GPTQ-Int4-AWQ not found"),
        (
            "bad header Authorization: Bearer sk-proj-abcdef0123456789",
            "bad header Authorization: [redacted] [redacted]",
        ),
        (f"key {OPERATOR_KEY} has no access", "key [redacted] has no access"),
        ('{"x-api-key": "abc123", "password": "hunter2"}', '{"x-api-key": "[redacted]", "password": "[redacted]"}'),
        ("api_key=zzz&model=m", "api_key=[redacted]&model=m"),
        ("see http://10.20.30.40:8000/v1/chat/completions", "see [url]"),
        ("upstream 10.20.30.40:8000 refused", "upstream [host] refused"),
        ("via https://inference.vendor.internal:9443/v1/messages", "via [url]"),
        ("node gpu-7.cluster.local:8443 is down", "node [host] is down"),
        ("token dGhpcyBpcyBhIHNlY3JldCB0b2tlbjEyMzQ1Ng== leaked", "token [redacted] leaked"),
        ("key 123e4567-e89b-12d3-a456-426614174000 unknown", "key [redacted] unknown"),
        ("first line\nsecond\r\n\x00third", "first line second third"),
        ("", NO_DETAILS),
    ],
)
def test_an_operators_text_keeps_what_helps_and_loses_what_must_not_be_seen(said: str, shown: str) -> None:
    assert operator_text(said, OPERATOR) == shown


def test_a_long_text_is_cut_to_the_named_bound() -> None:
    shown = operator_text("word " * 10_000 + OPERATOR_KEY, OPERATOR)
    assert len(shown) == OPERATOR_MESSAGE_CHARS_MAX and shown.endswith("…")


def test_the_operators_key_is_hidden_even_where_the_text_is_cut() -> None:
    # The cut falls inside the key: what is left of it must not be shown either.
    said = "x " * (OPERATOR_MESSAGE_CHARS_MAX // 2 - 5) + OPERATOR_KEY
    assert "tiger" not in operator_text(said, OPERATOR)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"error": {"message": "too long", "code": "context_length_exceeded"}}, "context_length_exceeded", "too long"),
        (
            {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
            "invalid_request_error",
            "bad",
        ),
        ({"object": "error", "message": "m", "type": "BadRequestError", "code": 400}, "BadRequestError", "m"),
        ({"detail": "Not Found"}, None, "Not Found"),
        ({"error": "plain text"}, None, "plain text"),
        ({"error": {"message": "x", "code": "sk-abcdefghijkl"}}, None, "x"),
        ({"error": {"message": ["a list"]}}, None, NO_DETAILS),
        (None, None, NO_DETAILS),
        ([1, 2], None, NO_DETAILS),
    ],
)
def test_the_shapes_of_error_bodies_servers_send(body: object, code: str | None, message: str) -> None:
    error = operator_error(body, OPERATOR)
    assert (error.code, error.message) == (code, message)


texts = st.text(max_size=200)
key_bodies = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=64
)


@given(before=texts, after=texts, body=key_bodies, secret=st.sampled_from(SECRETS))
def test_no_secret_survives_whatever_surrounds_it(before: str, after: str, body: str, secret: str) -> None:
    assume(body not in before + after)
    for said in (f"{before} sk-{body} {after}", f"{before} Bearer {body} {after}", f"{before}{secret}{after}"):
        shown = operator_text(said, OPERATOR)
        assert body not in shown and OPERATOR_KEY not in shown
        assert all(host not in shown for host in HOSTS)
        assert len(shown) <= OPERATOR_MESSAGE_CHARS_MAX


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        ("GET /v1/models?key=sk-abc12345678 HTTP/1.1", "GET /v1/models?key=[redacted] HTTP/1.1"),
        ("authorization: Bearer sk-admin-0123456789abcdef", "authorization: [redacted] [redacted]"),
        ("x-api-key: secret-value", "x-api-key: [redacted]"),
        ("req_0123456789abcdef00000001 took 12 ms", "req_0123456789abcdef00000001 took 12 ms"),
    ],
)
def test_log_lines_lose_keys_and_keep_request_ids(line: str, logged: str) -> None:
    assert redact_keys(line) == logged
