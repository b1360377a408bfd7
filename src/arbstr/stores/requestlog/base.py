"""The `RequestLog` protocol and its query and result types (their JSON is the HTTP contract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

from arbstr.recording.record import AttemptRow, RequestRecord

__all__ = [
    "CostDetail",
    "Costs",
    "Counts",
    "ErrorDetail",
    "GroupStats",
    "ListQuery",
    "MigrationStatus",
    "Page",
    "Performance",
    "RequestDetail",
    "RequestLog",
    "RequestSummary",
    "StatsQuery",
    "StatsResult",
    "Timeseries",
    "TimeseriesPoint",
    "TimingDetail",
    "TokensDetail",
]

SortColumn = Literal["timestamp", "cost_sats", "latency_ms"]
GroupBy = Literal["model", "provider", "key", "project"]
Bucket = Literal["minute", "hour", "day"]


class StatsQuery(msgspec.Struct, frozen=True, kw_only=True):
    since: float
    until: float
    model: str | None = None
    provider: str | None = None
    key_id: str | None = None
    project_id: str | None = None


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    since: float
    until: float
    model: str | None = None
    provider: str | None = None
    key_id: str | None = None
    project_id: str | None = None
    success: bool | None = None
    streaming: bool | None = None
    sort: SortColumn = "timestamp"
    order: Literal["asc", "desc"] = "desc"
    page: int = 1
    per_page: int = 20


class Counts(msgspec.Struct):
    total: int = 0
    success: int = 0
    error: int = 0
    streaming: int = 0


class Costs(msgspec.Struct):
    total_cost_sats: float = 0.0
    total_input_tokens: int = 0
    total_output_tokens: int = 0


class Performance(msgspec.Struct):
    avg_latency_ms: float | None = None
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None


class GroupStats(msgspec.Struct):
    counts: Counts
    costs: Costs
    performance: Performance


class StatsResult(msgspec.Struct, omit_defaults=True):
    since: str
    until: str
    counts: Counts
    costs: Costs
    performance: Performance
    savings_sats: float = 0.0
    percentiles: str = "exact"  # exact | approximate (from hourly histograms)
    models: dict[str, GroupStats] | None = None
    providers: dict[str, GroupStats] | None = None
    keys: dict[str, GroupStats] | None = None  # group_by=key: virtual keys (ids)
    projects: dict[str, GroupStats] | None = None


class TimeseriesPoint(msgspec.Struct):
    start: str
    counts: Counts
    costs: Costs


class Timeseries(msgspec.Struct):
    bucket: str
    since: str
    until: str
    data: list[TimeseriesPoint]


class Tokens(msgspec.Struct):
    input: int | None
    output: int | None


class Cost(msgspec.Struct):
    sats: float | None


class Timing(msgspec.Struct):
    latency_ms: float | None
    stream_duration_ms: float | None


class ErrorInfo(msgspec.Struct):
    status: int
    message: str | None


class RequestSummary(msgspec.Struct, omit_defaults=True):
    id: str
    timestamp: str
    model: str | None
    provider: str | None
    streaming: bool
    success: bool
    tokens: Tokens
    cost: Cost
    timing: Timing
    error: ErrorInfo | None = None


class Page(msgspec.Struct):
    data: list[RequestSummary]
    page: int
    per_page: int
    total: int
    total_pages: int


class TokensDetail(msgspec.Struct):
    input: int | None
    output: int | None
    cached: int | None = None
    reasoning: int | None = None  # already inside `output`


class CostDetail(msgspec.Struct):
    sats: float | None
    provider_sats: float | None = None  # what the upstream itself reported, when it does
    savings_sats: float | None = None  # against the most expensive candidate


class TimingDetail(msgspec.Struct):
    latency_ms: float | None
    stream_duration_ms: float | None
    ttft_ms: float | None = None
    overhead_ms: float | None = None


class ErrorDetail(msgspec.Struct):
    status: int
    message: str | None
    code: str | None = None


class RequestDetail(msgspec.Struct, omit_defaults=True):
    """One request: a row of `GET /v1/requests` (same names, same timestamp format) with every
    other recorded column beside it and its attempts (calls and skipped candidates)."""

    id: str
    timestamp: str
    model: str | None
    provider: str | None
    streaming: bool
    success: bool
    tokens: TokensDetail
    cost: CostDetail
    timing: TimingDetail
    endpoint: str
    status: int
    upstream_model: str | None = None
    chain: str | None = None
    policy: str | None = None
    key_id: str | None = None
    project_id: str | None = None
    charged_sats: float | None = None
    stream_status: str | None = None
    error: ErrorDetail | None = None
    attempts: list[AttemptRow] = msgspec.field(default_factory=list)


class MigrationStatus(msgspec.Struct):
    backend: str
    current: int
    latest: int
    pending: list[str]


@runtime_checkable
class RequestLog(Protocol):
    """Narrow on purpose. Only the recorder writes; the API and the CLI read."""

    async def migrate(self) -> MigrationStatus: ...

    async def status(self) -> MigrationStatus: ...

    async def append(self, records: Sequence[RequestRecord]) -> None: ...

    async def stats(self, query: StatsQuery, group_by: GroupBy | None = None) -> StatsResult: ...

    async def timeseries(self, query: StatsQuery, bucket: Bucket) -> Timeseries: ...

    async def list(self, query: ListQuery) -> Page: ...

    async def get(self, request_id: str) -> RequestDetail | None: ...

    async def count(self) -> int: ...

    async def spend(
        self, scope: str, since: float, ids: Sequence[str] | None = None
    ) -> dict[str, tuple[float, int, float]]: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
