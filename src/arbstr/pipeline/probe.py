"""The candidate test (DESIGN §12): call every candidate of a model or chain once, ignoring
cooldowns and circuits, and report each one's status, latency, tokens, cost and the start of its
answer. The calls are real upstream calls: each is recorded in the request log (endpoint
`test`), so what they cost is on the ledger like any other request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec

from arbstr.errors import ArbstrError
from arbstr.ids import new_request_id
from arbstr.pipeline.admit import decode_chat, plan_route
from arbstr.pipeline.context import RequestContext, RequestMeta, Shared
from arbstr.recording.record import AttemptRow, RequestRecord
from arbstr.routing.cost import actual_cost
from arbstr.schemas.usage import read_usage
from arbstr.upstream.client import Upstream, error_kind

__all__ = ["CandidateResult", "CandidateTest", "probe_candidates"]

MAX_PROMPT_CHARS = 4000
ANSWER_CHARS = 200
_enc = msgspec.json.Encoder()


class CandidateResult(msgspec.Struct, kw_only=True):
    provider: str
    upstream_model: str
    status: int | None
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_sats: float | None = None
    answer: str | None = None  # the first 200 characters
    error: str | None = None
    request_id: str


class CandidateSummary(msgspec.Struct, kw_only=True):
    ok: int
    failed: int
    cheapest: str | None
    fastest: str | None


class CandidateTest(msgspec.Struct, kw_only=True):
    model: str
    prompt: str
    results: list[CandidateResult]
    summary: CandidateSummary


def _answer(body: bytes) -> str | None:
    try:
        data: Any = msgspec.json.decode(body)
        content = data["choices"][0]["message"].get("content")
    except (msgspec.DecodeError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return str(content)[:ANSWER_CHARS] if content is not None else None


async def probe_candidates(shared: Shared, model: str, prompt: str) -> CandidateTest:
    """Every candidate once, concurrently, within the request timeout."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ArbstrError(
            f"prompt is longer than {MAX_PROMPT_CHARS} characters", status=400, param="prompt"
        )
    body = _enc.encode(
        {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64}
    )
    meta = RequestMeta("probe", time.monotonic())
    ctx = RequestContext.start(body, meta, "chat")
    decode_chat(shared, ctx)
    plan_route(shared, ctx)  # 400s for an unknown model or chain
    assert ctx.plan is not None

    async def one(index: int) -> CandidateResult:
        cand = ctx.plan.candidates[index]  # type: ignore[union-attr]
        request_id = new_request_id()
        started = time.monotonic()
        record = RequestRecord(
            id=request_id, timestamp=time.time(), model=model, endpoint="test",
            provider=cand.provider.name, upstream_model=cand.upstream_model,
        )  # fmt: skip
        result = CandidateResult(
            provider=cand.provider.name,
            upstream_model=cand.upstream_model,
            status=None,
            latency_ms=0.0,
            request_id=request_id,
        )
        try:
            payload = shared.body_for(ctx, cand)
            response = await shared.upstream.post(
                cand.provider.url + "/chat/completions",
                payload,
                shared.headers(cand, RequestMeta(request_id, started)),
                shared.request_timeout_s,
                cand.provider.verify,
            )
            content = await Upstream.read(response, cand.provider.max_response_bytes)
            result.status = response.status_code
            if response.status_code == 200:
                usage = read_usage(content)
                result.answer = _answer(content)
                if usage is not None:
                    result.input_tokens = usage.prompt_tokens
                    result.output_tokens = usage.completion_tokens
                    result.cost_sats = actual_cost(cand.provider, usage)
            else:
                text = shared.scrubber.scrub(content)[:ANSWER_CHARS]
                result.error = text.decode("utf-8", "replace")
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            result.error = f"{error_kind(exc)} error"
        result.latency_ms = round((time.monotonic() - started) * 1000, 3)
        record.status = result.status or 502
        record.success = result.status == 200
        record.latency_ms = result.latency_ms
        record.input_tokens, record.output_tokens = result.input_tokens, result.output_tokens
        record.cost_sats = result.cost_sats
        record.error_message = result.error
        attempt = AttemptRow(
            provider=cand.provider.name,
            upstream_model=cand.upstream_model,
            status=result.status,
            error=result.error,
            latency_ms=result.latency_ms,
        )
        record.attempts = [attempt]
        shared.sink.submit(record)
        return result

    results = list(await asyncio.gather(*(one(i) for i in range(len(ctx.plan.candidates)))))
    ok = [r for r in results if r.status == 200]
    priced = [r for r in ok if r.cost_sats is not None]
    summary = CandidateSummary(
        ok=len(ok),
        failed=len(results) - len(ok),
        cheapest=min(priced, key=lambda r: r.cost_sats or 0).provider if priced else None,
        fastest=min(ok, key=lambda r: r.latency_ms).provider if ok else None,
    )
    return CandidateTest(model=model, prompt=prompt, results=results, summary=summary)
