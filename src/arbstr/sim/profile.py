"""How a simulated provider behaves: latency, failures, rate limits, stream faults."""

from __future__ import annotations

import copy
from typing import Annotated

import msgspec

__all__ = ["BUILTIN_PROFILES", "SimProfile", "builtin_profile"]

_NonNeg = Annotated[float, msgspec.Meta(ge=0)]
_Count = Annotated[int, msgspec.Meta(ge=0)]


class SimProfile(msgspec.Struct, kw_only=True):
    """Defaults mean healthy and instant; bounds are checked when decoded (`/_sim/profile`, CLI)."""

    name: str = "sim"
    models: list[str] = msgspec.field(default_factory=lambda: ["gpt-4o-mini", "gpt-4o"])
    latency_ms: _NonNeg = 0.0
    failure_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    failure_status: Annotated[int, msgspec.Meta(ge=100, le=599)] = 500
    status_script: list[Annotated[int, msgspec.Meta(ge=100, le=599)]] = msgspec.field(
        default_factory=list
    )
    rate_limited: bool = False
    retry_after: str | None = "1"
    ratelimit_headers: dict[str, str] = msgspec.field(default_factory=dict)
    malformed: bool = False
    hang: bool = False
    completion_tokens: _Count | None = None
    cached_tokens: _Count = 0
    usage_cost: float | None = None
    omit_usage: bool = False
    chunks: Annotated[int, msgspec.Meta(ge=1)] = 10
    tokens_per_s: _NonNeg = 0.0
    cut_after_chunks: _Count | None = None
    stall_after_chunks: _Count | None = None
    garbage_after_chunks: _Count | None = None
    seed: int = 0


BUILTIN_PROFILES: dict[str, SimProfile] = {
    "healthy": SimProfile(name="healthy"),
    "flaky": SimProfile(name="flaky", failure_rate=0.3, failure_status=503),
    "ratelimited": SimProfile(name="ratelimited", rate_limited=True, retry_after="5"),
    "slow": SimProfile(name="slow", latency_ms=200.0),
}


def builtin_profile(kind: str, **overrides: object) -> SimProfile:
    """A private copy of a named profile with some fields replaced."""
    return copy.deepcopy(msgspec.structs.replace(BUILTIN_PROFILES[kind], **overrides))
