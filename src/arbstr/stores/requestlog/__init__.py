"""The request log: one row per request, its attempts, an hourly rollup; SQLite or PostgreSQL."""

from __future__ import annotations

from arbstr.stores.requestlog.base import RequestLog
from arbstr.stores.requestlog.postgres import PostgresRequestLog
from arbstr.stores.requestlog.sqlite import SqliteRequestLog
from arbstr.stores.urls import is_postgres, split_schema, sqlite_path

__all__ = [
    "PostgresRequestLog",
    "RequestLog",
    "SqliteRequestLog",
    "open_request_log",
    "split_schema",
]


def open_request_log(url: str) -> RequestLog:
    """`sqlite:///path` (relative to the working directory), `postgresql://...`, `memory://`."""
    if is_postgres(url):
        dsn, schema = split_schema(url)
        return PostgresRequestLog(dsn, schema)
    if url.startswith("sqlite://"):
        return SqliteRequestLog(sqlite_path(url))
    return SqliteRequestLog(":memory:")
