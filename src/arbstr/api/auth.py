"""Guards of the non-proxy routes (DESIGN §7). With auth off they let everything through.

- `admin_only`: the admin token (operator routes, `/admin/*`);
- `admin_or_key`: the admin token, or a virtual key whose project the answer is scoped to
  (`/v1/stats*`, `/v1/requests*`);
- `any_key`: a virtual key or the admin token (`/v1/models`, `/v1/cost`), `key_only`: a
  virtual key (`/v1/key`).
Every failure is throttled and aggregated into the audit log like the proxy routes' failures.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from arbstr.errors import AuthRequired, Forbidden, RateLimited
from arbstr.keys.ring import KeyRefused
from arbstr.keys.runtime import KeyService

__all__ = ["Caller", "admin_only", "admin_or_key", "any_key", "caller", "key_only"]


class Caller:
    """Who called a guarded route: `admin`, or a virtual key (its id and project)."""

    __slots__ = ("key_id", "project_id")

    def __init__(self, key_id: str | None, project_id: str | None) -> None:
        self.key_id, self.project_id = key_id, project_id

    @property
    def admin(self) -> bool:
        return self.key_id is None


def _check(
    connection: ASGIConnection[Any, Any, Any, Any], allow_key: bool, allow_admin: bool
) -> None:
    keys: KeyService | None = connection.app.state.get("key_service")
    if keys is None:
        connection.state.arbstr_caller = Caller(None, None)
        return
    address = connection.client.host if connection.client else "unknown"
    wait = keys.throttle.blocked(address)
    if wait is not None:
        raise RateLimited(
            "too many failed authentications from this address; try again later",
            code="auth_throttled",
            retry_after=wait,
        )
    header = connection.headers.get("authorization")
    token = header.partition(" ")[2].strip() if header else ""
    if token and keys.is_admin(token):
        if not allow_admin:
            raise Forbidden("this route answers for a virtual key, not the admin token")
        connection.state.arbstr_caller = Caller(None, None)
        return
    if allow_key and token.startswith("sk-arb-"):
        try:
            key, project = keys.ring.identify(
                header.encode("latin-1") if header else None, time.time()
            )
        except KeyRefused as exc:
            keys.throttle.failed(address, exc.code)
            raise
        connection.state.arbstr_caller = Caller(key.id, project.id)
        return
    if token.startswith("sk-arb-") and keys.ring.by_hash:
        try:  # a valid key on an admin route: known, but not allowed here
            keys.ring.identify(_raw(header), time.time())
        except KeyRefused:
            pass
        else:
            raise Forbidden("this route needs the admin token", code="admin_required")
    keys.throttle.failed(address, "admin_token" if not allow_key else "invalid_api_key")
    raise AuthRequired(
        "this route needs the admin token"
        + (" or a virtual key" if allow_key else "")
        + ": send 'Authorization: Bearer ...'"
    )


def _raw(header: str | None) -> bytes | None:
    return header.encode("latin-1") if header is not None else None


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    _check(connection, allow_key=False, allow_admin=True)


def admin_or_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    _check(connection, allow_key=True, allow_admin=True)


any_key = admin_or_key


def key_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    _check(connection, allow_key=True, allow_admin=False)


def caller(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    found: Caller | None = connection.state.get("arbstr_caller")
    return found if found is not None else Caller(None, None)
