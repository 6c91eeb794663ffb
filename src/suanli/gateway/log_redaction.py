"""No key in any log line: a logging filter that redacts keys before a record is written.

Customers' API keys, admin keys and operators' credentials pass through the gateway in headers; none
should reach a log, where they outlive their revocation and are read by whoever reads the logs. Nothing
in the platform logs a key on purpose, so this filter is the net under mistakes: an exception whose text
quotes a header, a library's debug line, a request line with a key in its query. It rewrites the
record's message, its arguments (keeping their shape, which uvicorn's access formatter relies on) and its
traceback text with ``sanitize.redact_keys`` (``sk-...``, ``Bearer ...``, ``x-api-key: ...``).

The filter goes on the gateway's loggers (records logged there) and on their handlers (records that
propagate to them from loggers below); ``install`` runs after uvicorn has configured its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from suanli.gateway.sanitize import redact_keys

ACCESS_LOGGER = "uvicorn.access"
GATEWAY_LOGGERS = ("", "suanli", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")
_FORMATTER = logging.Formatter()


def _redacted(value: object) -> object:
    """An argument of a log call, redacted; numbers and clean objects stay what they are."""
    if isinstance(value, str):
        return redact_keys(value)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    clean = redact_keys(text)
    if clean != text or redact_keys(repr(value)) != repr(value):
        return clean
    return value


def _redact_arguments(record: logging.LogRecord) -> None:
    """Redact each argument, keeping the tuple or mapping (the format string is left alone: redacting it would
    take its placeholders for values). A key made of the format and an argument together (``"Bearer %s"``)
    is caught in the whole message, which then replaces the format; except in uvicorn's access lines, whose
    formatter needs the arguments, and whose arguments each hold a whole part of the request line."""
    if isinstance(record.args, tuple):
        record.args = tuple(_redacted(arg) for arg in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {name: _redacted(arg) for name, arg in record.args.items()}
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        return  # a malformed call: logging reports it itself, with the (redacted) arguments
    clean = redact_keys(message)
    if clean != message and record.name != ACCESS_LOGGER:
        record.msg, record.args = clean, None


class KeyRedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            _redact_arguments(record)
        else:
            record.msg = _redacted(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_keys(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_keys(record.stack_info)
        return True


def install(names: tuple[str, ...] = GATEWAY_LOGGERS) -> KeyRedactingFilter:
    """Put one redacting filter on each of these loggers and each of their handlers (once)."""
    redacting = KeyRedactingFilter()
    for name in names:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, KeyRedactingFilter) for f in target.filters):
                target.addFilter(redacting)
    return redacting
