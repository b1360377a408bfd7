"""OpenAI-compatible routes: the two proxy routes on raw ASGI, the rest as Litestar handlers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, asgi, get, post
from litestar.types import Receive, Scope, Send

from arbstr.api.asgi import new_request_id, read_body, send_error, send_response
from arbstr.api.auth import admin_only, any_key, caller
from arbstr.api.deps import ViewsDep
from arbstr.api.shapes import CostEstimate, ModelInfo, ModelList, ProviderList
from arbstr.errors import ArbstrError, BadRequest, Forbidden
from arbstr.gateway import Gateway, RequestMeta
from arbstr.keys.model import model_allowed

__all__ = [
    "PROXY_ROUTES",
    "chat_completions",
    "cost_estimate",
    "embeddings",
    "list_models",
    "list_providers",
]

log = logging.getLogger(__name__)

_POLICY = b"x-arbstr-policy"
_AUTH = b"authorization"
_CACHE = b"cache-control"
PROXY_ROUTES = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings"}


async def proxy(
    scope: Scope, receive: Receive, send: Send, endpoint: str, gateway: Gateway
) -> None:
    """One proxied request, end to end; every failure answers in the OpenAI error shape."""
    started = time.monotonic()
    request_id = new_request_id()
    if scope.get("method") != "POST":
        error: ArbstrError = BadRequest(
            f"method {scope.get('method')} not allowed on this route; use POST",
            status=405,
            code="method_not_allowed",
        )
        await send_error(send, error, request_id, [(b"allow", b"POST")])
        return
    policy: str | None = None
    auth: bytes | None = None
    cache: str | None = None
    for key, value in scope["headers"]:
        if key == _POLICY:
            policy = value.decode("latin-1")
        elif key == _AUTH:
            auth = value
        elif key == _CACHE:
            cache = value.decode("latin-1")
    client = scope.get("client")
    meta = RequestMeta(
        request_id=request_id,
        started=started,
        policy_header=policy,
        authorization=auth,
        client_ip=client[0] if client else None,
        receive=receive,
        cache_control=cache,
    )
    try:
        body = await read_body(scope, receive, gateway.max_body_bytes, gateway.body_timeout_s)
    except ArbstrError as exc:
        gateway.record_rejected(meta, endpoint, exc)
        await send_error(send, exc, request_id)
        return
    try:
        if endpoint == "chat":
            response = await gateway.chat(body, meta)
        else:
            response = await gateway.embeddings(body, meta)
    except Exception as exc:  # a bug must still answer in the OpenAI shape, and be recorded
        log.exception("request %s failed inside the gateway", request_id)
        error = ArbstrError(f"internal error ({type(exc).__name__})")
        gateway.record_rejected(meta, endpoint, error)
        await send_error(send, error, request_id)
        return
    await send_response(scope, receive, send, response, request_id)


@asgi("/v1/chat/completions", copy_scope=False)
async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /v1/chat/completions: routed, retried, streamed through, recorded."""
    await proxy(scope, receive, send, "chat", scope["litestar_app"].state.gateway)


@asgi("/v1/embeddings", copy_scope=False)
async def embeddings(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /v1/embeddings: routed and priced on input tokens."""
    await proxy(scope, receive, send, "embeddings", scope["litestar_app"].state.gateway)


@get("/v1/models", sync_to_thread=False, guards=[any_key], tags=["models"])
def list_models(request: Request[Any, Any, Any], views: ViewsDep) -> ModelList:
    """The union of provider models and chain names (a virtual key: those it may use)."""
    created = int(views.started_at)
    allowed = _allowed(request, views)
    data = [
        ModelInfo(id=m, created=created, owned_by=owner)
        for m, owner in views.models()
        if allowed is None or allowed(m)
    ]
    return ModelList(data=data)


def _allowed(request: Request[Any, Any, Any], views: ViewsDep) -> Callable[[str], bool] | None:
    who = caller(request)
    keys = views.shared.keys
    if who.admin or keys is None or who.key_id is None:
        return None
    key = keys.ring.keys[who.key_id]
    project = keys.ring.projects[key.project_id]
    return lambda m: (
        model_allowed(key.allowed_models, m) and model_allowed(project.allowed_models, m)
    )


@post("/v1/cost", status_code=200, guards=[any_key], tags=["models"])
async def cost_estimate(request: Request[Any, Any, Any], views: ViewsDep) -> CostEstimate:
    """What a chat request would cost, without calling any upstream (body: a chat request)."""
    body = await request.body()
    policy = request.headers.get("x-arbstr-policy")
    estimate = msgspec.convert(views.estimate(body, policy), CostEstimate)
    allowed = _allowed(request, views)
    if allowed is not None and not allowed(estimate.model):
        raise Forbidden(
            f"model '{estimate.model}' is not allowed for this key",
            code="model_not_allowed",
            param="model",
        )
    return estimate


@get("/providers", sync_to_thread=False, guards=[admin_only], tags=["operator"])
def list_providers(views: ViewsDep) -> ProviderList:
    """Configured providers with masked keys."""
    return msgspec.convert({"providers": views.describe_providers()}, ProviderList)
