"""`ProviderHealth`: what the gateway knows about each provider, behind verbs.

Circuits, cooldowns, manual limits and latency averages live here; the attempt loop reports
outcomes (`record_success`, `record_failure`, `cool_down`, `learn`), the routes read views
(`report`, `ratelimits`, `circuit_states`) and `StateSync` exchanges changes with other
replicas (`take_changes`, `apply_remote_*`). Nothing outside mutates its parts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from arbstr.config import Provider, ReliabilityConfig
from arbstr.errors import ArbstrError
from arbstr.recording.record import AttemptRow
from arbstr.reliability.circuit import Admission, BreakerRegistry, BreakerState, State
from arbstr.reliability.cooldown import Cooldown, CooldownTracker, Key, ManualLimiter
from arbstr.reliability.ratelimit_headers import parse_quota
from arbstr.reliability.retry import exhaustion_error
from arbstr.routing.rank import Ewma

__all__ = ["Admission", "ProviderHealth"]

Clock = Callable[[], float]


class ProviderHealth:
    """One per process; the request path only ever reads and writes memory here."""

    __slots__ = (
        "_breakers",
        "_circuits_changed",
        "_cooldowns",
        "_cooldowns_changed",
        "_dialects",
        "_latency",
        "_limiter",
        "_midstream",
        "clock",
        "config",
        "wall",
    )

    def __init__(
        self,
        config: ReliabilityConfig,
        providers: Sequence[Provider] = (),
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.config, self.clock, self.wall = config, clock, wall
        self._breakers = BreakerRegistry(config, clock)
        self._cooldowns = CooldownTracker(clock)
        self._limiter = ManualLimiter(clock)
        self._latency: dict[str, Ewma] = {}
        self._dialects = {p.name: p.dialect for p in providers if p.dialect is not None}
        # provider -> [mid-stream failures in a row, escalations so far]
        self._midstream: dict[str, list[int]] = {}
        # what changed since the last exchange with other replicas (`take_changes`)
        self._circuits_changed: set[str] = set()
        self._cooldowns_changed: set[Key] = set()
        for p in providers:
            if p.rate_limits is not None:
                self._limiter.configure(p.name, None, p.rate_limits)

    # ---- the attempt loop: admission --------------------------------------------------------
    def cooling(self, provider: str, model: str) -> Cooldown | None:
        """Why `(provider, model)` must be skipped now (cooldown or a used-up manual limit)."""
        return self._cooldowns.active(provider, model) or self._limiter.admit(provider, model)

    def acquire(self, provider: str) -> Admission:
        """The circuit's answer: admitted, the one half-open probe, or rejected."""
        return self._breakers.get(provider).try_acquire()

    # ---- the attempt loop: outcomes ---------------------------------------------------------
    def record_success(self, provider: str) -> None:
        breaker = self._breakers.get(provider)
        if breaker.failure_count or breaker.state is not State.CLOSED:
            breaker.record_success()
            self._circuits_changed.add(provider)

    def record_failure(self, provider: str) -> None:
        """A failed attempt, or a stream that died after its first byte."""
        self._breakers.get(provider).record_failure()
        self._circuits_changed.add(provider)

    def set_providers(self, providers: Sequence[Provider]) -> None:
        """A reload: the providers' dialects; circuits, cooldowns and latency stay by name."""
        self._dialects = {p.name: p.dialect for p in providers if p.dialect is not None}

    def stream_failed(self, provider: str) -> float | None:
        """A stream that died after its first byte (the circuit counts it too); at the
        threshold in a row, a cooldown of `midstream_cooldown_s * 2^n`, capped. Its seconds."""
        self.record_failure(provider)
        counts = self._midstream.setdefault(provider, [0, 0])
        counts[0] += 1
        if counts[0] < self.config.midstream_failure_threshold:
            return None
        cfg = self.config
        seconds = float(
            min(cfg.midstream_cooldown_max_s, cfg.midstream_cooldown_s * 2 ** counts[1])
        )
        counts[0], counts[1] = 0, counts[1] + 1
        self.cool_down((provider, None), seconds, "midstream_failures")
        return seconds

    def stream_completed(self, provider: str) -> None:
        """A stream that reached its end: the escalation starts over."""
        if provider in self._midstream:
            del self._midstream[provider]

    def release_probe(self, provider: str) -> None:
        self._breakers.get(provider).release_probe()
        self._circuits_changed.add(provider)

    def cool_down(self, key: Key, seconds: float, reason: str) -> None:
        self._cooldowns.set(key, seconds, reason)
        self._cooldowns_changed.add(key)

    def learn(
        self,
        provider: str,
        model: str,
        elapsed_s: float,
        found: dict[str, str] | None,
        *,
        answered: bool = True,
    ) -> None:
        """A call that got an answer: its latency and, for a success (`answered`), the quota
        its rate-limit headers reported (or one request against the manual limits)."""
        ewma = self._latency.get(provider)
        if ewma is None:
            ewma = self._latency[provider] = Ewma()
        ewma.update(elapsed_s * 1000)
        if not answered:
            return
        quota = parse_quota(found, self.wall(), self._dialects.get(provider)) if found else None
        if quota is None:  # no headers: count it against the manual limits, if any
            self._limiter.record(provider, model, None)
            return
        key = (provider, model)
        self._cooldowns.record_quota(key, quota, self.config.cooldown_default_s)
        if quota.exhausted:
            self._cooldowns_changed.add(key)

    def record_tokens(self, provider: str, model: str, tokens: int | None) -> None:
        """Feed a finished request's tokens to the provider's manual tokens-per-minute limit."""
        if tokens:
            self._limiter.record(provider, model, tokens, requests=0)

    # ---- answers --------------------------------------------------------------------------
    def exhaustion(self, rows: Sequence[AttemptRow]) -> ArbstrError:
        """The error for a request no candidate answered (429, 503 or 502, DESIGN §4)."""
        return exhaustion_error(rows, self._cooldowns, self.wall(), self._circuit_wait(rows))

    def _circuit_wait(self, rows: Sequence[AttemptRow]) -> float | None:
        now = self.clock()
        ends = [
            b.open_until - now
            for r in rows
            if r.skipped == "circuit_open"
            and (b := self._breakers.get(r.provider)).open_until is not None
        ]
        return max(0.0, min(ends)) if ends else None

    def latency_map(self) -> dict[str, float]:
        return {name: e.value for name, e in self._latency.items() if e.value is not None}

    def circuit_states(self, providers: Sequence[str]) -> dict[str, str]:
        return {n: self._breakers.get(n).snapshot().state for n in providers}

    def ratelimits(self) -> list[dict[str, object]]:
        """Rows of `GET /v1/ratelimits`."""
        return self._cooldowns.snapshot(self.wall)

    def _blocking_cooldown(self, name: str, models: Sequence[str]) -> Cooldown | None:
        """The cooldown that keeps every configured model of a provider out, else None.

        `models` empty means the provider serves any model: only a provider-wide cooldown (or
        a used-up manual limit) keeps it out then.
        """
        whole = self._cooldowns.active(name, None) or self._limiter.admit(name, None)
        if whole is not None or not models:
            return whole
        found = [self._cooldowns.active(name, m) for m in models]
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
            snap = self._breakers.get(name).snapshot()
            cooling = self._blocking_cooldown(name, models)
            entry: dict[str, Any] = {"state": snap.state, "failure_count": snap.failure_count}
            if cooling is not None:
                entry["cooldown_s"] = round(cooling.until - self.clock(), 3)
                entry["cooldown_reason"] = cooling.reason
            out[name] = entry
            if snap.state != "closed" or cooling is not None:
                degraded = True
            if snap.state != "open" and cooling is None:
                usable += 1
        if providers and usable == 0:
            status = "unhealthy"
        elif degraded or any(self._cooldowns.items()):
            status = "degraded"
        else:
            status = "ok"
        return {"status": status, "providers": out}

    # ---- other replicas (StateSync) ----------------------------------------------------------
    def take_changes(self) -> tuple[list[tuple[str, BreakerState]], list[tuple[Key, Cooldown]]]:
        """Circuits and live cooldowns changed here since the last call (then forgotten)."""
        circuits = [(n, self._breakers.get(n).snapshot()) for n in self._circuits_changed]
        self._circuits_changed.clear()
        cooldowns: list[tuple[Key, Cooldown]] = []
        for key in self._cooldowns_changed:
            provider, model = key
            cooling = self._cooldowns.active(provider, model)
            if cooling is not None:
                cooldowns.append((key, cooling))
        self._cooldowns_changed.clear()
        return circuits, cooldowns

    def mark_changed(self, circuits: Sequence[str], cooldowns: Sequence[Key]) -> None:
        """Changes a failed publish must send again on the next exchange."""
        self._circuits_changed.update(circuits)
        self._cooldowns_changed.update(cooldowns)

    def apply_remote_circuit(
        self, provider: str, state: str, open_until: float | None, failure_count: int
    ) -> None:
        """Adopt another replica's circuit (`open_until` on this process's clock)."""
        self._breakers.apply_remote(provider, state, open_until, failure_count)

    def apply_remote_cooldown(self, key: Key, seconds: float, reason: str) -> None:
        self._cooldowns.set(key, seconds, reason)
