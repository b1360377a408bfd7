"""The attempt loop: call ranked candidates under one deadline, retrying and falling back.

Small steps: skip a candidate that cannot be called (`_skip_reason`), call it (`_call`), learn
from the outcome (`_learn_failure`), then retry it, move on, or settle. When no candidate
answers, the exhaustion error is raised (never returned): the facade turns it into the
envelope once. The attempt rows and the retry header are left on the context either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from arbstr.errors import ArbstrError, UpstreamTimeout
from arbstr.pipeline.context import RequestContext, Shared
from arbstr.recording.record import AttemptRow
from arbstr.reliability.health import Admission, ProviderHealth
from arbstr.reliability.retry import (
    Outcome,
    RetryHeader,
    backoff,
    classify,
    cooldown_for,
    counts_against_circuit,
)
from arbstr.routing.resolve import Candidate
from arbstr.upstream.client import ResponseTooLarge, error_kind, rate_limit_headers
from arbstr.upstream.http1 import HeadersTooLarge

__all__ = ["AttemptResult", "Send", "T", "run_attempts"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Send = Callable[[Candidate, float], Awaitable[tuple[httpx.Response, T]]]


@dataclass(slots=True)
class AttemptResult(Generic[T]):
    """The answer the loop settled on: an upstream response (success or a client error)."""

    candidate: Candidate
    response: httpx.Response
    extra: T  # what `send` returned beside the response (streaming: first bytes + iterator)
    success: bool


async def run_attempts(shared: Shared, ctx: RequestContext, send: Send[T]) -> AttemptResult[T]:
    """Walk the plan's candidates (already ranked) until one answers; raise otherwise.

    `send(candidate, timeout_s)` performs one upstream call and returns `(response, extra)`.
    Skipped candidates are recorded, not called. The whole loop shares the request's deadline.
    """
    assert ctx.plan is not None
    health = shared.health
    cfg = health.config
    rows: list[AttemptRow] = []
    ctx.record.attempts = rows
    ctx.retries = retries = RetryHeader()
    deadline = (ctx.attempts_from or ctx.meta.started) + shared.request_timeout_s
    candidates = ctx.plan.candidates
    # one attempt's share of the deadline while other candidates wait behind it, so a hung
    # provider leaves time for a fallback; the last candidate may use all that is left
    share = cfg.attempt_timeout_s or shared.request_timeout_s / 2
    last = len(candidates) - 1
    for index, cand in enumerate(candidates):
        name, model = cand.provider.name, cand.upstream_model
        admission = _admit(health, cand, rows)
        if admission is None:
            continue
        tries = 0
        # this candidate's share, retries included, while others wait behind it
        until = min(deadline, health.clock() + share) if index < last else deadline
        while True:
            now = health.clock()
            remaining = deadline - now
            if remaining <= 0:
                if admission is Admission.PROBE:
                    health.release_probe(name)
                raise _timeout(shared.request_timeout_s)
            limit = min(cand.provider.timeout_s or (until - now), remaining)
            try:
                status, kind, error, response, extra, elapsed = await _call(send, cand, limit)
            except BaseException:  # cancelled, or a bug: a half-open probe must not stay taken
                if admission is Admission.PROBE:
                    health.release_probe(name)
                raise
            ctx.upstream_s += elapsed
            ctx.calls += 1
            outcome = classify(status, kind)
            if outcome is Outcome.SUCCESS or outcome is Outcome.RETURN_TO_CLIENT:
                assert response is not None
                rows.append(
                    AttemptRow(
                        provider=name,
                        upstream_model=model,
                        status=status,
                        latency_ms=round(elapsed * 1000, 3),
                    )
                )
                health.record_success(name)
                answered = response.status_code < 300
                found = rate_limit_headers(response) if answered else None
                health.learn(name, model, elapsed, found, answered=answered)
                return AttemptResult(
                    cand,
                    response,
                    extra,  # type: ignore[arg-type]
                    outcome is Outcome.SUCCESS,
                )
            rows.append(
                AttemptRow(
                    provider=name,
                    upstream_model=model,
                    status=status,
                    error=error,
                    latency_ms=round(elapsed * 1000, 3),
                )
            )
            retries.add(name)
            retry_after = _learn_failure(health, cand, status, response, outcome, admission)
            if response is not None:
                await response.aclose()
            if (
                outcome is Outcome.RETRY_SAME
                and tries < cfg.max_retries
                and admission is not Admission.PROBE
                and health.acquire(name) is not Admission.REJECTED
            ):
                wait = backoff(tries, cfg, retry_after, until - health.clock())
                if wait is not None:
                    tries += 1
                    if wait > 0:
                        await asyncio.sleep(wait)
                        ctx.upstream_s += wait
                    continue
            break
    if health.clock() >= deadline - 0.001 and any(r.error == "timeout" for r in rows):
        raise _timeout(shared.request_timeout_s)
    raise health.exhaustion(rows)


def _admit(health: ProviderHealth, cand: Candidate, rows: list[AttemptRow]) -> Admission | None:
    """The circuit's admission, or None (and a skipped row) when the candidate must wait."""
    name, model = cand.provider.name, cand.upstream_model
    if health.cooling(name, model) is not None:
        rows.append(AttemptRow(provider=name, upstream_model=model, skipped="cooldown"))
        return None
    admission = health.acquire(name)
    if admission is Admission.REJECTED:
        rows.append(AttemptRow(provider=name, upstream_model=model, skipped="circuit_open"))
        return None
    return admission


