"""Serving the simulator over a real socket with uvicorn (uvloop when available, httptools).

uvicorn runs with ``CloseDelimitedProtocol`` (framing.py), its httptools protocol extended so an operator
with ``close_delimited`` can frame its streams by closing the connection, which uvicorn alone never does.

``serve`` runs inside an existing event loop until cancelled (or SIGTERM in the main thread) and then
shuts down gracefully: in-flight answers get SHUTDOWN_GRACE_S to finish. ``run`` blocks, for the CLI.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Mapping

import uvicorn

from suanli.providers.simulator.app import build_app
from suanli.providers.simulator.errors import StreamDropped
from suanli.providers.simulator.framing import CloseDelimitedProtocol
from suanli.providers.simulator.profile import SimProfile

SHUTDOWN_GRACE_S = 5  # in-flight answers (a hang, a slow stream) are cancelled after this
_UVICORN_ERROR_LOGGER = "uvicorn.error"


def _is_stream_dropped(error: BaseException | None) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_is_stream_dropped(inner) for inner in error.exceptions)
    return isinstance(error, StreamDropped)


class _DroppedStreamFilter(logging.Filter):
    """Keeps deliberate stream drops out of uvicorn's error log.

    uvicorn closes the connection when an app raises after the response started, which is exactly the
    fault being simulated, but it also logs a traceback for it; with drops configured that is one
    traceback per request, hiding real errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_stream_dropped(record.exc_info[1]))


def _install_log_filter() -> None:
    logger = logging.getLogger(_UVICORN_ERROR_LOGGER)
    if not any(isinstance(existing, _DroppedStreamFilter) for existing in logger.filters):
        logger.addFilter(_DroppedStreamFilter())


def build_server(host: str, port: int, profiles: Mapping[str, SimProfile]) -> uvicorn.Server:
    """A uvicorn server for the simulator app, not yet started (``serve``/``run`` start it)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    config = uvicorn.Config(
        build_app(profiles),
        host=host,
        port=port,
        loop=loop,
        http=CloseDelimitedProtocol,
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    # After Config: creating it applies uvicorn's logging configuration.
    _install_log_filter()
    return uvicorn.Server(config)


async def serve(host: str, port: int, profiles: Mapping[str, SimProfile]) -> None:
    """Serve until cancelled; on cancellation, shut down gracefully and re-raise CancelledError."""
    server = build_server(host, port, profiles)
    running = asyncio.ensure_future(server.serve())
    try:
        # The shield lets uvicorn shut down in its own way instead of dying inside its main loop.
        await asyncio.shield(running)
    except asyncio.CancelledError:
        server.should_exit = True
        await running
        raise


def run(host: str, port: int, profiles: Mapping[str, SimProfile]) -> None:
    """Serve in this thread until SIGINT or SIGTERM."""
    build_server(host, port, profiles).run()
