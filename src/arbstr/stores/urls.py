"""Database URLs: the one parser every store uses (request log, state, and what comes next)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["is_postgres", "split_schema", "sqlite_path"]


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def split_schema(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL without our `schema=` query parameter, and that schema; every other
    parameter (`sslmode`, `application_name`, ...) stays in the URL for the driver."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema or None


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/or/absolute` -> the file path (`:memory:` when there is none)."""
    return url.removeprefix("sqlite://").removeprefix("/") or ":memory:"
