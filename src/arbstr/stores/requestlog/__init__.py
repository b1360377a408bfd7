"""The request log: one row per request, its attempts, an hourly rollup; SQLite or PostgreSQL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from arbstr.stores.requestlog.base import RequestLog
from arbstr.stores.requestlog.postgres import PostgresRequestLog
from arbstr.stores.requestlog.sqlite import SqliteRequestLog

__all__ = [
    "PostgresRequestLog",
    "RequestLog",
    "SqliteRequestLog",
    "open_request_log",
    "split_schema",
]


def split_schema(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL without our `schema=` query parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def open_request_log(url: str) -> RequestLog:
    """`sqlite:///path` (relative to the working directory), `postgresql://...`, `memory://`."""
    if url.startswith(("postgresql://", "postgres://")):
        dsn, schema = split_schema(url)
        return PostgresRequestLog(dsn, schema)
    if url.startswith("sqlite://"):
        return SqliteRequestLog(url.removeprefix("sqlite://").removeprefix("/") or ":memory:")
    return SqliteRequestLog(":memory:")
