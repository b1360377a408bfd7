"""Tables, indexes and ordered migrations shared by the SQLite and PostgreSQL request logs."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from arbstr.recording.record import RequestRecord

__all__ = [
    "ATTEMPT_COLUMNS",
    "HIST_EDGES_MS",
    "KEY_ROLLUP_EXTRA",
    "MIGRATIONS",
    "REQUEST_COLUMNS",
    "ROLLUP_SUMS",
    "attempt_rows",
    "by_key_rollup_rows",
    "hour_of",
    "key_rollup_rows",
    "request_row",
    "rollup_rows",
]

REQUEST_COLUMNS = (
    "id", "ts", "model", "upstream_model", "provider", "chain", "policy", "key_id", "endpoint",
    "streaming", "success", "status", "error_code", "error_message", "input_tokens",
    "cached_tokens", "output_tokens", "reasoning_tokens", "cost_sats", "provider_cost_sats",
    "savings_sats", "latency_ms", "ttft_ms", "stream_duration_ms", "overhead_ms", "stream_status",
    "attempt_count", "project_id", "charged_sats",
)  # fmt: skip
# migration 0001 is frozen: the columns it created (0002 added project_id and charged_sats)
_V1_COLUMNS = REQUEST_COLUMNS[:-2]
ATTEMPT_COLUMNS = (
    "request_id",
    "seq",
    "provider",
    "upstream_model",
    "status",
    "error",
    "latency_ms",
    "skipped",
)
# latency histogram per hour (upper edges, ms): percentiles over months without raw scans
HIST_EDGES_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
HIST_COLUMNS = tuple(f"h{i}" for i in range(len(HIST_EDGES_MS) + 1))
ROLLUP_SUMS = (
    "total",
    "success",
    "error",
    "streaming",
    "input_tokens",
    "output_tokens",
    "cost_sats",
    "savings_sats",
    "latency_sum_ms",
    "latency_count",
    *HIST_COLUMNS,
)


def _ddl(real: str, text_pk: str) -> list[str]:
    req_cols = ", ".join(
        f"{c} {_type(c, real)}" + (f" {text_pk}" if c == "id" else "") for c in _V1_COLUMNS
    )
    hist = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in HIST_COLUMNS)
    return [
        f"CREATE TABLE IF NOT EXISTS requests ({req_cols})",
        "CREATE TABLE IF NOT EXISTS attempts (request_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "provider TEXT NOT NULL, upstream_model TEXT, status INTEGER, error TEXT, "
        f"latency_ms {real}, skipped TEXT, PRIMARY KEY (request_id, seq))",
        f"CREATE TABLE IF NOT EXISTS requests_hourly (hour {real} NOT NULL, model TEXT NOT NULL, "
        "provider TEXT NOT NULL, total INTEGER NOT NULL DEFAULT 0, success INTEGER NOT NULL "
        "DEFAULT 0, error INTEGER NOT NULL DEFAULT 0, streaming INTEGER NOT NULL DEFAULT 0, "
        "input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, "
        f"cost_sats {real} NOT NULL DEFAULT 0, savings_sats {real} NOT NULL DEFAULT 0, "
        f"latency_sum_ms {real} NOT NULL DEFAULT 0, latency_count INTEGER NOT NULL DEFAULT 0, "
        f"{hist}, PRIMARY KEY (hour, model, provider))",
        "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
        "CREATE INDEX IF NOT EXISTS requests_model_ts ON requests (model, ts)",
        "CREATE INDEX IF NOT EXISTS requests_provider_ts ON requests (provider, ts)",
        "CREATE INDEX IF NOT EXISTS requests_success_ts ON requests (success, ts)",
        "CREATE INDEX IF NOT EXISTS requests_streaming_ts ON requests (streaming, ts)",
        "CREATE INDEX IF NOT EXISTS requests_cost ON requests (cost_sats)",
        "CREATE INDEX IF NOT EXISTS requests_latency ON requests (latency_ms)",
    ]


def _type(column: str, real: str) -> str:
    if column in (
        "id",
        "model",
        "upstream_model",
        "provider",
        "chain",
        "policy",
        "key_id",
        "project_id",
        "endpoint",
        "error_code",
        "error_message",
        "stream_status",
    ):
        return "TEXT" + (" NOT NULL" if column == "id" else "")
    if column in (
        "streaming",
        "success",
        "status",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "reasoning_tokens",
        "attempt_count",
    ):
        return "INTEGER"
    return real + (" NOT NULL" if column == "ts" else "")


KEY_ROLLUP_EXTRA = ("charged_sats", "admitted", "last_ts")


def _keys_ddl(real: str) -> list[str]:
    """Per-key spend and usage: the ledger budgets and `/admin/keys/{id}/usage` read."""
    hist = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in HIST_COLUMNS)
    return [
        "ALTER TABLE requests ADD COLUMN project_id TEXT",
        f"ALTER TABLE requests ADD COLUMN charged_sats {real}",
        f"CREATE TABLE IF NOT EXISTS requests_hourly_keys (hour {real} NOT NULL, "
        "key_id TEXT NOT NULL, project_id TEXT, model TEXT NOT NULL, provider TEXT NOT NULL, "
        "total INTEGER NOT NULL DEFAULT 0, success INTEGER NOT NULL DEFAULT 0, error INTEGER "
        "NOT NULL DEFAULT 0, streaming INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL "
        f"DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, cost_sats {real} NOT NULL "
        f"DEFAULT 0, savings_sats {real} NOT NULL DEFAULT 0, latency_sum_ms {real} NOT NULL "
        f"DEFAULT 0, latency_count INTEGER NOT NULL DEFAULT 0, {hist}, charged_sats {real} NOT "
        f"NULL DEFAULT 0, admitted INTEGER NOT NULL DEFAULT 0, last_ts {real} NOT NULL DEFAULT 0, "
        "PRIMARY KEY (hour, key_id, model, provider))",
        "CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (key_id, ts)",
        "CREATE INDEX IF NOT EXISTS requests_project_ts ON requests (project_id, ts)",
        "CREATE INDEX IF NOT EXISTS requests_hourly_keys_project "
        "ON requests_hourly_keys (project_id, hour)",
    ]


def _by_key_ddl(real: str) -> list[str]:
    """A row per key and hour (no model, no provider): the breakdowns by key and by project
    read 1/16th of the rows the per-key rollup holds; filled from it for what exists."""
    sums = ", ".join(f"SUM({c})" for c in ROLLUP_SUMS)
    cols = ", ".join(
        f"{c} {real} NOT NULL DEFAULT 0"
        if c in ("cost_sats", "savings_sats", "latency_sum_ms")
        else f"{c} INTEGER NOT NULL DEFAULT 0"
        for c in ROLLUP_SUMS
    )
    return [
        f"CREATE TABLE IF NOT EXISTS requests_hourly_by_key (hour {real} NOT NULL, "
        f"key_id TEXT NOT NULL, project_id TEXT, {cols}, PRIMARY KEY (hour, key_id))",
        "CREATE INDEX IF NOT EXISTS requests_hourly_by_key_project "
        "ON requests_hourly_by_key (project_id, hour)",
        f"INSERT INTO requests_hourly_by_key (hour, key_id, project_id, {', '.join(ROLLUP_SUMS)}) "
        f"SELECT hour, key_id, MAX(project_id), {sums} FROM requests_hourly_keys "
        "GROUP BY hour, key_id",
    ]


# (version, name, statements per dialect)
MIGRATIONS: list[tuple[int, str, dict[str, list[str]]]] = [
    (1, "0001_requests_attempts_rollup", {
        "sqlite": _ddl("REAL", "PRIMARY KEY"),
        "postgres": [
            *_ddl("DOUBLE PRECISION", "PRIMARY KEY"),
            # DESC NULLS LAST pages (most expensive / slowest first, unknown last) walk these
            "CREATE INDEX IF NOT EXISTS requests_cost_desc ON requests (cost_sats DESC NULLS LAST)",
            "CREATE INDEX IF NOT EXISTS requests_latency_desc "
            "ON requests (latency_ms DESC NULLS LAST)",
        ],
    }),
    (2, "0002_project_id_charged_key_rollup", {
        "sqlite": _keys_ddl("REAL"),
        "postgres": _keys_ddl("DOUBLE PRECISION"),
    }),
    (3, "0003_rollup_per_key_and_hour", {
        "sqlite": _by_key_ddl("REAL"),
        "postgres": _by_key_ddl("DOUBLE PRECISION"),
    }),
]  # fmt: skip


def hour_of(ts: float) -> float:
    return float(int(ts // 3600) * 3600)


def request_row(r: RequestRecord) -> tuple[Any, ...]:
    return (
        r.id, r.timestamp, r.model, r.upstream_model, r.provider, r.chain, r.policy, r.key_id,
        r.endpoint, int(r.streaming), int(r.success), r.status, r.error_code, r.error_message,
        r.input_tokens, r.cached_tokens, r.output_tokens, r.reasoning_tokens, r.cost_sats,
        r.provider_cost_sats, r.savings_sats, r.latency_ms, r.ttft_ms, r.stream_duration_ms,
        r.overhead_ms, r.stream_status, sum(1 for a in r.attempts if a.skipped is None),
        r.project_id, r.charged_sats,
    )  # fmt: skip


def attempt_rows(r: RequestRecord) -> list[tuple[Any, ...]]:
    return [
        (r.id, i, a.provider, a.upstream_model, a.status, a.error, a.latency_ms, a.skipped)
        for i, a in enumerate(r.attempts)
    ]


def _sums(r: RequestRecord, sums: list[float]) -> None:
    sums[0] += 1
    sums[1 if r.success else 2] += 1
    sums[3] += int(r.streaming)
    sums[4] += r.input_tokens or 0
    sums[5] += r.output_tokens or 0
    sums[6] += r.cost_sats or 0.0
    sums[7] += r.savings_sats or 0.0
    if r.latency_ms is not None:
        sums[8] += r.latency_ms
        sums[9] += 1
        sums[10 + bisect.bisect_left(HIST_EDGES_MS, r.latency_ms)] += 1


def key_rollup_rows(records: Sequence[RequestRecord]) -> list[tuple[Any, ...]]:
    """One row per (hour, key, model, provider): the rollup's sums, then what was charged,
    how many requests were admitted, and the last request's time."""
    acc: dict[tuple[float, str, str, str], tuple[str | None, list[float]]] = {}
    n = len(ROLLUP_SUMS)
    for r in records:
        if r.key_id is None:
            continue
        key = (hour_of(r.timestamp), r.key_id, r.model or "", r.provider or "")
        entry = acc.get(key)
        if entry is None:
            entry = acc[key] = (r.project_id, [0.0] * (n + 3))
        sums = entry[1]
        _sums(r, sums)
        if r.charged_sats is not None:
            sums[n] += r.charged_sats
            sums[n + 1] += 1
        sums[n + 2] = max(sums[n + 2], r.timestamp)
    out = []
    float_cols = {6, 7, 8, n, n + 2}
    for (hour, key_id, model, provider), (project_id, sums) in acc.items():
        vals = [s if i in float_cols else int(s) for i, s in enumerate(sums)]
        out.append((hour, key_id, project_id, model, provider, *vals))
    return out


