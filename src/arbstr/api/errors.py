"""Exception handlers: every error a client sees is an OpenAI-shaped JSON envelope."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from arbstr.errors import ArbstrError, error_body

__all__ = ["exception_handlers"]

log = logging.getLogger(__name__)

_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    429: ("rate_limit_error", "rate_limited"),
}


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _arbstr(_: Request[Any, Any, Any], exc: ArbstrError) -> Response[bytes]:
    headers = {"retry-after": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
    return _response(exc.status, exc.body(), headers)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status >= 500:
        log.error("%s %s failed: %r", request.method, request.url.path, exc, exc_info=exc)
    type_, code = _CODES.get(status, ("server_error", "internal_error"))
    if status == 404:
        message = f"unknown route: {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    elif isinstance(exc, ValidationException):
        message, param = _validation(exc)
        return _response(status, error_body(message, type_, code, param))
    else:
        message = str(exc.detail)
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    return _response(status, error_body(message, type_, code), headers or None)


def _validation(exc: ValidationException) -> tuple[str, str | None]:
    """Litestar's body validation, as one message naming the field (and `param`)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else None
    if first is None:
        return f"invalid request body: {exc.detail}", None
    text, key = str(first.get("message", "")), str(first.get("key", ""))
    if key in ("", "data") and "`" in text:  # unknown / missing field: named in the message
        key = text.split("`")[1]
    param = key or None
    return f"invalid request body: {text}" + (f" - at `$.{key}`" if key else ""), param


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", exc_info=exc)
    return _response(500, error_body("internal error", "server_error", "internal_error"))


exception_handlers = {ArbstrError: _arbstr, HTTPException: _http, Exception: _unexpected}
