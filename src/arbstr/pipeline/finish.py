"""Finishing a request, once for both answer paths: usage, cost and savings on the record,
the response headers, and the one `submit` of the record."""

from __future__ import annotations

import time

import httpx

from arbstr.cache.base import CachedAnswer
from arbstr.errors import ArbstrError
from arbstr.pipeline.attempts import AttemptResult
from arbstr.pipeline.context import GatewayResponse, Header, RequestContext, RequestMeta, Shared
from arbstr.recording.record import RequestRecord
from arbstr.routing.cost import (
    actual_cost,
    actual_embedding_cost,
    format_sats,
    provider_reported_cost,
    savings,
)
from arbstr.routing.resolve import Candidate
from arbstr.schemas.usage import Usage
from arbstr.upstream.client import body_headers

__all__ = [
    "charge",
    "client_error",
    "common_headers",
    "json_answer",
    "ms",
    "record_rejected",
    "refused",
    "settle_usage",
]

_JSON: Header = (b"content-type", b"application/json")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def charge(shared: Shared, ctx: RequestContext, unknown: float | None = None) -> None:
    """Settle a keyed request's reservation: the actual cost; `unknown` (its estimate, or what
    a cut stream streamed) when the cost is not known; 0 when no upstream answered it."""
    res = ctx.reservation
    if res is None or shared.keys is None:
        return
    record = ctx.record
    if record.cost_sats is not None:
        charged = record.cost_sats
    elif unknown is not None:
        charged = unknown
    elif record.success or record.error_code == "upstream_timeout":
        charged = res.estimate_sats  # an answer, or a call that may have run: never 0
    else:
        charged = 0.0  # refused by every upstream, or an upstream 4xx: nothing was served
    tokens = None
    if record.input_tokens is not None and record.output_tokens is not None:
        tokens = record.input_tokens + record.output_tokens
    shared.keys.accounts.settle(res, charged, tokens)
    record.charged_sats = round(charged, 6)


def common_headers(ctx: RequestContext) -> list[Header]:
    """`x-arbstr-request-id`, `x-arbstr-retries` (when any attempt failed), `x-arbstr-attempts`,
    and a keyed request's rate-limit and budget headers."""
    headers: list[Header] = [(b"x-arbstr-request-id", ctx.meta.request_id.encode())]
    if ctx.reservation is not None:
        headers.extend(ctx.reservation.headers)
    if ctx.retries is not None:
        value = ctx.retries.header()
        if value:
            headers.append((b"x-arbstr-retries", value.encode()))
    headers.append((b"x-arbstr-attempts", str(ctx.calls).encode()))
    return headers


def settle_usage(
    shared: Shared,
    ctx: RequestContext,
    cand: Candidate,
    usage: Usage | None,
    *,
    chat: bool,
    completed: bool = True,
) -> float | None:
    """Tokens, cost, provider cost and savings of a finished request onto its record; the
    tokens also feed the provider's manual tokens-per-minute limit. The cost, or None."""
    if usage is None:
        return None
    record = ctx.record
    record.input_tokens = usage.prompt_tokens
    record.output_tokens = usage.completion_tokens
    details = usage.prompt_tokens_details
    record.cached_tokens = details.cached_tokens if details is not None else None
    out_details = usage.completion_tokens_details
    record.reasoning_tokens = out_details.reasoning_tokens if out_details is not None else None
    shared.health.record_tokens(cand.provider.name, cand.upstream_model, usage.total_tokens)
    cost = (actual_cost if chat else actual_embedding_cost)(cand.provider, usage)
    record.cost_sats = cost
    record.provider_cost_sats = provider_reported_cost(usage)
    if completed and cost is not None and ctx.plan is not None:  # savings of finished answers
        record.savings_sats = savings(cost, ctx.plan.candidates, usage, chat=chat)
    return cost


def _answered_by(ctx: RequestContext, cand: Candidate, response: httpx.Response) -> list[Header]:
    record = ctx.record
    record.provider, record.upstream_model = cand.provider.name, cand.upstream_model
    record.status = response.status_code
    headers = common_headers(ctx)
    headers.append((b"x-arbstr-provider", cand.provider.name.encode()))
    return headers


