"""The exact response cache on the request path (`[cache] enabled`, DESIGN §12).

`lookup` is an admission step before `reserve`: a hit is answered without a plan, a reservation
or an upstream call (it counts as a request, not against rate limits or budgets), recorded with
cost 0 and the would-be cost as savings. A miss that asked to be stored is written after the
answer, off the request path (a bounded number of writes in flight; past it, dropped).
Answers carry RFC 9211 `Cache-Status`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import msgspec

from arbstr.cache import (
    CachedAnswer,
    MemoryCache,
    ResponseCache,
    cache_key,
    parse_cache_control,
)
from arbstr.pipeline.context import GatewayResponse, RequestContext, Shared
from arbstr.pipeline.finish import common_headers, ms

__all__ = ["CacheState", "answer_cached", "lookup", "store"]

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_MAX_PENDING = 64


@dataclass
class CacheState:
    """The process's cache and its figures (`/metrics`)."""

    backend: ResponseCache
    ttl_s: float
    default_max_age_s: float
    max_entry_bytes: int
    counts: dict[str, int] = field(
        default_factory=lambda: {"hits": 0, "misses": 0, "bypass": 0, "stored": 0, "dropped": 0}
    )
    pending: set[asyncio.Task[None]] = field(default_factory=set)

    def figures(self) -> dict[str, float]:
        return {**self.counts, **self.backend.figures()}


def lookup(shared: Shared, ctx: RequestContext) -> Awaitable[None] | None:
    """Decide whether this request reads or writes the cache; read it when it may."""
    state = shared.cache
    if state is None:
        return None
    control = parse_cache_control(ctx.meta.cache_control)  # a bad max-age: 400
    max_age = control.max_age if control.max_age is not None else state.default_max_age_s
    if control.no_store or max_age <= 0:
        ctx.cache_status = "fwd=bypass"
        state.counts["bypass"] += 1
        return None
    project = ctx.project.id if ctx.project is not None else None
    ctx.cache_key = cache_key(project, ctx.endpoint, ctx.model, ctx.body)
    ctx.cache_ttl = min(max_age, state.ttl_s)
    if control.no_cache:
        ctx.cache_status = "fwd=request"  # a refresh: fetched, then stored
        return None
    return _read(state, ctx, max_age)


async def _read(state: CacheState, ctx: RequestContext, max_age: float) -> None:
    assert ctx.cache_key is not None
    entry = await state.backend.get(ctx.cache_key)
    if entry is not None and time.time() - entry.stored_at <= max_age:
        ctx.cached = entry
        state.counts["hits"] += 1
        return
    ctx.cache_status = "fwd=miss"
    state.counts["misses"] += 1


def answer_cached(shared: Shared, ctx: RequestContext) -> GatewayResponse:
    """Answer from the entry: the JSON body, or the stream's events one write each."""
    entry = ctx.cached
    assert entry is not None
    record = ctx.record
    record.provider, record.upstream_model = "cache", entry.upstream_model or None
    record.status, record.success = entry.status, True
    record.cost_sats, record.savings_sats = 0.0, entry.cost_sats
    elapsed = time.monotonic() - ctx.meta.started
    record.latency_ms = record.overhead_ms = ms(elapsed)
    left = max(0, round(entry.stored_at + entry.ttl_s - time.time()))
    headers = common_headers(ctx)
    headers += [
        (b"content-type", entry.content_type.encode()),
        (b"cache-status", f"arbstr; hit; ttl={left}".encode()),
        (b"x-arbstr-cost-sats", b"0"),
        (b"x-arbstr-latency-ms", str(round(elapsed * 1000)).encode()),
    ]
    shared.sink.submit(record)
    if not entry.events:
        return GatewayResponse(entry.status, headers, entry.body)
    return GatewayResponse(entry.status, headers, stream=_replay(ctx, entry))


async def _replay(ctx: RequestContext, entry: CachedAnswer) -> AsyncIterator[bytes]:
    for event in entry.events:
        yield event
    trailer = {"arbstr": {"cost_sats": 0, "cache": "hit", "request_id": ctx.meta.request_id}}
    yield b"data: " + _encoder.encode(trailer) + b"\n\ndata: [DONE]\n\n"


def store(shared: Shared, ctx: RequestContext, entry: CachedAnswer) -> bool:
    """Write `entry` under the request's key, off the request path; whether it was taken."""
    state = shared.cache
    if state is None or ctx.cache_key is None or entry.size > state.max_entry_bytes:
        return False
    entry.stored_at, entry.ttl_s = time.time(), ctx.cache_ttl
    if isinstance(state.backend, MemoryCache):  # in process: no task, no wait
        state.backend.put_now(ctx.cache_key, entry)
        state.counts["stored"] += 1
        return True
    if len(state.pending) >= _MAX_PENDING:
        state.counts["dropped"] += 1
        return False
    task = asyncio.get_running_loop().create_task(_put(state, ctx.cache_key, entry))
    state.pending.add(task)
    task.add_done_callback(state.pending.discard)
    return True


async def _put(state: CacheState, key: str, entry: CachedAnswer) -> None:
    try:
        await state.backend.put(key, entry)
        state.counts["stored"] += 1
    except Exception:  # a backend bug costs the entry, never the answer
        log.exception("response cache: put failed")
        state.counts["dropped"] += 1
