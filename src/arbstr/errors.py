"""One error tree; each error knows its HTTP status and its OpenAI-shaped envelope."""

from __future__ import annotations

import msgspec

__all__ = [
    "AllCircuitsOpen",
    "AllProvidersFailed",
    "AllRateLimited",
    "ArbstrError",
    "AuthRequired",
    "BadRequest",
    "BudgetExceeded",
    "ClientAborted",
    "ErrorBody",
    "ErrorEnvelope",
    "Forbidden",
    "InvalidJson",
    "ModelNotAllowed",
    "ModelNotFound",
    "NoProviderMatchesPolicy",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "TooManyStreams",
    "UpstreamTimeout",
    "error_body",
]


class ErrorBody(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


_encoder = msgspec.json.Encoder()


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    """Encode `{"error": {"message", "type", "param", "code"}}`."""
    return _encoder.encode(ErrorEnvelope(ErrorBody(message, type_, param, code)))


class ArbstrError(Exception):
    """Base of every error a client can see; `code` is also the low-cardinality metric label."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


class BadRequest(ArbstrError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class ModelNotFound(BadRequest):
    code = "model_not_found"


class ModelNotAllowed(BadRequest):
    code = "model_not_allowed"


class NoProviderMatchesPolicy(BadRequest):
    code = "no_provider_matches_policy"


class NotFound(ArbstrError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(ArbstrError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class ClientAborted(ArbstrError):
    """The client went away before sending the body it declared: nothing goes upstream."""

    status = 499
    type = "invalid_request_error"
    code = "client_disconnected"


class RequestTimeout(ArbstrError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class AllProvidersFailed(ArbstrError):
    status = 502
    type = "server_error"
    code = "all_providers_failed"


class AllRateLimited(ArbstrError):
    status = 429
    type = "rate_limit_error"
    code = "all_providers_rate_limited"


class AllCircuitsOpen(ArbstrError):
    status = 503
    type = "server_error"
    code = "all_circuits_open"


class UpstreamTimeout(ArbstrError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"


class AuthRequired(ArbstrError):
    """401: missing, unknown, malformed (`invalid_api_key`), expired or inactive key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(ArbstrError):
    """403: the key is known but may not do this (`project_inactive`, `model_not_allowed`)."""

    status = 403
    type = "invalid_request_error"
    code = "forbidden"


class BudgetExceeded(ArbstrError):
    status = 402
    type = "insufficient_quota"
    code = "budget_exceeded"


class TooManyStreams(ArbstrError):
    """429: the client has `[limits] max_streams_per_client` streams open already."""

    status = 429
    type = "rate_limit_error"
    code = "too_many_streams"


class RateLimited(ArbstrError):
    """429 of a key or project limit (`rate_limited`, `request_limit_exceeded`)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limited"
