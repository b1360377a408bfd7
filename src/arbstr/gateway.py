"""`Gateway`: the thin facade the proxy routes call; it wires the pipeline's stages.

A request flows `admit` (view, route plan, every request-wide check) -> `json` or `stream`
(which run `attempts`) -> `finish` (record, cost, headers). A gateway error raised anywhere on
the way is turned into the OpenAI envelope once, here, by `finish.refused`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from arbstr.config import Settings
from arbstr.errors import AllRateLimited, ArbstrError
from arbstr.lifecycle import DRAIN
from arbstr.pipeline.admit import CHAT_STEPS, EMBEDDINGS_STEPS, admit
from arbstr.pipeline.cached import answer_cached
from arbstr.pipeline.context import GatewayResponse, RequestContext, RequestMeta, Shared
from arbstr.pipeline.finish import record_rejected, refused
from arbstr.pipeline.json import answer_json
from arbstr.pipeline.queue import WaitQueues
from arbstr.pipeline.slots import release_stream_slot
from arbstr.pipeline.stream import answer_stream
from arbstr.recording.record import AttemptRow, RecordSink
from arbstr.reliability.health import ProviderHealth
from arbstr.upstream.client import Upstream

__all__ = ["Gateway", "GatewayResponse", "Readiness", "RequestMeta"]

Readiness = Literal["ok", "unavailable", "draining"]
_Answer = Callable[[Shared, RequestContext], Awaitable[GatewayResponse]]


class Gateway:
    """One per process: the pipeline's shared wiring, and the two ways in."""

    def __init__(
        self, settings: Settings, upstream: Upstream, sink: RecordSink, health: ProviderHealth
    ) -> None:
        self.shared = Shared(settings, upstream, sink, health)
        self.ready_checks: dict[str, Callable[[], Awaitable[bool]]] = {}
        queue = settings.config.queue
        self.queue = WaitQueues(queue.max_size, queue.max_wait_s) if queue.enabled else None

    @property
    def max_body_bytes(self) -> int:
        return self.shared.max_body_bytes

    @property
    def body_timeout_s(self) -> float:
        return self.shared.body_timeout_s

    async def chat(self, body: bytes, meta: RequestMeta) -> GatewayResponse:
        """Answer one chat completion request, JSON or a stream; never raises."""
        ctx = RequestContext.start(body, meta, "chat")
        response: GatewayResponse | None = None
        try:
            await admit(self.shared, ctx, CHAT_STEPS)
            if ctx.cached is not None:
                return answer_cached(self.shared, ctx)
            response = await self._answer(ctx, answer_stream if ctx.streaming else answer_json)
            return response
        except ArbstrError as exc:
            return refused(self.shared, ctx, exc)
        finally:  # a held stream slot goes back here unless a relay holds it (and gives it back)
            if ctx.stream_slot is not None and (response is None or response.stream is None):
                release_stream_slot(self.shared, ctx)

    async def embeddings(self, body: bytes, meta: RequestMeta) -> GatewayResponse:
        """Answer one embeddings request, priced on input tokens only; never raises."""
        ctx = RequestContext.start(body, meta, "embeddings")
        try:
            await admit(self.shared, ctx, EMBEDDINGS_STEPS)
            if ctx.cached is not None:
                return answer_cached(self.shared, ctx)
            return await self._answer(ctx, answer_json)
        except ArbstrError as exc:
            return refused(self.shared, ctx, exc)

    async def _answer(self, ctx: RequestContext, answer: _Answer) -> GatewayResponse:
        """`answer`; with `[queue] enabled`, a request every candidate of which is cooling
        waits in its model's line and tries again (pipeline/queue.py), its attempts kept."""
        if self.queue is None:
            return await answer(self.shared, ctx)
        earlier: list[AttemptRow] = []
        while True:
            try:
                response = await answer(self.shared, ctx)
            except AllRateLimited as exc:
                earlier += ctx.record.attempts or []
                ctx.record.attempts = earlier  # a refusal from the queue records them all
                receive = ctx.meta.receive
                gone = functools.partial(_disconnected, receive) if receive is not None else None
                await self.queue.wait(ctx.model, ctx.meta.started, exc.retry_after or 1.0, gone)
                ctx.attempts_from = time.monotonic()  # the upstream deadline starts now
                continue
            if earlier:
                ctx.record.attempts = [*earlier, *(ctx.record.attempts or [])]
            return response

    def record_rejected(self, meta: RequestMeta, endpoint: str, exc: ArbstrError) -> None:
        """Record a request refused before its body was read (e.g. 413)."""
        record_rejected(self.shared, meta, endpoint, exc)

    async def ready(self) -> tuple[Readiness, dict[str, bool]]:
        """`ok` when every store answers within `ready_timeout_s`; `draining` from SIGTERM on
        (the checks still run, so the body says what else is wrong); else `unavailable`."""
        names = list(self.ready_checks)
        timeout = self.shared.settings.config.server.ready_timeout_s
        answers = await asyncio.gather(
            *(_within(check(), timeout) for check in self.ready_checks.values())
        )
        results = dict(zip(names, answers, strict=True))
        if DRAIN.draining:
            return "draining", {**results, "accepting": False}
        return ("ok" if all(answers) else "unavailable"), results


async def _disconnected(receive: Callable[[], Awaitable[Any]]) -> None:
    """Completes when the client disconnects (its body is read: nothing else can arrive)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _within(check: Awaitable[bool], timeout_s: float) -> bool:
    """A check that hangs (a database behind a dead network) is a failed check, not a hung probe."""
    try:
        return await asyncio.wait_for(check, timeout_s)
    except Exception:  # TimeoutError included
        return False
