"""Admission: what runs before any upstream call, as an ordered list of steps.

A step reads and fills the `RequestContext` and refuses a request by raising an `ArbstrError`
(recorded and answered once, by `finish`). This is where every request-wide check goes (auth,
budgets, rate limits per key, queueing): the proxy routes are dispatched before Litestar
(ADR 0008), so Litestar middleware and guards never see them, and a step here is the one place
the fast path cannot skip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from arbstr.errors import BadRequest, InvalidJson
from arbstr.pipeline.auth import authenticate, check_model, reserve
from arbstr.pipeline.cached import lookup
from arbstr.pipeline.context import RequestContext, Shared
from arbstr.pipeline.slots import hold_stream_slot
from arbstr.schemas.chat import ChatView, EmbeddingsView, input_chars, last_user_text, prompt_chars

__all__ = ["CHAT_STEPS", "EMBEDDINGS_STEPS", "AdmissionStep", "admit", "decode"]

# a step answers None, or an awaitable when it must wait (a usage lease near a cap)
AdmissionStep = Callable[[Shared, RequestContext], Awaitable[None] | None]

_chat_view = msgspec.json.Decoder(ChatView)
_embed_view = msgspec.json.Decoder(EmbeddingsView)


def decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """The routing view of a body; every failure is a 400 that says what is wrong."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in text else None
        if param is None and text.startswith("Expected `object`"):
            raise InvalidJson("request body must be a JSON object") from None
        raise BadRequest(f"invalid request body: {text}", param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # nesting deeper than the decoder will follow
        raise InvalidJson("request body nests JSON too deeply") from None


_CHAT_KEYS = (b'"model"', b'"stream"')
_EMBED_KEYS = (b'"model"',)


def refuse_duplicates(body: bytes, names: tuple[bytes, ...]) -> None:
    """A routing key twice at the top level is a 400: we read the last one, an upstream may read
    the first (a parser differential: routed and billed as one model, served as another). Fast
    path: each name occurs at most once anywhere; else the top-level values are found (not
    parsed) and the occurrences inside them are not the top level's."""
    counts = [body.count(name) for name in names]
    if max(counts) < 2:
        return
    top = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    for name, count in zip(names, counts, strict=True):
        if count > 1 and count - sum(bytes(v).count(name) for v in top.values()) > 1:
            key = name.strip(b'"').decode()
            raise BadRequest(f"duplicate key '{key}' in the request body", param=key)


def decode_chat(shared: Shared, ctx: RequestContext) -> None:
    view: ChatView = decode(_chat_view, ctx.body)
    refuse_duplicates(ctx.body, _CHAT_KEYS)
    if view.model is None:
        raise BadRequest("missing required field 'model'", param="model")
    if view.messages is None:
        raise BadRequest("missing required field 'messages'", param="messages")
    ctx.view, ctx.streaming, ctx.model = view, view.stream, view.model
    ctx.record.model, ctx.record.streaming = view.model, view.stream


def decode_embeddings(shared: Shared, ctx: RequestContext) -> None:
    view: EmbeddingsView = decode(_embed_view, ctx.body)
    refuse_duplicates(ctx.body, _EMBED_KEYS)
    if view.model is None:
        raise BadRequest("missing required field 'model'", param="model")
    if view.input is None:
        raise BadRequest("missing required field 'input'", param="input")
    ctx.view, ctx.model = view, view.model
    ctx.record.model = view.model


def plan_route(shared: Shared, ctx: RequestContext) -> None:
    """Resolve, apply the policy and rank (pure routing; DESIGN §3)."""
    view = ctx.view
    if isinstance(view, ChatView):
        text, chars = last_user_text(view), prompt_chars(view)
        max_tokens = view.max_completion_tokens or view.max_tokens
    else:
        assert view is not None
        text, chars, max_tokens = "", input_chars(view), 0
    ctx.plan = shared.router.plan(
        ctx.model,
        policy_header=ctx.meta.policy_header,
        last_user_text=text,
        prompt_chars=chars,
        max_tokens=max_tokens,
        latency=shared.latency(),
    )
    ctx.record.chain, ctx.record.policy = ctx.plan.chain, ctx.plan.policy


CHAT_STEPS: tuple[AdmissionStep, ...] = (
    authenticate,
    decode_chat,
    check_model,
    lookup,  # a cache hit ends admission here: no plan, no reservation
    plan_route,
    hold_stream_slot,  # before reserve: a refused stream takes nothing from the key's limits
    reserve,  # a refusal from here on gives the slot back (Gateway.chat)
)
EMBEDDINGS_STEPS: tuple[AdmissionStep, ...] = (
    authenticate,
    decode_embeddings,
    check_model,
    lookup,
    plan_route,
    reserve,
)


async def admit(shared: Shared, ctx: RequestContext, steps: Sequence[AdmissionStep]) -> None:
    """Run each step in order; the first refusal raises."""
    for step in steps:
        pending = step(shared, ctx)
        if pending is not None:
            await pending
        if ctx.cached is not None:
            return
