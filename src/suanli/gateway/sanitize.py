"""What an operator says, made safe to show a customer: no credential, no URL, no host name, a short line.

An operator's error text is written for the platform, not for the platform's customers. Servers echo
request headers into their errors (a customer once read an operator's API key that way), name internal
hosts and URLs, and can send megabytes. So an operator's error reaches a client only as its HTTP status,
its error code if that is a plain identifier, and a message that went through ``operator_text``: the
operator's own credential and host names replaced, anything shaped like a credential, a URL or a host
replaced, control characters flattened, and the length bounded by ``OPERATOR_MESSAGE_CHARS_MAX``.

``redact_keys`` is the part that hides keys (``sk-...``, ``Bearer ...``, ``x-api-key: ...``); every log
line goes through it too (log_redaction.py). For a client, redaction errs on the side of hiding: a long
random-looking word is hidden even if it was harmless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from suanli.catalog import Operator
from suanli.limits import OPERATOR_MESSAGE_CHARS_MAX

REDACTED = "[redacted]"
HIDDEN_URL = "[url]"
HIDDEN_HOST = "[host]"
NO_DETAILS = "no details given"
# Of a long message, only this much is searched for secrets (the rest is cut anyway): the patterns below
# run on the event loop, and a pattern search over an operator's megabyte of text would hold it.
SCANNED_CHARS_MAX = 8 * OPERATOR_MESSAGE_CHARS_MAX
SECRET_CHARS_MIN = 4  # a configured credential shorter than this is not searched for (it would match words)
TOKEN_CHARS_MIN = 32  # an unbroken run of letters and digits this long is taken for a credential
TOKEN_SEGMENT_CHARS_MIN = 20  # ... when one stretch of it, between '-' or '_', is this long
CODE_CHARS_MAX = 48

_SCHEMES = re.compile(r"\b(Bearer|Basic|Token)\s+[^\s\"',;]+", re.IGNORECASE)
# "x-api-key: v", "api_key=v", '"Authorization": "v"', "password=v", the console's "suanli_session=v" and a
# "Cookie: v"; not "max_tokens: 5" (the name must end right before the separator).
_NAMED = re.compile(
    r"([\w-]*(?:api[-_]?key|authorization|token|secret|password|passwd|credential|session|cookie))"
    r"(\"?'?\s*[:=]\s*\"?'?)([^\s\"',;&]+)",
    re.IGNORECASE,
)
_SK_KEYS = re.compile(
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{6,}"
)  # OpenAI-style keys, Anthropic's sk-ant-, the platform's own
_UUIDS = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_LONG_RUNS = re.compile(rf"[A-Za-z0-9+/_\-]{{{TOKEN_CHARS_MIN},}}=*")
_URLS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b")
_HOSTS = re.compile(
    r"\b(?:localhost|(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:com|net|org|io|ai|cn|dev|app|cloud|co|me|info|biz|xyz|tech|site|online|top|local|localdomain|"
    r"internal|lan|corp|intra|svc|cluster))\b(?::\d{1,5})?",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")
_CODE = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True, slots=True)
class OperatorError:
    """An operator's error reduced to what a client may see."""

    code: str | None  # the operator's own code or type, if it is a plain identifier
    message: str  # sanitized and bounded


def _long_run(match: re.Match[str]) -> str:
    """A long run of letters and digits is a credential if it has both and a long unbroken stretch (so a
    model name like ``Qwen2-VL-72B-Instruct-GPTQ-Int4-AWQ`` stays, a base64 token goes)."""
    run = match.group(0)
    has_both = any(c.isdigit() for c in run) and any(c.isalpha() for c in run)
    longest = max(len(part) for part in re.split(r"[-_]", run))
    return REDACTED if has_both and longest >= TOKEN_SEGMENT_CHARS_MIN else run


def redact_keys(text: str) -> str:
    """``text`` with keys replaced: ``sk-...`` keys, ``Bearer ...`` (and Basic, Token) credentials, and the
    values of fields named like a key, a token, a secret, a password, a session or a cookie."""
    text = _SCHEMES.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _NAMED.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _SK_KEYS.sub(REDACTED, text)


def _operator_hosts(operator: Operator) -> list[tuple[str, str]]:
    """An operator's base URLs and hosts, as it is configured, and what stands in for each (a host of one
    label, like ``vllm``, only with its port: alone it is a word)."""
    hidden = []
    for base_url in operator.endpoints.values():
        parts = urlsplit(base_url)
        hidden += [(base_url.rstrip("/"), HIDDEN_URL), (parts.netloc, HIDDEN_HOST), (parts.hostname or "", HIDDEN_HOST)]
    kept = {(text, by) for text, by in hidden if len(text) >= SECRET_CHARS_MIN and ("." in text or ":" in text)}
    return sorted(kept, key=lambda pair: len(pair[0]), reverse=True)  # a URL before its host


def operator_text(text: str, operator: Operator) -> str:
    """One of an operator's texts, safe to show a client: see the module's docstring."""
    if operator.api_key and len(operator.api_key) >= SECRET_CHARS_MIN:  # in the whole text: a cut must not
        text = text.replace(operator.api_key, REDACTED)  # leave half of it
    text = _CONTROL.sub(" ", text[:SCANNED_CHARS_MAX])
    text = _URLS.sub(HIDDEN_URL, text)
    for hidden, stand_in in _operator_hosts(operator):
        text = text.replace(hidden, stand_in)
    text = _LONG_RUNS.sub(_long_run, _UUIDS.sub(REDACTED, redact_keys(text)))
    text = _IPV4.sub(HIDDEN_HOST, text)
    text = _HOSTS.sub(HIDDEN_HOST, text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > OPERATOR_MESSAGE_CHARS_MAX:
        text = text[: OPERATOR_MESSAGE_CHARS_MAX - 1].rstrip() + "…"
    return text or NO_DETAILS


def operator_error(data: Any, operator: Operator) -> OperatorError:
    """The code and message of an operator's error body, in the shapes servers use: OpenAI's and
    Anthropic's ``{"error": {"message", "code"|"type"}}``, vLLM's flat ``{"message", "type"}``, FastAPI's
    ``{"detail": "..."}``."""
    body = data if isinstance(data, dict) else {}
    error = body.get("error")
    fields = error if isinstance(error, dict) else body
    message = fields.get("message") or body.get("detail") or error
    codes = [c for c in (fields.get("code"), fields.get("type")) if isinstance(c, str)]
    text = operator_text(message, operator) if isinstance(message, str) else NO_DETAILS
    return OperatorError(_plain_code(codes[0]) if codes else None, text)


def _plain_code(code: str) -> str | None:
    """An operator's error code, if it is a short plain identifier that hides nothing."""
    if len(code) > CODE_CHARS_MAX or not _CODE.fullmatch(code):
        return None
    return code if _LONG_RUNS.sub(_long_run, redact_keys(code)) == code else None