def by_key_rollup_rows(records: Sequence[RequestRecord]) -> list[tuple[Any, ...]]:
    """One row per (hour, key) with the rollup's sums."""
    acc: dict[tuple[float, str], tuple[str | None, list[float]]] = {}
    for r in records:
        if r.key_id is None:
            continue
        key = (hour_of(r.timestamp), r.key_id)
        entry = acc.get(key)
        if entry is None:
            entry = acc[key] = (r.project_id, [0.0] * len(ROLLUP_SUMS))
        _sums(r, entry[1])
    return [
        (hour, key_id, project_id, *(s if i in (6, 7, 8) else int(s) for i, s in enumerate(sums)))
        for (hour, key_id), (project_id, sums) in acc.items()
    ]


def rollup_rows(records: Sequence[RequestRecord]) -> list[tuple[Any, ...]]:
    """One row per (hour, model, provider) with the sums of this batch."""
    acc: dict[tuple[float, str, str], list[float]] = {}
    for r in records:
        key = (hour_of(r.timestamp), r.model or "", r.provider or "")
        sums = acc.get(key)
        if sums is None:
            sums = acc[key] = [0.0] * len(ROLLUP_SUMS)
        _sums(r, sums)
    out = []
    for (hour, model, provider), sums in acc.items():
        ints = [s if i in (6, 7, 8) else int(s) for i, s in enumerate(sums)]
        out.append((hour, model, provider, *ints))
    return out
