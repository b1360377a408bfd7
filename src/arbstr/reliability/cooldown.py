"""Cooldowns per (provider, upstream model) or whole provider, and manual fixed-window limits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import msgspec

from arbstr.config import RateLimits
from arbstr.reliability.ratelimit_headers import Quota

__all__ = ["Cooldown", "CooldownTracker", "Key", "ManualLimiter"]

Clock = Callable[[], float]
Key = tuple[str, str | None]  # (provider, upstream model); model None = the whole provider


class Cooldown(msgspec.Struct, frozen=True):
    until: float  # monotonic seconds
    reason: str


class CooldownTracker:
    """Who is cooling down until when, and the last quota each (provider, model) reported."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._until: dict[Key, Cooldown] = {}
        self.quotas: dict[Key, Quota] = {}

    def set(self, key: Key, seconds: float, reason: str) -> Cooldown:
        until = self.clock() + max(0.0, seconds)
        current = self._until.get(key)
        if current is not None and current.until > until:
            return current
        cooldown = self._until[key] = Cooldown(until, reason)
        return cooldown

    def clear(self, key: Key) -> None:
        self._until.pop(key, None)

    def _live(self, key: Key, now: float) -> Cooldown | None:
        cooldown = self._until.get(key)
        if cooldown is None:
            return None
        if cooldown.until <= now:
            del self._until[key]
            return None
        return cooldown

    def active(self, provider: str, model: str | None) -> Cooldown | None:
        if not self._until:
            return None
        now = self.clock()
        return self._live((provider, None), now) or (
            self._live((provider, model), now) if model is not None else None
        )

    def earliest_end(self, keys: Iterable[Key]) -> float | None:
        now = self.clock()
        ends = [c.until - now for k in keys if (c := self._live(k, now)) is not None]
        return min(ends) if ends else None

    def record_quota(self, key: Key, quota: Quota, default_s: float = 60.0) -> None:
        """Keep the quota; proactively cool down when it says nothing is left."""
        self.quotas[key] = quota
        if quota.exhausted:
            wait = quota.exhausted_for()
            which = "requests" if quota.remaining_requests == 0 else "tokens"
            self.set(key, default_s if wait is None else wait, f"remaining {which} 0")

    def items(self) -> list[tuple[Key, Cooldown]]:
        now = self.clock()
        return [(k, c) for k in list(self._until) if (c := self._live(k, now)) is not None]

    def snapshot(self, wall: Callable[[], float] = time.time) -> list[dict[str, object]]:
        """Rows for `GET /v1/ratelimits`."""
        now, wall_now = self.clock(), wall()
        keys = set(self.quotas) | set(self._until)
        rows: list[dict[str, object]] = []
        for key in sorted(keys, key=lambda k: (k[0], k[1] or "")):
            cooldown = self._live(key, now)
            quota = self.quotas.get(key)
            status = "exhausted" if cooldown else "tracking" if quota is not None else "available"
            rows.append(
                {
                    "provider": key[0],
                    "model": key[1],
                    "status": status,
                    "cooldown_until": wall_now + cooldown.until - now if cooldown else None,
                    "reason": cooldown.reason if cooldown else None,
                    "quota": msgspec.to_builtins(quota) if quota is not None else None,
                }
            )
        return rows


_WINDOWS = (
    ("rpm", 60.0, "manual limit: RPM exceeded"),
    ("rpd", 86400.0, "manual limit: daily request limit exceeded"),
)


class ManualLimiter:
    """Fixed-window rpm/tpm/rpd limits for providers that send no rate-limit headers."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.limits: dict[Key, RateLimits] = {}
        self._windows: dict[tuple[Key, str], tuple[float, int]] = {}

    def configure(self, provider: str, model: str | None, limits: RateLimits) -> None:
        self.limits[(provider, None)] = limits

    def _count(self, key: Key, kind: str, span: float, now: float) -> int:
        start, count = self._windows.get((key, kind), (now, 0))
        if now - start >= span:
            self._windows[(key, kind)] = (now, 0)
            return 0
        return count

    def admit(self, provider: str, model: str | None) -> Cooldown | None:
        """A cooldown when a limit of the current window is used up, else None."""
        key: Key = (provider, None)
        limits = self.limits.get(key)
        if limits is None:
            return None
        now = self.clock()
        for kind, span, reason in (*_WINDOWS, ("tpm", 60.0, "manual limit: TPM exceeded")):
            limit = getattr(limits, kind)
            if limit is not None and self._count(key, kind, span, now) >= limit:
                start = self._windows[(key, kind)][0]
                return Cooldown(start + span, reason)
        return None

    def record(
        self, provider: str, model: str | None, tokens: int | None, requests: int = 1
    ) -> None:
        """Count an answered request and/or its tokens (known later, once usage is read)."""
        key: Key = (provider, None)
        if key not in self.limits:
            return
        now = self.clock()
        for kind, span, amount in (
            ("rpm", 60.0, requests),
            ("rpd", 86400.0, requests),
            ("tpm", 60.0, tokens or 0),
        ):
            count = self._count(key, kind, span, now)
            start = self._windows.get((key, kind), (now, 0))[0]
            self._windows[(key, kind)] = (start, count + amount)
