"""The control API under ``/_sim``: tests and demos read and change operators' knobs at run time.

A test injects a fault with ``PUT /_sim/operators/{name}`` (a partial profile, merged and validated),
checks what happened with ``GET .../stats`` and undoes it with ``POST .../reset``, which restores the
profile the operator started with and forgets its prefix cache, counters and served models.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from suanli.providers.simulator.chat import BodyTooLarge, read_body, sim_state
from suanli.providers.simulator.errors import invalid_request_response, not_found_response
from suanli.providers.simulator.state import OperatorLimitReached, OperatorState


def _json(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


def _operator(request: Request) -> OperatorState | Response:
    name = request.path_params["operator"]
    operator = sim_state(request).get(name)
    if operator is None:
        return not_found_response(f"The simulated operator '{name}' does not exist.", code="operator_not_found")
    return operator


async def list_operators(request: Request) -> Response:
    operators = sim_state(request).operators
    return _json({name: operator.profile.to_dict() for name, operator in operators.items()})


async def get_operator(request: Request) -> Response:
    operator = _operator(request)
    if isinstance(operator, Response):
        return operator
    return _json(operator.profile.to_dict())


async def _read_changes(request: Request) -> dict[str, Any] | Response:
    try:
        changes = orjson.loads(await read_body(request))
    except BodyTooLarge:
        return invalid_request_response("The body is too large.", code="body_too_large", status=413)
    except orjson.JSONDecodeError as error:
        return invalid_request_response(f"The body is not valid JSON: {error}", code="invalid_json")
    if not isinstance(changes, dict):
        return invalid_request_response("The body must be a JSON object of knobs.", code="invalid_json")
    return changes


async def put_operator(request: Request) -> Response:
    """Merge the body's knobs into the operator's profile, creating the operator if it is new."""
    changes = await _read_changes(request)
    if isinstance(changes, Response):
        return changes
    try:
        operator = sim_state(request).put(request.path_params["operator"], changes)
    except ValueError as error:
        return invalid_request_response(str(error), code="invalid_value")
    except OperatorLimitReached as error:
        return invalid_request_response(str(error), code="too_many_operators")
    return _json(operator.profile.to_dict())


async def reset_operator(request: Request) -> Response:
    operator = _operator(request)
    if isinstance(operator, Response):
        return operator
    operator.reset()
    return _json(operator.profile.to_dict())


async def operator_stats(request: Request) -> Response:
    operator = _operator(request)
    if isinstance(operator, Response):
        return operator
    return _json(operator.stats.to_dict())
