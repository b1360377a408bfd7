"""Stats and the request browser: parameters validated here, answered by the request log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from arbstr.api.auth import admin_or_key, caller
from arbstr.api.openapi import query_operation
from arbstr.errors import BadRequest, NotFound
from arbstr.stores.requestlog import RequestLog
from arbstr.stores.requestlog.base import (
    ListQuery,
    Page,
    RequestDetail,
    StatsQuery,
    StatsResult,
    Timeseries,
)

__all__ = [
    "get_request",
    "list_requests",
    "parse_list_query",
    "parse_stats_query",
    "parse_time",
    "request_log_dependency",
    "stats",
    "timeseries",
]

Q = TypeVar("Q", StatsQuery, ListQuery)
MAX_MINUTE_SPAN_S = 2 * 86400
MAX_PAGE = 1_000_000  # page x per_page stays far inside a 64-bit OFFSET
RANGES = {"last_1h": 3600, "last_24h": 86400, "last_7d": 7 * 86400, "last_30d": 30 * 86400}
_BOOL = {"true": True, "1": True, "false": False, "0": False}


def parse_time(params: dict[str, str], name: str) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadRequest(f"'{name}' must be an ISO 8601 time, got '{value}'", param=name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _choice(
    params: dict[str, str], name: str, choices: tuple[str, ...], default: str | None
) -> Any:
    value = params.get(name, default)
    if value is not None and value not in choices:
        raise BadRequest(f"'{name}' must be one of {', '.join(choices)}", param=name)
    return value


def _bool(params: dict[str, str], name: str) -> bool | None:
    value = params.get(name)
    if value is None:
        return None
    if value.lower() not in _BOOL:
        raise BadRequest(f"'{name}' must be true, false, 1 or 0", param=name)
    return _BOOL[value.lower()]


def _int(params: dict[str, str], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if len(value) > 19:  # longer than any 64-bit integer: refused before parsing
        raise BadRequest(f"'{name}' is too large", param=name)
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer", param=name) from None


def parse_stats_query(params: dict[str, str], now: float | None = None) -> StatsQuery:
    """`range` or `since`/`until` (ISO 8601; `since` wins over `range`), `model`, `provider`."""
    now = time.time() if now is None else now
    window = RANGES[_choice(params, "range", tuple(RANGES), "last_7d")]
    until = parse_time(params, "until") or now
    since = parse_time(params, "since")
    if since is None:
        since = until - window
    if since >= until:
        raise BadRequest("'since' must be before 'until'", param="since")
    return StatsQuery(
        since=since,
        until=until,
        model=params.get("model") or None,
        provider=params.get("provider") or None,
        key_id=params.get("key_id") or None,
        project_id=params.get("project_id") or None,
    )


def parse_list_query(params: dict[str, str], now: float | None = None) -> ListQuery:
    base = parse_stats_query(params, now)
    page = _int(params, "page", 1)
    if not 1 <= page <= MAX_PAGE:
        raise BadRequest(f"'page' must be between 1 and {MAX_PAGE}", param="page")
    per_page = min(100, max(1, _int(params, "per_page", 20)))
    return ListQuery(
        since=base.since, until=base.until, model=base.model, provider=base.provider,
        key_id=base.key_id, project_id=base.project_id,
        success=_bool(params, "success"), streaming=_bool(params, "streaming"),
        sort=_choice(params, "sort", ("timestamp", "cost_sats", "latency_ms"), "timestamp"),
        order=_choice(params, "order", ("asc", "desc"), "desc"),
        page=page, per_page=per_page,
    )  # fmt: skip


RequestLogDep = NamedDependency[RequestLog]


def _provide(state: State) -> RequestLog:
    store: RequestLog = state.request_log
    return store


request_log_dependency = {"request_log": Provide(_provide, sync_to_thread=False)}


def _params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items()}


_FILTERS = ("range", "since", "until", "model", "provider", "key_id", "project_id")
_scoped: dict[str, Any] = {"guards": [admin_or_key], "dependencies": request_log_dependency}


def _scope(request: Request[Any, Any, Any], query: Q) -> Q:
    """A virtual key reads its own project's requests only, whatever it asked for."""
    who = caller(request)
    if who.admin:
        return query
    return msgspec.structs.replace(query, project_id=who.project_id)


@get(
    "/v1/stats",
    **_scoped,
    tags=["analytics"],
    operation_class=query_operation(*_FILTERS, "group_by"),
)
async def stats(request: Request[Any, Any, Any], request_log: RequestLogDep) -> StatsResult:
    """Totals, costs, latency percentiles and savings over a time range, optionally grouped."""
    params = _params(request)
    query = _scope(request, parse_stats_query(params))
    group = _choice(params, "group_by", ("model", "provider", "key", "project"), None)
    return await request_log.stats(query, group)


@get(
    "/v1/stats/timeseries",
    **_scoped,
    tags=["analytics"],
    operation_class=query_operation("bucket", *_FILTERS),
)
async def timeseries(request: Request[Any, Any, Any], request_log: RequestLogDep) -> Timeseries:
    """Per-bucket counts and costs (minute, hour or day) for charts."""
    params = _params(request)
    bucket = _choice(params, "bucket", ("minute", "hour", "day"), "hour")
    explicit = any(params.get(k) for k in ("range", "since"))
    if bucket == "minute" and not explicit:
        # the stats default (7 days) is too wide for minutes: a minute series says which day
        # it covers in `since`/`until` instead of refusing a request that named no range
        params.setdefault("range", "last_24h")
    query = _scope(request, parse_stats_query(params))
    if bucket == "minute" and query.until - query.since > MAX_MINUTE_SPAN_S:
        raise BadRequest(
            "minute buckets cover at most 2 days; narrow since/until or use hour or day",
            param="bucket",
        )
    return await request_log.timeseries(query, bucket)


_LIST = (*_FILTERS, "success", "streaming", "sort", "order", "page", "per_page")


@get(
    "/v1/requests",
    **_scoped,
    tags=["analytics"],
    operation_class=query_operation(*_LIST),
)
async def list_requests(request: Request[Any, Any, Any], request_log: RequestLogDep) -> Page:
    """Recorded requests, filtered, sorted (whitelisted columns) and paged."""
    return await request_log.list(_scope(request, parse_list_query(_params(request))))


@get("/v1/requests/{request_id:str}", **_scoped, tags=["analytics"])
async def get_request(
    request: Request[Any, Any, Any], request_id: FromPath[str], request_log: RequestLogDep
) -> RequestDetail:
    """One request: its `/v1/requests` row, every other recorded column, and its attempts."""
    detail = await request_log.get(request_id)
    who = caller(request)
    if detail is not None and not who.admin and detail.project_id != who.project_id:
        detail = None  # another project's request: as if it did not exist
    if detail is None:
        raise NotFound(f"no request with id '{request_id}'", param="request_id")
    return detail
