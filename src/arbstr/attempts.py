"""The attempt loop: call ranked candidates under one deadline, retrying and falling back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from arbstr.config import Provider, ReliabilityConfig
from arbstr.errors import ArbstrError, UpstreamTimeout
from arbstr.recording.record import AttemptRow
from arbstr.reliability.circuit import Admission, BreakerRegistry, State
from arbstr.reliability.cooldown import Cooldown, CooldownTracker, Key, ManualLimiter
from arbstr.reliability.ratelimit_headers import parse_quota
from arbstr.reliability.retry import (
    Outcome,
    RetryHeader,
    backoff,
    classify,
    cooldown_for,
    counts_against_circuit,
    exhaustion_error,
)
from arbstr.routing.rank import Ewma
from arbstr.routing.resolve import Candidate
from arbstr.upstream.client import ResponseTooLarge, error_kind, rate_limit_headers
from arbstr.upstream.http1 import HeadersTooLarge

__all__ = ["AttemptResult", "Health", "LoopFailed", "Send", "T", "run_attempts"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Health:
    """Everything the loop learns about providers: circuits, cooldowns, manual limits, latency."""

    config: ReliabilityConfig
    breakers: BreakerRegistry
    cooldowns: CooldownTracker
    limiter: ManualLimiter
    latency: dict[str, Ewma] = field(default_factory=dict)
    # what changed since the last sync with other replicas (only read when state is shared)
    dirty_circuits: set[str] = field(default_factory=set)
    dirty_cooldowns: set[Key] = field(default_factory=set)

    def record_tokens(self, provider: str, model: str, tokens: int | None) -> None:
        """Feed a finished request's tokens to the provider's manual tokens-per-minute limit."""
        if tokens:
            self.limiter.record(provider, model, tokens, requests=0)

    def record_stream_failure(self, provider: str) -> None:
        """A stream that died after its first byte counts against the provider's circuit."""
        self.breakers.get(provider).record_failure()
        self.dirty_circuits.add(provider)

    @classmethod
    def create(cls, config: ReliabilityConfig, providers: Sequence[Provider] = ()) -> Health:
        clock = time.monotonic
        health = cls(
            config=config,
            breakers=BreakerRegistry(config, clock),
            cooldowns=CooldownTracker(clock),
            limiter=ManualLimiter(clock),
        )
        for p in providers:
            if p.rate_limits is not None:
                health.limiter.configure(p.name, None, p.rate_limits)
        return health

    def circuit_wait(self, rows: Sequence[AttemptRow]) -> float | None:
        """Seconds until the first skipped open circuit admits a probe."""
        now = time.monotonic()
        ends = [
            b.open_until - now
            for r in rows
            if r.skipped == "circuit_open"
            and (b := self.breakers.get(r.provider)).open_until is not None
        ]
        return max(0.0, min(ends)) if ends else None

    def _blocking_cooldown(self, name: str, models: Sequence[str]) -> Cooldown | None:
        """The cooldown that keeps every configured model of a provider out, else None.

        `models` empty means the provider serves any model: only a provider-wide cooldown (or
        a used-up manual limit) keeps it out then.
        """
        whole = self.cooldowns.active(name, None) or self.limiter.admit(name, None)
        if whole is not None or not models:
            return whole
        found = [self.cooldowns.active(name, m) for m in models]
        cooling = [c for c in found if c is not None]
        if len(cooling) < len(found):
            return None
        return min(cooling, key=lambda c: c.until)

    def report(self, providers: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """`/health`: ok, degraded (a circuit not closed, a cooldown), unhealthy (none usable).

        `providers` maps each provider to the models it is configured for (its `models` and
        its chain entries; empty = any model).
        """
        out: dict[str, Any] = {}
        usable = 0
        degraded = False
        for name, models in providers.items():
            snap = self.breakers.get(name).snapshot()
            cooling = self._blocking_cooldown(name, models)
            entry: dict[str, Any] = {"state": snap.state, "failure_count": snap.failure_count}
            if cooling is not None:
                entry["cooldown_s"] = round(cooling.until - time.monotonic(), 3)
                entry["cooldown_reason"] = cooling.reason
            out[name] = entry
            if snap.state != "closed" or cooling is not None:
                degraded = True
            if snap.state != "open" and cooling is None:
                usable += 1
        if providers and usable == 0:
            status = "unhealthy"
        elif degraded or any(self.cooldowns.items()):
            status = "degraded"
        else:
            status = "ok"
        return {"status": status, "providers": out}

    def latency_map(self) -> dict[str, float]:
        return {name: e.value for name, e in self.latency.items() if e.value is not None}


T = TypeVar("T")


@dataclass(slots=True)
class AttemptResult(Generic[T]):
    """The answer the loop settled on: an upstream response (success or a client error)."""

    candidate: Candidate
    response: httpx.Response
    extra: T  # what `send` returned beside the response (streaming: first bytes + iterator)
    upstream_s: float  # time spent waiting on upstream calls and backoff sleeps
    attempts: list[AttemptRow]
    retries: RetryHeader
    success: bool


class LoopFailed(Exception):
    """No candidate produced an answer: the client error plus what was tried."""

    def __init__(self, error: ArbstrError, rows: list[AttemptRow], retries: RetryHeader) -> None:
        super().__init__(error.message)
        self.error, self.rows, self.retries = error, rows, retries


Send = Callable[[Candidate, float], Awaitable[tuple[httpx.Response, T]]]


async def run_attempts(
    candidates: Sequence[Candidate],
    send: Send[T],
    health: Health,
    deadline: float,
    request_timeout_s: float,
) -> AttemptResult[T]:
    """Walk `candidates` (already ranked) until one answers; raise an `ArbstrError` otherwise.

    `send(candidate, timeout_s)` performs one upstream call and returns `(response,
    first_chunk)`; for a non-streaming call the body is already read. Skipped candidates are
    recorded, not called. The whole loop shares `deadline` (monotonic seconds).
    """
    cfg = health.config
    rows: list[AttemptRow] = []
    retries = RetryHeader()
    upstream_s = 0.0
    now_wall = time.time
    # one attempt's share of the deadline while other candidates wait behind it, so a hung
    # provider leaves time for a fallback; the last candidate may use all that is left
    share = cfg.attempt_timeout_s or request_timeout_s / 2
    last = len(candidates) - 1
    for index, cand in enumerate(candidates):
        prov = cand.provider
        model = cand.upstream_model
        cooldown = health.cooldowns.active(prov.name, model) or health.limiter.admit(
            prov.name, model
        )
        if cooldown is not None:
            rows.append(AttemptRow(provider=prov.name, upstream_model=model, skipped="cooldown"))
            continue
        breaker = health.breakers.get(prov.name)
        admission = breaker.try_acquire()
        if admission is Admission.REJECTED:
            rows.append(
                AttemptRow(provider=prov.name, upstream_model=model, skipped="circuit_open")
            )
            continue
        tries = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if admission is Admission.PROBE:
                    breaker.release_probe()
                    health.dirty_circuits.add(prov.name)
                raise LoopFailed(_timeout(request_timeout_s), rows, retries)
            timeout_s = min(prov.timeout_s or (share if index < last else remaining), remaining)
            t0 = time.monotonic()
            status: int | None = None
            kind = None
            failure: BaseException | None = None
            response: httpx.Response | None = None
            extra: T | None = None
            try:
                async with asyncio.timeout(timeout_s):
                    response, extra = await send(cand, timeout_s)
                status = response.status_code
            except (TimeoutError, httpx.HTTPError, OSError) as exc:
                kind = error_kind(exc)
                failure = exc
            elapsed = time.monotonic() - t0
            upstream_s += elapsed
            outcome = classify(status, kind)
            if outcome is Outcome.SUCCESS or outcome is Outcome.RETURN_TO_CLIENT:
                assert response is not None
                if breaker.failure_count or breaker.state is not State.CLOSED:
                    breaker.record_success()
                    health.dirty_circuits.add(prov.name)
                _learn(health, cand, response, elapsed, now_wall())
                rows.append(
                    AttemptRow(
                        provider=prov.name,
                        upstream_model=model,
                        status=status,
                        latency_ms=round(elapsed * 1000, 3),
                    )
                )
                return AttemptResult(
                    cand,
                    response,
                    extra,  # type: ignore[arg-type]
                    upstream_s,
                    rows,
                    retries,
                    outcome is Outcome.SUCCESS,
                )
            error = _describe(status, kind, failure)
            failure = None  # its traceback holds this frame: no cycle through the loop
            if response is not None:
                await response.aclose()
            rows.append(
                AttemptRow(
                    provider=prov.name,
                    upstream_model=model,
                    status=status,
                    error=error,
                    latency_ms=round(elapsed * 1000, 3),
                )
            )
            retries.add(prov.name)
            if counts_against_circuit(outcome, status):
                breaker.record_failure()
                health.dirty_circuits.add(prov.name)
            elif admission is Admission.PROBE:
                breaker.record_success()
                health.dirty_circuits.add(prov.name)
            if outcome is Outcome.NEXT_COOLDOWN and response is not None:
                found = rate_limit_headers(response) or {}
                seconds, reason = cooldown_for(status or 429, found, cfg, now_wall())
                key = (prov.name, None if status == 402 else model)
                health.cooldowns.set(key, seconds, reason)
                health.dirty_cooldowns.add(key)
            elif outcome is Outcome.NEXT_KEY_PROBLEM:
                log.error(
                    "provider %s rejected its API key (HTTP %s): check its key", prov.name, status
                )
            if (
                outcome is Outcome.RETRY_SAME
                and tries < cfg.max_retries
                and admission is not Admission.PROBE
                and breaker.try_acquire() is not Admission.REJECTED
            ):
                retry_after = None
                if response is not None:
                    retry_after = _float((rate_limit_headers(response) or {}).get("retry-after"))
                wait = backoff(tries, cfg, retry_after, deadline - time.monotonic())
                if wait is not None:
                    tries += 1
                    if wait > 0:
                        await asyncio.sleep(wait)
                        upstream_s += wait
                    continue
            break
    if time.monotonic() >= deadline - 0.001 and any(r.error == "timeout" for r in rows):
        raise LoopFailed(_timeout(request_timeout_s), rows, retries)
    raise LoopFailed(
        exhaustion_error(rows, health.cooldowns, now_wall(), health.circuit_wait(rows)),
        rows,
        retries,
    )


def _learn(
    health: Health, cand: Candidate, response: httpx.Response, elapsed: float, wall: float
) -> None:
    """Feed latency and any rate-limit quota the upstream reported back into the health state."""
    name = cand.provider.name
    ewma = health.latency.get(name)
    if ewma is None:
        ewma = health.latency[name] = Ewma()
    ewma.update(elapsed * 1000)
    if response.status_code < 300:
        found = rate_limit_headers(response)
        quota = parse_quota(found, wall) if found else None
        if quota is None:  # no headers: count it against the manual limits, if any
            health.limiter.record(name, cand.upstream_model, None)
        else:
            key = (name, cand.upstream_model)
            health.cooldowns.record_quota(key, quota, health.config.cooldown_default_s)
            if quota.exhausted:
                health.dirty_cooldowns.add(key)


def _describe(status: int | None, kind: str | None, failure: BaseException | None) -> str:
    if status is not None:
        return f"HTTP {status}"
    if isinstance(failure, ResponseTooLarge):
        return "answer over max_response_bytes"
    if isinstance(failure, HeadersTooLarge):
        return "headers over the limit"
    if isinstance(failure, httpx.RemoteProtocolError):
        return "protocol error"
    return {"connect": "connection error", "timeout": "timeout"}.get(kind or "", "read error")


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
