"""How a simulated provider behaves: latency, failures, rate limits, stream faults."""

from __future__ import annotations

import copy
from typing import Annotated

import msgspec

__all__ = ["BUILTIN_PROFILES", "FIELD_HELP", "SimProfile", "builtin_profile"]

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


# What each field does: `python -m arbstr.sim --help` shows these beside the flags.
FIELD_HELP: dict[str, str] = {
    "name": "label used in answers and logs",
    "models": "models listed by GET /models (comma-separated)",
    "latency_ms": "delay before every answer, in ms",
    "failure_rate": "share of requests (0..1) answered with --failure-status",
    "failure_status": "HTTP status of a failed request (default 500)",
    "status_script": "statuses for the next requests in order, e.g. 500,500,200; then normal",
    "rate_limited": "answer every chat request 429 with retry-after and x-ratelimit-* headers",
    "retry_after": "the retry-after header of a 429 (seconds or an HTTP date; none = absent)",
    "ratelimit_headers": "x-ratelimit-* headers to send, k=v,k2=v2",
    "malformed": "answer 200 with a body that is not JSON",
    "hang": "accept requests and never answer",
    "completion_tokens": "completion tokens reported in usage (default 10, or one per chunk)",
    "cached_tokens": "prompt tokens reported as cached",
    "usage_cost": "usage.cost to report (what some upstreams bill)",
    "omit_usage": "send no usage at all",
    "chunks": "content chunks in a stream",
    "tokens_per_s": "stream pacing: chunks per second (0 = as fast as possible)",
    "cut_after_chunks": "close the connection after this many chunks (mid-stream failure)",
    "stall_after_chunks": "stop sending after this many chunks, keeping the connection open",
    "garbage_after_chunks": "send an unparseable event after this many chunks",
    "seed": "random seed for --failure-rate",
}

BUILTIN_PROFILES: dict[str, SimProfile] = {
    "healthy": SimProfile(name="healthy"),
    "flaky": SimProfile(name="flaky", failure_rate=0.3, failure_status=503),
    "ratelimited": SimProfile(name="ratelimited", rate_limited=True, retry_after="5"),
    "slow": SimProfile(name="slow", latency_ms=200.0),
}


def builtin_profile(kind: str, **overrides: object) -> SimProfile:
    """A private copy of a named profile with some fields replaced."""
    return copy.deepcopy(msgspec.structs.replace(BUILTIN_PROFILES[kind], **overrides))
