"""The streaming path: fail over until the first byte, then pass bytes through, watching them.

The upstream's events, its `data: [DONE]` included, reach the client untouched and in order;
then arbstr's trailer and a final `[DONE]` (SDKs stop at the first). A stream that fails after
its first byte ends with a visible error event, never a silent truncation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import msgspec

from arbstr.cache.base import CachedAnswer
from arbstr.pipeline.attempts import AttemptResult, run_attempts
from arbstr.pipeline.cached import store
from arbstr.pipeline.context import GatewayResponse, RequestContext, Shared
from arbstr.pipeline.finish import (
    cache_status,
    charge,
    client_error,
    common_headers,
    ms,
    settle_usage,
)
from arbstr.pipeline.slots import release_stream_slot
from arbstr.routing.cost import expected_cost
from arbstr.routing.resolve import Candidate
from arbstr.schemas.chat import ChatView
from arbstr.schemas.reasoning import normalize_chunk_event
from arbstr.upstream.client import Upstream, error_kind
from arbstr.upstream.sse import EventAction, SseSplitter, StreamObserver

__all__ = ["EmptyStream", "StreamStart", "answer_stream"]

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"x-arbstr-streaming", b"true"),
]


class EmptyStream(httpx.HTTPError):
    """The upstream closed a 200 stream before sending any byte."""


@dataclass(slots=True)
class StreamStart:
    """The first bytes of an upstream body and, for a 200 stream, the iterator of the rest."""

    first: bytes
    chunks: AsyncIterator[bytes] | None


async def answer_stream(shared: Shared, ctx: RequestContext) -> GatewayResponse:
    """Run the attempt loop up to the first upstream byte, then hand back a byte iterator."""

    async def send(cand: Candidate, timeout_s: float) -> tuple[httpx.Response, StreamStart]:
        response = await shared.upstream.post(
            cand.provider.url + "/chat/completions",
            shared.body_for(ctx, cand),
            shared.headers(cand, ctx.meta),
            timeout_s,
            cand.provider.verify,
        )
        if response.status_code != 200:
            limit = cand.provider.max_response_bytes
            return response, StreamStart(await Upstream.read(response, limit), None)
        chunks = Upstream.chunks(response)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            await response.aclose()
            raise EmptyStream("upstream closed the stream before the first byte") from None
        except BaseException:
            await response.aclose()
            raise
        return response, StreamStart(first, chunks)

    result = await run_attempts(shared, ctx, send)
    cand = result.candidate
    if not result.success or result.extra.chunks is None:
        return client_error(shared, ctx, cand, result.response, result.extra.first)
    record = ctx.record
    record.provider, record.upstream_model = cand.provider.name, cand.upstream_model
    headers = common_headers(ctx)
    headers.append((b"x-arbstr-provider", cand.provider.name.encode()))
    headers.extend(_SSE_HEADERS)
    ttfb = time.monotonic() - ctx.meta.started
    overhead = max(0.0, ttfb - ctx.upstream_s)
    record.ttft_ms, record.overhead_ms = ms(ttfb), ms(overhead)
    # known once the first byte is in: gateway time before it, excluding the upstream's
    headers.append((b"x-arbstr-overhead-ms", f"{overhead * 1000:.3f}".encode()))
    if ctx.cache_status is not None:
        headers.append(cache_status(ctx))  # stored, or not, once the stream has ended
    return GatewayResponse(200, headers, stream=_relay(shared, ctx, result))


def _error_event(code: str, message: str) -> bytes:
    error = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"data: " + _encoder.encode(error) + b"\n\n" + _DONE


async def _relay(
    shared: Shared, ctx: RequestContext, result: AttemptResult[StreamStart]
) -> AsyncIterator[bytes]:
    """Forward upstream events, its `[DONE]` included, untouched; then our trailer and a final
    `[DONE]`, or a visible error event when the upstream failed or never sent `[DONE]`."""
    first, chunks = result.extra.first, result.extra.chunks
    assert chunks is not None
    assert isinstance(ctx.view, ChatView)
    response, cand, record = result.response, result.candidate, ctx.record
    view = ctx.view
    wants_usage = bool(view.stream_options and view.stream_options.include_usage)
    splitter = SseSplitter(shared.max_sse_event_bytes)
    observer = StreamObserver(forward_usage_chunk=wants_usage)
    idle = shared.idle_timeout_s
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + shared.max_stream_s  # a stream's whole duration, pings or not
    status = "completed"
    error_code: str | None = None
    error_message: str | None = None
    stream_started = time.monotonic()
    chunk = first
    tail = b""
    delivered = False  # the outcome is decided: a client leaving during the last write is not news
    events = 0  # events forwarded: a cut stream is charged one output token per event
    normalize = shared.settings.config.server.normalize_reasoning
    # a stream to cache: its upstream events as they went out, while they fit in an entry
    kept: list[bytes] | None = [] if ctx.cache_key is not None and shared.cache else None
    kept_bytes = 0
    keep_max = shared.cache.max_entry_bytes if shared.cache is not None else 0
    try:
        while True:
            out: list[bytes] = []
            done = False
            for event in splitter.feed(chunk):
                action = observer.observe(event)
                if action is EventAction.FORWARD:
                    raw = normalize_chunk_event(event.raw) if normalize else event.raw
                    out.append(raw)
                    events += 1
                    if kept is not None:
                        kept_bytes += len(raw)
                        if kept_bytes > keep_max:
                            kept = None  # too large to cache: stop keeping
                        else:
                            kept.append(raw)
                elif action is EventAction.DONE:
                    # the upstream's own `[DONE]` goes through: SDKs stop reading there, so
                    # they never see the trailer below (raw SSE readers still do)
                    out.append(event.raw)
                    if kept is not None:
                        kept.append(event.raw)
                    done = True
                    break
            if observer.garbage or observer.upstream_error or splitter.oversized:
                status, error_code = "upstream_error", "upstream_stream_error"
                error_message = observer.upstream_error or (
                    f"upstream sent an event larger than {splitter.max_event_bytes} bytes"
                    if splitter.oversized
                    else "upstream sent an unparseable event"
                )
                error_message = shared.scrubber.scrub_text(error_message)
                if out:  # the error path: an upstream error event may echo our key
                    yield shared.scrubber.scrub(b"".join(out))
                break
            if done:
                tail = b"".join(out)  # sent with the trailer: one write for the end
                break
            if out:
                yield b"".join(out)
            try:
                # asyncio.timeout_at, not wait_for: no extra task per chunk on the hot path
                async with asyncio.timeout_at(min(loop.time() + idle, ends_at)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                status, error_code = "upstream_error", "upstream_stream_error"
                error_message = "upstream closed the stream before [DONE]"
                break
            except TimeoutError:
                if loop.time() >= ends_at:
                    status, error_code = "too_long", "stream_max_duration"
                    error_message = f"the stream ran past max_stream_s ({shared.max_stream_s:g} s)"
                else:
                    status, error_code = "idle_timeout", "stream_idle_timeout"
                    error_message = f"upstream sent nothing for {idle:g} s"
                break
            except (httpx.HTTPError, OSError) as exc:
                status, error_code = "upstream_error", "upstream_stream_error"
                error_message = f"upstream stream failed ({error_kind(exc)} error)"
                break
        completed = status == "completed"
        cost = settle_usage(shared, ctx, cand, observer.usage, chat=True, completed=completed)
        delivered = True
        if status == "completed":
            shared.health.stream_completed(cand.provider.name)
            if kept is not None:
                entry = CachedAnswer(status=200, content_type="text/event-stream", events=kept,
                                     cost_sats=cost or 0.0, provider=cand.provider.name,
                                     upstream_model=cand.upstream_model)  # fmt: skip
                store(shared, ctx, entry)
            trailer = {
                "arbstr": {
                    "cost_sats": round(cost, 6) if cost is not None else None,
                    "latency_ms": round((time.monotonic() - ctx.meta.started) * 1000),
                    "provider": cand.provider.name,
                    "request_id": ctx.meta.request_id,
                }
            }
            yield tail + b"data: " + _encoder.encode(trailer) + b"\n\n" + _DONE
        else:
            cooled = shared.health.stream_failed(cand.provider.name)
            if cooled is not None:
                log.warning(
                    "provider %s: %d streams in a row failed mid-way; cooling down for %g s",
                    cand.provider.name,
                    shared.health.config.midstream_failure_threshold,
                    cooled,
                )
            assert error_code is not None
            assert error_message is not None
            yield _error_event(error_code, error_message)
    except Exception:
        # a bug in the relay: the record says so, the ASGI layer logs it with the request id
        status, error_code = "gateway_error", "internal_error"
        error_message = "the gateway failed while relaying the stream"
        raise
    except (asyncio.CancelledError, GeneratorExit):
        if not delivered:
            status = "client_disconnected"
            error_code, error_message = "client_disconnected", "client disconnected mid-stream"
        raise
    finally:
        release_stream_slot(shared, ctx)
        await response.aclose()
        now = time.monotonic()
        record.stream_status = status
        record.status = 200
        record.success = status == "completed"
        record.error_code, record.error_message = error_code, error_message
        record.latency_ms = ms(now - ctx.meta.started)
        record.stream_duration_ms = ms(now - stream_started)
        if ctx.reservation is not None:
            plan = ctx.plan
            streamed = expected_cost(cand.provider, plan.in_est if plan else 0, events)
            charge(shared, ctx, streamed)
        shared.sink.submit(record)
