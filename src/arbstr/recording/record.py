"""What the gateway records about every request: one `RequestRecord` with its attempts."""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["AttemptRow", "MemorySink", "RecordSink", "RequestRecord"]


class AttemptRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One upstream call, or one candidate skipped without a call."""

    provider: str
    upstream_model: str
    status: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    skipped: str | None = None  # cooldown | circuit_open | rate_limit


class RequestRecord(msgspec.Struct, kw_only=True):
    """One row of the request log (DESIGN §6). Token and cost fields are None when unknown."""

    id: str
    timestamp: float  # unix seconds, UTC
    model: str | None
    endpoint: str = "chat"  # chat | embeddings
    upstream_model: str | None = None
    provider: str | None = None
    chain: str | None = None
    policy: str | None = None
    key_id: str | None = None
    project_id: str | None = None
    charged_sats: float | None = None  # charged to the key's budget (None: not admitted)
    streaming: bool = False
    success: bool = False
    status: int = 0
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_sats: float | None = None
    provider_cost_sats: float | None = None
    savings_sats: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    stream_duration_ms: float | None = None
    overhead_ms: float | None = None
    # completed | client_disconnected | upstream_error | idle_timeout | too_long | gateway_error
    stream_status: str | None = None
    attempts: list[AttemptRow] = msgspec.field(default_factory=list)


class RecordSink(Protocol):
    """Where the gateway hands finished records; must never block or await the database."""

    def submit(self, record: RequestRecord) -> None: ...


class MemorySink:
    """Keeps the most recent records in memory (tests, and until a store is configured)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        from collections import deque

        self.records: deque[RequestRecord] = deque(maxlen=maxlen)

    def submit(self, record: RequestRecord) -> None:
        self.records.append(record)
