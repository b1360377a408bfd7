"""The queries of the request log, written once for both SQL backends (`?` placeholders)."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from arbstr.recording.record import AttemptRow, RequestRecord
from arbstr.stores.requestlog.base import (
    Bucket,
    Cost,
    CostDetail,
    Costs,
    Counts,
    ErrorDetail,
    ErrorInfo,
    GroupBy,
    GroupStats,
    ListQuery,
    MigrationStatus,
    Page,
    Performance,
    RequestDetail,
    RequestSummary,
    StatsQuery,
    StatsResult,
    Timeseries,
    TimeseriesPoint,
    Timing,
    TimingDetail,
    Tokens,
    TokensDetail,
)
from arbstr.stores.requestlog.schema import (
    HIST_EDGES_MS,
    KEY_ROLLUP_EXTRA,
    REQUEST_COLUMNS,
    ROLLUP_SUMS,
    attempt_rows,
    hour_of,
    request_row,
    rollup_rows,
)

__all__ = ["UPSERT_BY_KEY", "SqlRequestLog", "iso", "upsert_key_rollup"]

EXACT_PERCENTILE_ROWS = 20_000
# whitelists: nothing a client sends is ever spliced into SQL except through these maps
_SORT = {"timestamp": "ts", "cost_sats": "cost_sats", "latency_ms": "latency_ms"}
_ORDER = {"asc": "ASC", "desc": "DESC"}
_GROUP = {"model": "model", "provider": "provider", "key": "key_id", "project": "project_id"}
_RAW_SUMS = (
    "COUNT(*), SUM(success), SUM(1 - success), SUM(streaming), SUM(COALESCE(input_tokens, 0)), "
    "SUM(COALESCE(output_tokens, 0)), SUM(COALESCE(cost_sats, 0)), "
    "SUM(COALESCE(savings_sats, 0)), SUM(latency_ms), COUNT(latency_ms)"
)
_ROLLUP_SUMS = ", ".join(f"SUM({c})" for c in ROLLUP_SUMS)
INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})"
)
INSERT_ATTEMPT = "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_ROLLUP = (
    f"INSERT INTO requests_hourly (hour, model, provider, {', '.join(ROLLUP_SUMS)}) "
    f"VALUES (?, ?, ?, {', '.join('?' for _ in ROLLUP_SUMS)}) "
    "ON CONFLICT (hour, model, provider) DO UPDATE SET "
    + ", ".join(f"{c} = requests_hourly.{c} + excluded.{c}" for c in ROLLUP_SUMS)
)


UPSERT_BY_KEY = (
    f"INSERT INTO requests_hourly_by_key (hour, key_id, project_id, {', '.join(ROLLUP_SUMS)}) "
    f"VALUES (?, ?, ?, {', '.join('?' for _ in ROLLUP_SUMS)}) "
    "ON CONFLICT (hour, key_id) DO UPDATE SET "
    + ", ".join(f"{c} = requests_hourly_by_key.{c} + excluded.{c}" for c in ROLLUP_SUMS)
)


def upsert_key_rollup(greatest: str) -> str:
    """The per-key rollup's upsert; `greatest` is the dialect's two-argument max."""
    cols = (*ROLLUP_SUMS, *KEY_ROLLUP_EXTRA)
    sets = [f"{c} = requests_hourly_keys.{c} + excluded.{c}" for c in cols if c != "last_ts"]
    sets.append(f"last_ts = {greatest}(requests_hourly_keys.last_ts, excluded.last_ts)")
    return (
        f"INSERT INTO requests_hourly_keys (hour, key_id, project_id, model, provider, "
        f"{', '.join(cols)}) VALUES (?, ?, ?, ?, ?, {', '.join('?' for _ in cols)}) "
        "ON CONFLICT (hour, key_id, model, provider) DO UPDATE SET " + ", ".join(sets)
    )


def iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, always the same width: `2026-12-01T08:15:00.250Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _filters(q: StatsQuery | ListQuery, time_col: str = "ts") -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if q.model is not None:
        where.append("model = ?")
        params.append(q.model)
    if q.provider is not None:
        where.append("provider = ?")
        params.append(q.provider)
    if q.key_id is not None:
        where.append("key_id = ?")
        params.append(q.key_id)
    if q.project_id is not None:
        where.append("project_id = ?")
        params.append(q.project_id)
    if isinstance(q, ListQuery):
        if q.success is not None:
            where.append("success = ?")
            params.append(int(q.success))
        if q.streaming is not None:
            where.append("streaming = ?")
            params.append(int(q.streaming))
    return "".join(f" AND {w}" for w in where), params


def _rollup_table(q: StatsQuery, group: str | None = None) -> str:
    keyed = q.key_id or q.project_id or group in ("key_id", "project_id")
    if not keyed:
        return "requests_hourly"
    if q.model is None and q.provider is None and group not in ("model", "provider"):
        return "requests_hourly_by_key"  # a row per key and hour
    return "requests_hourly_keys"


def _percentile_from_hist(hist: Sequence[float], q: float) -> float | None:
    total = sum(hist)
    if not total:
        return None
    target = q / 100 * total
    seen = 0.0
    for i, n in enumerate(hist):
        if n and seen + n >= target:
            low = HIST_EDGES_MS[i - 1] if i > 0 else 0.0
            high = HIST_EDGES_MS[i] if i < len(HIST_EDGES_MS) else HIST_EDGES_MS[-1] * 2
            return round(low + (high - low) * (target - seen) / n, 3)
        seen += n
    return None


def _exact(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values.sort()
    return round(values[max(0, math.ceil(q / 100 * len(values)) - 1)], 3)


class _Acc:
    """Sums of one group across the rollup and the raw edges."""

    __slots__ = ("hist", "sums")

    def __init__(self) -> None:
        self.sums = [0.0] * 10
        self.hist = [0.0] * (len(HIST_EDGES_MS) + 1)

    def add(self, sums: Sequence[Any], hist: Sequence[Any] = ()) -> None:
        for i, v in enumerate(sums[:10]):
            self.sums[i] += v or 0
        for i, v in enumerate(hist):
            self.hist[i] += v or 0

    def result(self, latencies: list[float] | None) -> GroupStats:
        s = self.sums
        counts = Counts(int(s[0]), int(s[1]), int(s[2]), int(s[3]))
        costs = Costs(round(s[6], 6), int(s[4]), int(s[5]))
        avg = round(s[8] / s[9], 3) if s[9] else None
        if latencies is not None:
            perf = Performance(avg, _exact(latencies, 50), _exact(latencies, 95))
        else:
            perf = Performance(
                avg, _percentile_from_hist(self.hist, 50), _percentile_from_hist(self.hist, 95)
            )
        return GroupStats(counts, costs, perf)


class SqlRequestLog(abc.ABC):
    """Shared query logic; a backend supplies fetching, batch writing and migrations."""

    backend = "sql"
    floor_expr = "FLOOR({x})"
    ts_unindexed = "ts"  # how to keep the planner off the ts index (SQLite: "+ts")

    @abc.abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    async def write(
        self,
        requests: list[tuple[Any, ...]],
        attempts: list[tuple[Any, ...]],
        rollups_of: list[RequestRecord],
    ) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> MigrationStatus: ...

    async def append(self, records: Sequence[RequestRecord]) -> None:
        if not records:
            return
        requests = [request_row(r) for r in records]
        attempts = [row for r in records for row in attempt_rows(r)]
        await self.write(requests, attempts, list(records))

    @staticmethod
    def rollups(records: Sequence[RequestRecord]) -> list[tuple[Any, ...]]:
        return rollup_rows(records)

    async def count(self) -> int:
        rows = await self.fetch("SELECT COUNT(*) FROM requests")
        return int(rows[0][0])

    async def ping(self) -> bool:
        try:
            await self.fetch("SELECT 1")
        except Exception:
            return False
        return True

    # ---- stats --------------------------------------------------------------------------
    async def _accumulate(self, q: StatsQuery, group: str | None) -> dict[str, _Acc]:
        h0 = hour_of(q.since) + (3600 if q.since % 3600 else 0)
        h1 = hour_of(q.until)
        cond, params = _filters(q)
        gsel = f"COALESCE({group}, ''), " if group else ""
        gby = f" GROUP BY COALESCE({group}, '')" if group else ""
        out: dict[str, _Acc] = {}
        edges = [(q.since, q.until)]
        if h1 > h0:
            edges = [(q.since, h0), (h1, q.until)]
            rows = await self.fetch(
                f"SELECT {gsel}{_ROLLUP_SUMS} FROM {_rollup_table(q, group)} "
                f"WHERE hour >= ? AND hour < ?{cond}{gby}",
                [h0, h1, *params],
            )
            for row in rows:
                key = row[0] if group else ""
                vals = row[1:] if group else row
                if vals[0]:
                    out.setdefault(key, _Acc()).add(vals[:10], vals[10:])
        for lo, hi in edges:
            if hi <= lo:
                continue
            rows = await self.fetch(
                f"SELECT {gsel}{_RAW_SUMS} FROM requests WHERE ts >= ? AND ts < ?{cond}{gby}",
                [lo, hi, *params],
            )
            for row in rows:
                key = row[0] if group else ""
                vals = row[1:] if group else row
                if vals[0]:
                    acc = out.setdefault(key, _Acc())
                    acc.add(vals[:10])
                    if h1 > h0:  # mixing with histograms: bucket the edge latencies too
                        lats = await self._latencies(lo, hi, q, group, key)
                        for lat in lats:
                            idx = next(
                                (i for i, e in enumerate(HIST_EDGES_MS) if lat <= e),
                                len(HIST_EDGES_MS),
                            )
                            acc.hist[idx] += 1
        return out

    async def _latencies(
        self, lo: float, hi: float, q: StatsQuery, group: str | None, key: str
    ) -> list[float]:
        cond, params = _filters(q)
        if group:
            cond += f" AND COALESCE({group}, '') = ?"
            params.append(key)
        rows = await self.fetch(
            f"SELECT latency_ms FROM requests WHERE ts >= ? AND ts < ? "
            f"AND latency_ms IS NOT NULL{cond}",
            [lo, hi, *params],
        )
        return [r[0] for r in rows]

    async def stats(self, query: StatsQuery, group_by: GroupBy | None = None) -> StatsResult:
        total = (await self._accumulate(query, None)).get("", _Acc())
        exact = total.sums[0] <= EXACT_PERCENTILE_ROWS
        lats = await self._latencies(query.since, query.until, query, None, "") if exact else None
        overall = total.result(lats)
        result = StatsResult(
            since=iso(query.since),
            until=iso(query.until),
            counts=overall.counts,
            costs=overall.costs,
            performance=overall.performance,
            savings_sats=round(total.sums[7], 6),
            percentiles="exact" if exact else "approximate",
        )
        if group_by is not None:
            column = _GROUP[group_by]
            groups: dict[str, GroupStats] = {}
            for key, acc in sorted((await self._accumulate(query, column)).items()):
                g_lats = (
                    await self._latencies(query.since, query.until, query, column, key)
                    if exact
                    else None
                )
                groups[key or "(none)"] = acc.result(g_lats)
            if group_by == "model":
                result.models = groups
            elif group_by == "provider":
                result.providers = groups
            elif group_by == "key":
                result.keys = groups
            else:
                result.projects = groups
        return result

    async def timeseries(self, query: StatsQuery, bucket: Bucket) -> Timeseries:
        size = {"minute": 60, "hour": 3600, "day": 86400}[bucket]
        cond, params = _filters(query)
        points: dict[float, _Acc] = {}
        start_expr = self.floor_expr.format(x=f"ts / {size}")
        rows = (
            await self.fetch(
                f"SELECT {start_expr} * {size} AS b, {_RAW_SUMS} FROM requests "
                f"WHERE ts >= ? AND ts < ?{cond} GROUP BY b ORDER BY b",
                [query.since, query.until, *params],
            )
            if size == 60
            else await self._hourly_series(query, size, cond, params)
        )
        for row in rows:
            points.setdefault(float(row[0]), _Acc()).add(row[1:11])
        data = [
            TimeseriesPoint(iso(b), *(lambda g: (g.counts, g.costs))(acc.result([])))
            for b, acc in sorted(points.items())
        ]
        return Timeseries(bucket, iso(query.since), iso(query.until), data)

    async def _hourly_series(
        self, q: StatsQuery, size: int, cond: str, params: list[Any]
    ) -> list[tuple[Any, ...]]:
        h0 = hour_of(q.since) + (3600 if q.since % 3600 else 0)
        h1 = hour_of(q.until)
        rows: list[tuple[Any, ...]] = []
        start_raw = self.floor_expr.format(x=f"ts / {size}")
        start_hour = self.floor_expr.format(x=f"hour / {size}")
        edges = [(q.since, q.until)]
        if h1 > h0:
            edges = [(q.since, h0), (h1, q.until)]
            sums = ", ".join(f"SUM({c})" for c in ROLLUP_SUMS[:10])
            rows += await self.fetch(
                f"SELECT {start_hour} * {size} AS b, {sums} FROM {_rollup_table(q)} "
                f"WHERE hour >= ? AND hour < ?{cond} GROUP BY b",
                [h0, h1, *params],
            )
        for lo, hi in edges:
            if hi > lo:
                rows += await self.fetch(
                    f"SELECT {start_raw} * {size} AS b, {_RAW_SUMS} FROM requests "
                    f"WHERE ts >= ? AND ts < ?{cond} GROUP BY b",
                    [lo, hi, *params],
                )
        return rows

    # ---- the ledger of virtual keys -----------------------------------------------------
    async def spend(
        self, scope: str, since: float, ids: Sequence[str] | None = None
    ) -> dict[str, tuple[float, int, float]]:
        """`{key or project id: (charged sats, admitted requests, last request time)}` since
        an hour boundary (budget periods start on one), from the per-key rollup."""
        column = {"key": "key_id", "project": "project_id"}[scope]
        cond = ""
        params: list[Any] = [hour_of(since)]
        if ids is not None:
            if not ids:
                return {}
            cond = f" AND {column} IN ({', '.join('?' for _ in ids)})"
            params += list(ids)
        rows = await self.fetch(
            f"SELECT {column}, SUM(charged_sats), SUM(admitted), MAX(last_ts) "
            f"FROM requests_hourly_keys WHERE hour >= ?{cond} AND {column} IS NOT NULL "
            f"GROUP BY {column}",
            params,
        )
        return {r[0]: (float(r[1] or 0), int(r[2] or 0), float(r[3] or 0)) for r in rows}

    # ---- request browser ----------------------------------------------------------------
    async def list(self, query: ListQuery) -> Page:
        cond, params = _filters(query)
        column, direction = _SORT[query.sort], _ORDER[query.order]
        offset = (query.page - 1) * query.per_page
        if query.success is None and query.streaming is None:
            stats_q = StatsQuery(
                since=query.since,
                until=query.until,
                model=query.model,
                provider=query.provider,
                key_id=query.key_id,
                project_id=query.project_id,
            )
            total = int((await self._accumulate(stats_q, None)).get("", _Acc()).sums[0])
        else:
            counted = await self.fetch(
                f"SELECT COUNT(*) FROM requests WHERE ts >= ? AND ts < ?{cond}",
                [query.since, query.until, *params],
            )
            total = int(counted[0][0])
        # a wide range sorted by cost or latency: walk that column's index and filter on time,
        # rather than collect every row of the range and sort it
        ts = self.ts_unindexed if column != "ts" and total > 5000 else "ts"
        # ts is NOT NULL; saying NULLS LAST there would stop PostgreSQL from using its index
        nulls = "" if column == "ts" else " NULLS LAST"
        rows = await self.fetch(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE {ts} >= ? AND {ts} < ?"
            f"{cond} ORDER BY {column} {direction}{nulls}, id {direction} LIMIT ? OFFSET ?",
            [query.since, query.until, *params, query.per_page, offset],
        )
        data = [_summary(dict(zip(REQUEST_COLUMNS, r, strict=True))) for r in rows]
        pages = math.ceil(total / query.per_page) if total else 0
        return Page(data, query.page, query.per_page, total, pages)

    async def get(self, request_id: str) -> RequestDetail | None:
        rows = await self.fetch(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE id = ?", [request_id]
        )
        if not rows:
            return None
        row = dict(zip(REQUEST_COLUMNS, rows[0], strict=True))
        attempts = await self.fetch(
            "SELECT provider, upstream_model, status, error, latency_ms, skipped FROM attempts "
            "WHERE request_id = ? ORDER BY seq",
            [request_id],
        )
        return _detail(
            row,
            [
                AttemptRow(
                    provider=a[0],
                    upstream_model=a[1] or "",
                    status=a[2],
                    error=a[3],
                    latency_ms=a[4],
                    skipped=a[5],
                )
                for a in attempts
            ],
        )


def _detail(row: dict[str, Any], attempts: list[AttemptRow]) -> RequestDetail:
    success = bool(row["success"])
    error = None
    if not success:
        error = ErrorDetail(row["status"], row["error_message"], row["error_code"])
    return RequestDetail(
        id=row["id"],
        timestamp=iso(row["ts"]),
        model=row["model"],
        provider=row["provider"],
        streaming=bool(row["streaming"]),
        success=success,
        tokens=TokensDetail(
            row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["reasoning_tokens"]
        ),
        cost=CostDetail(row["cost_sats"], row["provider_cost_sats"], row["savings_sats"]),
        timing=TimingDetail(
            row["latency_ms"], row["stream_duration_ms"], row["ttft_ms"], row["overhead_ms"]
        ),
        endpoint=row["endpoint"],
        status=row["status"],
        upstream_model=row["upstream_model"],
        chain=row["chain"],
        policy=row["policy"],
        key_id=row["key_id"],
        project_id=row["project_id"],
        charged_sats=row["charged_sats"],
        stream_status=row["stream_status"],
        error=error,
        attempts=attempts,
    )


def _summary(row: dict[str, Any]) -> RequestSummary:
    return RequestSummary(
        id=row["id"],
        timestamp=iso(row["ts"]),
        model=row["model"],
        provider=row["provider"],
        streaming=bool(row["streaming"]),
        success=bool(row["success"]),
        tokens=Tokens(row["input_tokens"], row["output_tokens"]),
        cost=Cost(row["cost_sats"]),
        timing=Timing(row["latency_ms"], row["stream_duration_ms"]),
        error=None if row["success"] else ErrorInfo(row["status"], row["error_message"]),
    )
