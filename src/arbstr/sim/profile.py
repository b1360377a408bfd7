"""How a simulated provider behaves: latency, failures, rate limits, stream faults."""

from __future__ import annotations

import msgspec

__all__ = ["BUILTIN_PROFILES", "SimProfile", "builtin_profile"]


class SimProfile(msgspec.Struct, kw_only=True):
    """Defaults mean healthy and instant. Every field can be changed at runtime."""

    name: str = "sim"
    models: list[str] = msgspec.field(default_factory=lambda: ["gpt-4o-mini", "gpt-4o"])
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    failure_status: int = 500
    status_script: list[int] = msgspec.field(default_factory=list)
    rate_limited: bool = False
    retry_after: str | None = "1"
    ratelimit_headers: dict[str, str] = msgspec.field(default_factory=dict)
    malformed: bool = False
    hang: bool = False
    completion_tokens: int | None = None
    cached_tokens: int = 0
    usage_cost: float | None = None
    omit_usage: bool = False
    chunks: int = 10
    tokens_per_s: float = 0.0
    cut_after_chunks: int | None = None
    stall_after_chunks: int | None = None
    garbage_after_chunks: int | None = None
    seed: int = 0


BUILTIN_PROFILES: dict[str, SimProfile] = {
    "healthy": SimProfile(name="healthy"),
    "flaky": SimProfile(name="flaky", failure_rate=0.3, failure_status=503),
    "ratelimited": SimProfile(name="ratelimited", rate_limited=True, retry_after="5"),
    "slow": SimProfile(name="slow", latency_ms=200.0),
}


def builtin_profile(kind: str, **overrides: object) -> SimProfile:
    """A copy of a named profile with some fields replaced."""
    base = BUILTIN_PROFILES[kind]
    return msgspec.structs.replace(base, **overrides)