def json_answer(
    shared: Shared, ctx: RequestContext, result: AttemptResult[bytes], usage: Usage | None
) -> GatewayResponse:
    """A whole answer: the upstream's bytes as they came, with cost and timing headers."""
    headers = _answered_by(ctx, result.candidate, result.response)
    headers.extend(body_headers(result.response))
    ctx.record.success = True
    cost = settle_usage(shared, ctx, result.candidate, usage, chat=ctx.endpoint == "chat")
    if cost is not None:
        headers.append((b"x-arbstr-cost-sats", format_sats(cost).encode()))
    if ctx.cache_status is not None:
        stored = ctx.cache_key is not None and result.response.status_code == 200
        if stored:
            stored = store_answer(shared, ctx, result, cost)
        headers.append(cache_status(ctx, stored))
    _timing(ctx, headers)
    charge(shared, ctx)
    shared.sink.submit(ctx.record)
    return GatewayResponse(result.response.status_code, headers, result.extra)


def client_error(
    shared: Shared, ctx: RequestContext, cand: Candidate, response: httpx.Response, content: bytes
) -> GatewayResponse:
    """An upstream 4xx goes back as it was sent, secrets scrubbed (the error path)."""
    content = shared.scrubber.scrub(content)
    headers = _answered_by(ctx, cand, response)
    headers.extend(body_headers(response))
    ctx.record.success = False
    ctx.record.error_code = "upstream_client_error"
    ctx.record.error_message = content[:500].decode("utf-8", "replace")
    _timing(ctx, headers)
    charge(shared, ctx)
    shared.sink.submit(ctx.record)
    return GatewayResponse(response.status_code, headers, content)


def cache_status(ctx: RequestContext, stored: bool = False) -> Header:
    """RFC 9211 `Cache-Status` for an answer that did not come from the cache."""
    value = f"arbstr; {ctx.cache_status}" + ("; stored" if stored else "")
    return (b"cache-status", value.encode())


def store_answer(
    shared: Shared, ctx: RequestContext, result: AttemptResult[bytes], cost: float | None
) -> bool:
    from arbstr.pipeline.cached import store

    content_type = result.response.headers.get("content-type", "application/json")
    entry = CachedAnswer(
        status=200,
        content_type=content_type,
        body=result.extra,
        cost_sats=cost or 0.0,
        provider=result.candidate.provider.name,
        upstream_model=result.candidate.upstream_model,
    )
    return store(shared, ctx, entry)


def _timing(ctx: RequestContext, headers: list[Header]) -> None:
    elapsed = time.monotonic() - ctx.meta.started
    overhead = max(0.0, elapsed - ctx.upstream_s)
    ctx.record.latency_ms = round(elapsed * 1000, 3)
    ctx.record.overhead_ms = round(overhead * 1000, 3)
    headers.append((b"x-arbstr-latency-ms", str(round(elapsed * 1000)).encode()))
    headers.append((b"x-arbstr-overhead-ms", f"{overhead * 1000:.3f}".encode()))


def refused(shared: Shared, ctx: RequestContext, exc: ArbstrError) -> GatewayResponse:
    """The one translation of a gateway error (admission, exhaustion, deadline) into the
    OpenAI envelope, recorded with whatever attempts were made."""
    elapsed = time.monotonic() - ctx.meta.started
    headers = common_headers(ctx)
    headers.insert(0, _JSON)
    headers.append((b"x-arbstr-latency-ms", str(round(elapsed * 1000)).encode()))
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
    record = ctx.record
    record.status, record.success = exc.status, False
    record.error_code, record.error_message = exc.code, exc.message
    record.latency_ms = ms(elapsed)
    charge(shared, ctx)
    shared.sink.submit(record)
    return GatewayResponse(exc.status, headers, exc.body())


def record_rejected(shared: Shared, meta: RequestMeta, endpoint: str, exc: ArbstrError) -> None:
    """Record a request refused before its body was read (413, 408, a client that left)."""
    record = RequestRecord(id=meta.request_id, timestamp=meta.wall, model=None, endpoint=endpoint)
    record.status, record.error_code, record.error_message = exc.status, exc.code, exc.message
    record.latency_ms = ms(time.monotonic() - meta.started)
    shared.sink.submit(record)
