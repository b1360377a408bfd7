"""The ASGI app: a `Litestar` whose proxy routes are dispatched before its router."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.enums import ScopeType

from arbstr.api.openai import PROXY_ROUTES, proxy

if TYPE_CHECKING:
    from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

__all__ = ["ArbstrApp"]


class ArbstrApp(Litestar):
    """A real `Litestar` (so `litestar run`, its CLI and any ASGI host see one) whose
    `/v1/chat/completions` and `/v1/embeddings` skip the framework's router and exception
    middleware: the proxy routes read raw bytes and answer on raw ASGI anyway, and the skipped
    per-request routing is measurable at thousands of requests per second (docs/adr/0008).

    This is a fast path, not a side door: everything that must hold for every proxied request
    (auth, limits, CORS) lives in the gateway pipeline that `proxy` enters, never in Litestar
    middleware, which these two routes do not pass. Any other path and the lifespan go through
    Litestar, which also still routes the proxy paths itself (under a `root_path`, say).
    """

    __slots__ = ()

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] == ScopeType.HTTP:
            endpoint = PROXY_ROUTES.get(scope["path"])  # type: ignore[typeddict-item]
            if endpoint is not None:
                await proxy(scope, receive, send, endpoint, self.state.gateway)  # type: ignore[arg-type]
                return
        await super().__call__(scope, receive, send)
