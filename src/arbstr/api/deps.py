"""Dependency providers shared by the controllers (responses are msgspec Structs: api/shapes.py)."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from arbstr.gateway import Gateway
from arbstr.views import Views

__all__ = ["GatewayDep", "ViewsDep", "dependencies"]

GatewayDep = NamedDependency[Gateway]
ViewsDep = NamedDependency[Views]


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
