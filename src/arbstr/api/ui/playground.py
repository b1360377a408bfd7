"""The playground: send a prompt to a model or chain as the operator (an admin session, no
virtual key; recorded like any request), see the answer stream in with its provider, cost,
latency and attempts; or try every candidate once and compare them side by side."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Stream, Template

from arbstr.api.ui.pages import SECURITY_HEADERS, _nonce, _page, _sessions
from arbstr.errors import ArbstrError
from arbstr.ids import new_request_id
from arbstr.pipeline.context import RequestMeta
from arbstr.pipeline.probe import MAX_PROMPT_CHARS, probe_candidates

__all__ = ["PLAYGROUND_ROUTES"]

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
_enc = msgspec.json.Encoder()


def _models(request: Request[Any, Any, Any]) -> list[str]:
    return [m for m, _ in request.app.state.views.models()]


@get("/ui/playground", include_in_schema=False)
async def playground(request: Request[Any, Any, Any]) -> Template | Redirect:
    return _page(request, "playground.html.j2", {"models": _models(request), "form": {}})


def _refused(request: Request[Any, Any, Any], data: dict[str, str]) -> Response[Any] | None:
    nonce = _nonce(request)
    if nonce is None:
        return Redirect("/ui/login?next=/ui/playground", headers=SECURITY_HEADERS)
    if nonce and not _sessions(request).check_csrf(nonce, data.get("csrf")):
        return Response("missing or wrong CSRF token", status_code=403, media_type="text/plain")
    if len(data.get("prompt", "")) > MAX_PROMPT_CHARS:
        return Response("prompt too long", status_code=400, media_type="text/plain")
    return None


def _body(data: dict[str, str], stream: bool) -> bytes:
    message = {"role": "user", "content": data.get("prompt", "")}
    return _enc.encode({"model": data.get("model", ""), "messages": [message], "stream": stream})


def _meta(request: Request[Any, Any, Any]) -> RequestMeta:
    host = request.client.host if request.client else None
    return RequestMeta(new_request_id(), time.monotonic(), client_ip=host, operator=True)


@post("/ui/playground", include_in_schema=False, status_code=200)
async def run(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    """Without script: the whole answer (`action=run`) or every candidate (`action=test`)."""
    refused = _refused(request, data)
    if refused is not None:
        return refused
    context: dict[str, Any] = {"models": _models(request), "form": data}
    if data.get("action") == "test":
        try:
            context["test"] = await probe_candidates(
                request.app.state.gateway.shared, data.get("model", ""), data.get("prompt", "")
            )
        except ArbstrError as exc:
            context["error"] = exc.message
        return _page(request, "playground.html.j2", context)
    answer = await request.app.state.gateway.chat(_body(data, False), _meta(request))
    headers = {k.decode(): v.decode() for k, v in answer.headers}
    try:
        parsed = msgspec.json.decode(answer.body)
    except msgspec.DecodeError:
        parsed = {}
    if answer.status == 200:
        choice = (parsed.get("choices") or [{}])[0]
        context["answer"] = (choice.get("message") or {}).get("content")
    else:
        context["error"] = (parsed.get("error") or {}).get("message", f"status {answer.status}")
    context["meta"] = {
        "provider": headers.get("x-arbstr-provider"),
        "cost": headers.get("x-arbstr-cost-sats"),
        "latency": headers.get("x-arbstr-latency-ms"),
        "attempts": headers.get("x-arbstr-attempts"),
        "retries": headers.get("x-arbstr-retries"),
        "request_id": headers.get("x-arbstr-request-id"),
    }
    return _page(request, "playground.html.j2", context)


@post("/ui/playground/stream", include_in_schema=False, status_code=200)
async def stream(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    """The answer as the gateway streams it (the page's script reads the events)."""
    refused = _refused(request, data)
    if refused is not None:
        return refused
    answer = await request.app.state.gateway.chat(_body(data, True), _meta(request))
    headers = {k.decode(): v.decode() for k, v in answer.headers if k.startswith(b"x-arbstr")}
    if answer.stream is None:
        return Response(answer.body, status_code=answer.status, media_type="application/json",
                        headers=headers)  # fmt: skip
    return Stream(answer.stream, media_type="text/event-stream", headers=headers)


PLAYGROUND_ROUTES = [playground, run, stream]
