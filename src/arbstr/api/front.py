"""The ASGI entry point: proxy routes go straight to their handler, the rest through Litestar."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from arbstr.api.openai import PROXY_ROUTES, proxy

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import Receive, Scope, Send

__all__ = ["Front"]


class Front:
    """Dispatch `/v1/chat/completions` and `/v1/embeddings` before Litestar's router and middleware.

    The proxy routes read raw bytes and answer on raw ASGI anyway; skipping the framework's
    per-request routing, scope copy and exception middleware is measurable at thousands of
    requests per second (docs/adr/0008). Any other path, and the lifespan, go to Litestar, which
    also still serves the proxy routes (under a `root_path`, say).
    """

    __slots__ = ("litestar",)

    def __init__(self, litestar: Litestar) -> None:
        self.litestar = litestar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            endpoint = PROXY_ROUTES.get(scope["path"])
            if endpoint is not None:
                await proxy(scope, receive, send, endpoint, self.litestar.state.gateway)
                return
        await self.litestar(scope, receive, send)
