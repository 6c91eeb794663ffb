"""No key in any log line: the filter on the gateway's loggers and on uvicorn's handlers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette

from suanli.gateway import log_redaction

API_KEY = "sk-0123456789abcdef0123456789abcdef0123456789abcdef"
ADMIN_KEY = "sk-admin-fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def uvicorn_logging() -> Iterator[io.StringIO]:
    """uvicorn's loggers as ``suanli serve`` sets them up, with the filter installed, writing to a buffer;
    the loggers are put back as they were afterwards."""
    loggers = [logging.getLogger(name) for name in log_redaction.GATEWAY_LOGGERS]
    saved = [(logger, logger.handlers[:], logger.filters[:], logger.level, logger.propagate) for logger in loggers]
    uvicorn.Config(Starlette(), log_level="debug")  # configures uvicorn's loggers, as serve_gateway's does
    buffer = io.StringIO()
    for name in ("uvicorn", "uvicorn.access", "suanli"):
        logging.getLogger(name).handlers[0:0] = [logging.StreamHandler(buffer)]
    logging.getLogger("suanli").setLevel(logging.INFO)
    log_redaction.install()
    try:
        yield buffer
    finally:
        for logger, handlers, filters, level, propagate in saved:
            logger.handlers[:], logger.filters[:], logger.propagate = handlers, filters, propagate
            logger.setLevel(level)


def test_keys_are_redacted_in_the_gateways_log_lines(uvicorn_logging: io.StringIO) -> None:
    logging.getLogger("suanli.api").warning("a call with Authorization: Bearer %s", API_KEY)
    logging.getLogger("suanli").warning("admin key %s", ADMIN_KEY)
    logging.getLogger("uvicorn.error").info("x-api-key: %s", "operator-secret")
    logging.getLogger("suanli").info("%(who)s sent %(key)s", {"who": "acme", "key": API_KEY})
    text = uvicorn_logging.getvalue()
    assert API_KEY not in text and ADMIN_KEY not in text and "operator-secret" not in text
    assert text.splitlines() == [
        "a call with Authorization: [redacted] [redacted]",
        "admin key [redacted]",
        "x-api-key: [redacted]",
        "acme sent [redacted]",
    ]


def test_an_access_line_keeps_its_shape(uvicorn_logging: io.StringIO) -> None:
    # uvicorn's access formatter unpacks the record's arguments: redaction must keep them a 5-tuple.
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/v1/models?key={API_KEY}", "1.1", 200)
    line = uvicorn_logging.getvalue()
    assert API_KEY not in line and "/v1/models?key=[redacted]" in line and "200" in line


def test_a_traceback_is_redacted_too(uvicorn_logging: io.StringIO) -> None:
    try:
        raise ValueError(f"bad header Authorization: Bearer {ADMIN_KEY}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    text = uvicorn_logging.getvalue()
    assert "Traceback" in text and "ValueError" in text and ADMIN_KEY not in text


def test_installing_twice_filters_once() -> None:
    logger = logging.getLogger("suanli.test-install")
    log_redaction.install(("suanli.test-install",))
    log_redaction.install(("suanli.test-install",))
    try:
        assert len(logger.filters) == 1
    finally:
        logger.filters.clear()


def test_a_console_session_cookie_is_redacted(uvicorn_logging: io.StringIO) -> None:
    session_id = "Yq3vXk2mR0cW9tQ8pL1nZ7bH4sD6fJ5gA2eU0iO3yT8"
    logging.getLogger("suanli").warning("headers: cookie: suanli_session=%s", session_id)
    logging.getLogger("suanli").warning("suanli_session=%s; Path=/", session_id)
    text = uvicorn_logging.getvalue()
    assert session_id not in text
    assert text.splitlines() == ["headers: cookie: [redacted]", "suanli_session=[redacted]; Path=/"]
