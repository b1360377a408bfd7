"""The whole-answer path (chat without `stream`, embeddings): attempts, then `finish`."""

from __future__ import annotations

import httpx

from arbstr.pipeline.attempts import run_attempts
from arbstr.pipeline.context import GatewayResponse, RequestContext, Shared
from arbstr.pipeline.finish import client_error, json_answer
from arbstr.routing.resolve import Candidate
from arbstr.schemas.reasoning import normalize_chat_body
from arbstr.schemas.usage import read_usage
from arbstr.upstream.client import Upstream

__all__ = ["MalformedUpstream", "answer_json"]


class MalformedUpstream(httpx.HTTPError):
    """The upstream answered 200 with a body that is not a JSON object."""


async def answer_json(shared: Shared, ctx: RequestContext) -> GatewayResponse:
    """Call candidates until one answers; its bytes go back unchanged."""
    path = "/chat/completions" if ctx.endpoint == "chat" else "/embeddings"
    chat = ctx.endpoint == "chat"

    async def send(cand: Candidate, timeout_s: float) -> tuple[httpx.Response, bytes]:
        response = await shared.upstream.post(
            cand.provider.url + path,
            shared.body_for(ctx, cand),
            shared.headers(cand, ctx.meta),
            timeout_s,
            cand.provider.verify,
        )
        content = await Upstream.read(response, cand.provider.max_response_bytes)
        if chat and response.status_code == 200 and not content.startswith(b"{"):
            raise MalformedUpstream("upstream sent a body that is not a JSON object")
        return response, content

    result = await run_attempts(shared, ctx, send)
    if not result.success:
        return client_error(shared, ctx, result.candidate, result.response, result.extra)
    if chat and shared.settings.config.server.normalize_reasoning:
        result.extra = normalize_chat_body(result.extra)
    return json_answer(shared, ctx, result, read_usage(result.extra))
