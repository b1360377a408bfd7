"""Response shapes of the management routes: msgspec Structs, so the OpenAPI schema is true."""

from __future__ import annotations

from typing import Literal

import msgspec

from arbstr.reliability.ratelimit_headers import Quota

__all__ = [
    "CircuitInfo",
    "CostEstimate",
    "HealthReport",
    "LiveReport",
    "ModelInfo",
    "ModelList",
    "ProviderInfo",
    "ProviderList",
    "RateLimitRow",
    "RateLimits",
    "ReadyReport",
]


class ModelInfo(msgspec.Struct):
    id: str
    created: int
    owned_by: str
    object: str = "model"


class ModelList(msgspec.Struct):
    """`GET /v1/models`: provider models and chain names."""

    data: list[ModelInfo]
    object: str = "list"


class CostEstimate(msgspec.Struct):
    """`POST /v1/cost`: what the request would cost at the provider routing picks first."""

    model: str
    provider: str
    upstream_model: str
    policy: str | None
    estimated_input_tokens: int
    estimated_output_tokens: int
    estimated_cost_sats: float


class ProviderInfo(msgspec.Struct):
    name: str
    url: str
    models: list[str]
    input_rate: float
    output_rate: float
    cached_input_rate: float
    base_fee: float
    key_source: str
    api_key: str | None  # masked (`sk-abc...***`), never the key


class ProviderList(msgspec.Struct):
    """`GET /providers`."""

    providers: list[ProviderInfo]


class CircuitInfo(msgspec.Struct, omit_defaults=True):
    state: Literal["closed", "open", "half_open"]
    failure_count: int
    cooldown_s: float | None = None  # seconds left, when no configured model can be used
    cooldown_reason: str | None = None


class HealthReport(msgspec.Struct):
    """`GET /health` (503 when `unhealthy`)."""

    status: Literal["ok", "degraded", "unhealthy"]
    providers: dict[str, CircuitInfo]


class LiveReport(msgspec.Struct):
    status: str = "ok"


class ReadyReport(msgspec.Struct):
    """`GET /health/ready` (503 while draining or when a store does not answer)."""

    status: Literal["ok", "unavailable", "draining"]
    checks: dict[str, bool]


class RateLimitRow(msgspec.Struct):
    provider: str
    model: str | None
    status: Literal["available", "tracking", "exhausted"]
    cooldown_until: float | None  # unix seconds
    reason: str | None
    quota: Quota | None


class QueueRow(msgspec.Struct):
    """One line of the queue (`[queue] enabled`): a model or chain's waiting requests."""

    model: str
    depth: int
    oldest_wait_s: float
    next_try_in_s: float | None


class RateLimits(msgspec.Struct):
    """`GET /v1/ratelimits`."""

    ratelimits: list[RateLimitRow]
    queues: list[QueueRow] = msgspec.field(default_factory=list)
