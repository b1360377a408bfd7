"""Dependency providers and small response helpers shared by the controllers."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from arbstr.gateway import Gateway
from arbstr.secrets import enc_hook
from arbstr.views import Views

__all__ = ["JSON", "GatewayDep", "ViewsDep", "dependencies", "json_response"]

JSON = (b"content-type", b"application/json")
GatewayDep = NamedDependency[Gateway]
ViewsDep = NamedDependency[Views]
_encoder = msgspec.json.Encoder(enc_hook=enc_hook)


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """Encode with msgspec (an `ApiKey` can only ever encode as `[REDACTED]`)."""
    return Response(
        _encoder.encode(content), status_code=status, media_type="application/json", headers=headers
    )


def provide_gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


def provide_views(state: State) -> Views:
    views: Views = state.views
    return views


dependencies = {
    "gateway": Provide(provide_gateway, sync_to_thread=False),
    "views": Provide(provide_views, sync_to_thread=False),
}
