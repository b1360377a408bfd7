"""Streaming: fail over until the first byte, then pass bytes through while observing usage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import msgspec

from arbstr.attempts import AttemptResult
from arbstr.routing.cost import actual_cost, provider_reported_cost, savings
from arbstr.upstream.client import Upstream, error_kind
from arbstr.upstream.client import body_headers as _body_headers
from arbstr.upstream.sse import EventAction, SseSplitter, StreamObserver

if TYPE_CHECKING:
    from arbstr.gateway import Gateway, GatewayResponse, RequestMeta
    from arbstr.recording.record import RequestRecord
    from arbstr.routing import RoutePlan
    from arbstr.routing.resolve import Candidate
    from arbstr.schemas.chat import ChatView

__all__ = ["start_stream"]

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


async def start_stream(
    gateway: Gateway,
    body: bytes,
    view: ChatView,
    plan: RoutePlan,
    meta: RequestMeta,
    record: RequestRecord,
) -> GatewayResponse:
    """Run the attempt loop up to the first upstream byte, then hand back a byte iterator."""
    from arbstr.gateway import GatewayResponse

    bodies: dict[str, bytes] = {}
    upstream = gateway.upstream

    async def send(cand: Candidate, timeout_s: float) -> tuple[httpx.Response, StreamStart]:
        payload = gateway._body_for(body, bodies, cand, view.model, stream=True)
        response = await upstream.post(
            cand.provider.url + "/chat/completions",
            payload,
            gateway._headers(cand, meta),
            timeout_s,
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

    result = await gateway.attempt(plan, send, meta, record)
    if isinstance(result, GatewayResponse):
        return result
    cand = result.candidate
    record.provider, record.upstream_model = cand.provider.name, cand.upstream_model
    record.attempts = result.attempts
    headers = gateway._common_headers(
        meta, result.retries, sum(1 for r in result.attempts if r.skipped is None)
    )
    headers.append((b"x-arbstr-provider", cand.provider.name.encode()))
    if not result.success or result.extra.chunks is None:
        # a client error (4xx) from the upstream goes back as it was sent, secrets scrubbed
        content = gateway.scrubber.scrub(result.extra.first)
        headers.extend(_body_headers(result.response))
        record.status, record.success = result.response.status_code, False
        record.error_code = "upstream_client_error"
        record.error_message = content[:500].decode("utf-8", "replace")
        record.latency_ms = round((time.monotonic() - meta.started) * 1000, 3)
        gateway.sink.submit(record)
        return GatewayResponse(result.response.status_code, headers, content)
    headers.extend(_SSE_HEADERS)
    ttfb = time.monotonic() - meta.started
    overhead = max(0.0, ttfb - result.upstream_s)
    record.ttft_ms = round(ttfb * 1000, 3)
    record.overhead_ms = round(overhead * 1000, 3)
    # known once the first byte is in: gateway time before it, excluding the upstream's
    headers.append((b"x-arbstr-overhead-ms", f"{overhead * 1000:.3f}".encode()))
    stream = _relay(gateway, result, view, plan, meta, record)
    return GatewayResponse(200, headers, stream=stream)


async def _relay(
    gateway: Gateway,
    result: AttemptResult[StreamStart],
    view: ChatView,
    plan: RoutePlan,
    meta: RequestMeta,
    record: RequestRecord,
) -> AsyncIterator[bytes]:
    """Forward upstream events, its `[DONE]` included, untouched; then our trailer and a final
    `[DONE]`, or a visible error event when the upstream failed or never sent `[DONE]`."""
    first, chunks = result.extra.first, result.extra.chunks
    assert chunks is not None
    response = result.response
    cand = result.candidate
    wants_usage = bool(view.stream_options and view.stream_options.include_usage)
    splitter = SseSplitter(gateway.max_sse_event_bytes)
    observer = StreamObserver(forward_usage_chunk=wants_usage)
    idle = gateway.idle_timeout_s
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + gateway.max_stream_s  # a stream's whole duration, pings or not
    status = "completed"
    error_code: str | None = None
    error_message: str | None = None
    stream_started = time.monotonic()
    chunk = first
    tail = b""
    delivered = False  # the outcome is decided: a client leaving during the last write is not news
    try:
        while True:
            out: list[bytes] = []
            done = False
            for event in splitter.feed(chunk):
                action = observer.observe(event)
                if action is EventAction.FORWARD:
                    out.append(event.raw)
                elif action is EventAction.DONE:
                    # the upstream's own `[DONE]` goes through: SDKs stop reading there, so
                    # they never see the trailer below (raw SSE readers still do)
                    out.append(event.raw)
                    done = True
                    break
            if observer.garbage or observer.upstream_error or splitter.oversized:
                status, error_code = "upstream_error", "upstream_stream_error"
                error_message = observer.upstream_error or (
                    f"upstream sent an event larger than {splitter.max_event_bytes} bytes"
                    if splitter.oversized
                    else "upstream sent an unparseable event"
                )
                error_message = gateway.scrubber.scrub_text(error_message)
                if out:  # the error path: an upstream error event may echo our key
                    yield gateway.scrubber.scrub(b"".join(out))
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
                    error_message = f"the stream ran past max_stream_s ({gateway.max_stream_s:g} s)"
                else:
                    status, error_code = "idle_timeout", "stream_idle_timeout"
                    error_message = f"upstream sent nothing for {idle:g} s"
                break
            except (httpx.HTTPError, OSError) as exc:
                status, error_code = "upstream_error", "upstream_stream_error"
                error_message = f"upstream stream failed ({error_kind(exc)} error)"
                break
        if status == "completed":
            cost = _finish_usage(record, observer, cand, gateway.health.record_tokens)
            latency = time.monotonic() - meta.started
            trailer = {
                "arbstr": {
                    "cost_sats": round(cost, 6) if cost is not None else None,
                    "latency_ms": round(latency * 1000),
                    "provider": cand.provider.name,
                    "request_id": meta.request_id,
                }
            }
            if cost is not None:
                record.savings_sats = _savings(cost, plan, observer)
            delivered = True
            yield tail + b"data: " + _encoder.encode(trailer) + b"\n\n" + _DONE
        else:
            _finish_usage(record, observer, cand, gateway.health.record_tokens)
            gateway.health.record_stream_failure(cand.provider.name)
            error = {
                "error": {
                    "message": error_message,
                    "type": "server_error",
                    "param": None,
                    "code": error_code,
                }
            }
            delivered = True
            yield b"data: " + _encoder.encode(error) + b"\n\n" + _DONE
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
        await response.aclose()
        now = time.monotonic()
        record.stream_status = status
        record.status = 200
        record.success = status == "completed"
        record.error_code, record.error_message = error_code, error_message
        record.latency_ms = round((now - meta.started) * 1000, 3)
        record.stream_duration_ms = round((now - stream_started) * 1000, 3)
        gateway.sink.submit(record)


def _finish_usage(
    record: RequestRecord,
    observer: StreamObserver,
    cand: Candidate,
    record_tokens: Callable[[str, str, int | None], None],
) -> float | None:
    usage = observer.usage
    if usage is None:
        return None
    from arbstr.gateway import Gateway

    Gateway._fill_usage(record, usage)
    record_tokens(cand.provider.name, cand.upstream_model, usage.total_tokens)
    cost = actual_cost(cand.provider, usage)
    record.cost_sats = cost
    record.provider_cost_sats = provider_reported_cost(usage)
    return cost


def _savings(cost: float, plan: RoutePlan, observer: StreamObserver) -> float | None:
    usage = observer.usage
    return savings(cost, plan.candidates, usage, chat=True) if usage is not None else None