_CallOutcome = tuple[
    int | None, str | None, str | None, httpx.Response | None, T | None, float
]  # status, error kind, error label, response, what `send` returned, seconds


async def _call(send: Send[T], cand: Candidate, timeout_s: float) -> _CallOutcome[T]:
    """One upstream call under its own timeout; transport errors become a kind and a label."""
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            response, extra = await send(cand, timeout_s)
    except (TimeoutError, httpx.HTTPError, OSError) as exc:
        kind = error_kind(exc)
        return None, kind, _describe(kind, exc), None, None, time.monotonic() - t0
    status = response.status_code
    error = f"HTTP {status}" if status >= 400 else None
    return status, None, error, response, extra, time.monotonic() - t0


def _learn_failure(
    health: ProviderHealth,
    cand: Candidate,
    status: int | None,
    response: httpx.Response | None,
    outcome: Outcome,
    admission: Admission,
) -> float | None:
    """Feed a failed attempt back into the provider's health; the upstream's retry-after."""
    name, model = cand.provider.name, cand.upstream_model
    if counts_against_circuit(outcome, status):
        health.record_failure(name)
    elif admission is Admission.PROBE:
        health.record_success(name)
    found = rate_limit_headers(response) if response is not None else None
    if outcome is Outcome.NEXT_COOLDOWN and response is not None:
        code = status or 429
        seconds, reason = cooldown_for(code, found or {}, health.config, health.wall())
        health.cool_down((name, None if code == 402 else model), seconds, reason)
    elif outcome is Outcome.NEXT_KEY_PROBLEM:
        log.error("provider %s rejected its API key (HTTP %s): check its key", name, status)
    return _float((found or {}).get("retry-after"))


def _describe(kind: str, failure: BaseException) -> str:
    if isinstance(failure, ResponseTooLarge):
        return "answer over max_response_bytes"
    if isinstance(failure, HeadersTooLarge):
        return "headers over the limit"
    if isinstance(failure, httpx.RemoteProtocolError):
        return "protocol error"
    return {"connect": "connection error", "timeout": "timeout"}.get(kind, "read error")


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _timeout(timeout_s: float) -> ArbstrError:
    return UpstreamTimeout(
        f"the request did not complete within {timeout_s:g} s (retry budget exhausted)"
    )
