"""The simulator's ASGI app: one Starlette app plays every configured operator.

Operators are told apart by the first path segment (``/{operator}/v1/...``); the bare ``/v1/...`` routes
are the ``default`` operator, so the simulator also works as a single plain OpenAI base URL. All state
lives in a ``SimState`` made here and kept in ``app.state.sim``: two apps never share anything.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from suanli.providers.simulator import control
from suanli.providers.simulator.chat import chat_completions, list_models
from suanli.providers.simulator.embeddings import embeddings
from suanli.providers.simulator.errors import error_response
from suanli.providers.simulator.images import generations
from suanli.providers.simulator.messages import messages
from suanli.providers.simulator.profile import SimProfile
from suanli.providers.simulator.state import SimState

_ROUTES = (
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/images/generations", generations, methods=["POST"]),
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/_sim/operators", control.list_operators, methods=["GET"]),
    Route("/_sim/operators/{operator}", control.get_operator, methods=["GET"]),
    Route("/_sim/operators/{operator}", control.put_operator, methods=["PUT"]),
    Route("/_sim/operators/{operator}/reset", control.reset_operator, methods=["POST"]),
    Route("/_sim/operators/{operator}/stats", control.operator_stats, methods=["GET"]),
    Route("/{operator}/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/{operator}/v1/models", list_models, methods=["GET"]),
    Route("/{operator}/v1/embeddings", embeddings, methods=["POST"]),
    Route("/{operator}/v1/images/generations", generations, methods=["POST"]),
    Route("/{operator}/v1/messages", messages, methods=["POST"]),
)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the OpenAI error shape, as an operator's API does."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"Invalid URL ({request.method} {request.url.path})"
    if status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    return error_response(status, message, "invalid_request_error")


def build_app(profiles: Mapping[str, SimProfile]) -> Starlette:
    """An app playing the operators in ``profiles`` (plus ``default``, with default knobs if absent).

    Raises ValueError for an operator name that can't be a path segment.
    """
    state = SimState(profiles)
    app = Starlette(routes=list(_ROUTES), exception_handlers={HTTPException: _http_error})
    app.state.sim = state
    return app
