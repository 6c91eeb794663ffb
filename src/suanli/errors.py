"""Every error the platform can answer with, in one tree.

Each error carries the HTTP status, the OpenAI-style ``type`` and a stable ``code``. The API layer turns
them into the error body of the protocol the client speaks; nothing else builds error bodies. The tree:

    SuanliError
    ├── BadRequest (400)            invalid_request_error / invalid_json, missing_field, invalid_field,
    │                               no_operator_allowed, no_offer_within_max_price, upstream_rejected
    ├── Unauthorized (401)          authentication_error / invalid_api_key, key_revoked, key_expired,
    │                               no_session, session_expired (a console session)
    ├── PaymentRequired (402)       insufficient_quota / insufficient_balance
    ├── Forbidden (403)             permission_error / model_not_allowed, csrf_token_invalid, admin_only,
    │                               account_only
    ├── NotFound (404)              not_found_error / model_not_found, account_not_found, key_not_found,
    │                               budget_not_found
    ├── MethodNotAllowed (405)      invalid_request_error / method_not_allowed
    ├── RequestTimeout (408)        invalid_request_error / body_timeout
    ├── PayloadTooLarge (413)       invalid_request_error / body_too_large
    ├── Conflict (409)              invalid_request_error / already_exists, too_many_keys
    ├── UpstreamError (502)         upstream_error / upstream_error, upstream_bad_response
    ├── UpstreamTimeout (504)       upstream_error / upstream_timeout
    └── ServiceUnavailable (503)    service_unavailable / no_healthy_offer, overloaded, store_error
        └── UpstreamBusy (503)      service_unavailable / upstream_busy (with retry-after)

Messages are written for the person reading them; they never contain a credential or a stack trace.
"""

from __future__ import annotations

from typing import ClassVar


class SuanliError(Exception):
    """Base of every error the platform reports to a client or an operator of the CLI."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers = headers  # sent with the error (a 429's reset time)


class BadRequest(SuanliError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class Unauthorized(SuanliError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PaymentRequired(SuanliError):
    status = 402
    type = "insufficient_quota"
    default_code = "insufficient_balance"


class Forbidden(SuanliError):
    status = 403
    type = "permission_error"
    default_code = "model_not_allowed"


class NotFound(SuanliError):
    status = 404
    type = "not_found_error"
    default_code = "not_found"


class MethodNotAllowed(SuanliError):
    """The path exists, but not with this method; the ``allow`` header lists those it has."""

    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class Conflict(SuanliError):
    status = 409
    type = "invalid_request_error"
    default_code = "already_exists"


class RateLimited(SuanliError):
    """An allowance or a budget is spent until its window resets (the headers say when)."""

    status = 429
    type = "rate_limit_error"
    default_code = "allowance_exhausted"


class RequestTimeout(SuanliError):
    """The client did not send its whole body in time (a slow-body attack, or a stalled client)."""

    status = 408
    type = "invalid_request_error"
    default_code = "body_timeout"


class PayloadTooLarge(SuanliError):
    status = 413
    type = "invalid_request_error"
    default_code = "body_too_large"


class UpstreamError(SuanliError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class UpstreamTimeout(SuanliError):
    status = 504
    type = "upstream_error"
    default_code = "upstream_timeout"


class ServiceUnavailable(SuanliError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"


class StoreUnavailable(ServiceUnavailable):
    """The database could not be reached (or answered too late) at admission: nothing was reserved or
    charged, and the writer is reconnecting; a try a moment later may succeed."""

    default_code = "store_unavailable"
    retry_after_s: ClassVar[int] = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"retry-after": str(self.retry_after_s)})


class UpstreamBusy(ServiceUnavailable):
    """Every pooled connection to the operator stayed busy for ``UPSTREAM_POOL_ACQUIRE_TIMEOUT_S``. The
    platform's own limit was reached, not the operator's fault; a try a moment later may find one free."""

    default_code = "upstream_busy"
    retry_after_s: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"retry-after": str(self.retry_after_s)})


class ConfigError(Exception):
    """The catalog or settings are wrong; raised at start-up, never while serving a request."""


class InvariantViolation(Exception):
    """A condition the code relies on does not hold: a bug, never a client's fault."""


def invariant(condition: bool, message: str) -> None:
    """Raise when ``condition`` is false. Unlike ``assert``, this survives ``python -O``."""
    if not condition:
        raise InvariantViolation(message)


ALL_ERRORS: tuple[type[SuanliError], ...] = (
    BadRequest,
    Unauthorized,
    PaymentRequired,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    RequestTimeout,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ServiceUnavailable,
    UpstreamBusy,
)
