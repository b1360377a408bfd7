"""Projects, virtual keys and audit events (DESIGN §7): the stored shapes, the key format and
the calendar of budget periods. Pure: no I/O, no framework."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
import string
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

__all__ = [
    "KEY_PREFIX",
    "PERIODS",
    "AuditEvent",
    "KeyEntry",
    "KeyRow",
    "Period",
    "ProjectRow",
    "hash_key",
    "key_digest",
    "model_allowed",
    "new_id",
    "new_key",
    "parse_key",
    "period_end",
    "period_start",
]

Period = Literal["total", "daily", "weekly", "monthly"]
PERIODS: tuple[str, ...] = ("total", "daily", "weekly", "monthly")
KEY_PREFIX = "sk-arb-"
ID_LEN = 12
_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY_RE = re.compile(r"sk-arb-([a-z0-9]{12})-([A-Za-z0-9_-]{32,128})")


class ProjectRow(msgspec.Struct, kw_only=True):
    """A project: a team or an app; its keys share its budget, rate limits and model list."""

    id: str
    name: str
    active: bool = True
    budget_sats: float | None = None
    budget_period: Period = "total"
    rpm: int | None = None
    tpm: int | None = None
    allowed_models: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    rev: int = 0  # the key-store version of its last change (replicas reload what is newer)


class KeyRow(msgspec.Struct, kw_only=True):
    """A virtual key as stored: only the SHA-256 of the plaintext, never the plaintext."""

    id: str
    project_id: str
    name: str
    key_hash: str
    prev_hash: str | None = None  # the secret before the last rotation, valid until ...
    prev_valid_until: float | None = None
    active: bool = True
    expires_at: float | None = None
    max_requests: int | None = None
    budget_sats: float | None = None
    budget_period: Period = "total"
    rpm: int | None = None
    tpm: int | None = None
    allowed_models: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    revoked_at: float | None = None
    rev: int = 0


class KeyEntry(msgspec.Struct, kw_only=True, gc=False):
    """A key as each process mirrors it: what authentication and the limits read, nothing
    else (100,000 keys in ~35 MB; the name, metadata and times stay in the store). The digest
    is the raw SHA-256; strings every key repeats are interned."""

    id: str
    project_id: str
    digest: bytes
    prev_digest: bytes | None
    prev_valid_until: float | None
    active: bool
    expires_at: float | None
    max_requests: int | None
    budget_sats: float | None
    budget_period: str
    rpm: int | None
    tpm: int | None
    allowed_models: tuple[str, ...]

    @classmethod
    def of(cls, row: KeyRow) -> KeyEntry:
        return cls(
            id=row.id,
            project_id=sys.intern(row.project_id),
            digest=bytes.fromhex(row.key_hash),
            prev_digest=bytes.fromhex(row.prev_hash) if row.prev_hash else None,
            prev_valid_until=row.prev_valid_until,
            active=row.active,
            expires_at=row.expires_at,
            max_requests=row.max_requests,
            budget_sats=row.budget_sats,
            budget_period=sys.intern(row.budget_period),
            rpm=row.rpm,
            tpm=row.tpm,
            allowed_models=tuple(row.allowed_models) if row.allowed_models else (),
        )


class AuditEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One change or one burst of auth failures; never a secret."""

    id: str
    timestamp: float
    actor: str  # admin | key:<id> | anonymous | cli
    action: str  # project.create | key.revoke | auth.failure | ...
    target: str | None = None
    outcome: str = "success"  # success | denied | error
    client_ip: str | None = None
    request_id: str | None = None
    changes: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    count: int = 1  # auth failures aggregated into one row per burst


def new_id(length: int = ID_LEN) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_key(key_id: str) -> str:
    """`sk-arb-<id>-<secret>`: 12 public letters and digits, then 43 random url-safe chars."""
    return f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"


def parse_key(value: str) -> str | None:
    """The public id of a well-formed key, or None (malformed)."""
    m = _KEY_RE.fullmatch(value)
    return m.group(1) if m else None


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def key_digest(value: str) -> bytes:
    """The raw SHA-256 of a key (what the mirror looks keys up by)."""
    return hashlib.sha256(value.encode()).digest()


def model_allowed(patterns: list[str] | tuple[str, ...], model: str) -> bool:
    """Exact names or globs (`gpt-4.1-*`); an empty list allows every model."""
    if not patterns:
        return True
    for p in patterns:
        if p == model or (("*" in p or "?" in p or "[" in p) and fnmatch.fnmatchcase(model, p)):
            return True
    return False


def period_start(period: str, now: float) -> float:
    """Start of the calendar period (UTC) that contains `now`; `total` starts at 0."""
    if period == "total":
        return 0.0
    t = datetime.fromtimestamp(now, UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day.timestamp()
    if period == "weekly":
        return (day - timedelta(days=day.weekday())).timestamp()
    return day.replace(day=1).timestamp()


def period_end(period: str, now: float) -> float | None:
    """When the period that contains `now` ends (the next reset), or None for `total`."""
    if period == "total":
        return None
    start = datetime.fromtimestamp(period_start(period, now), UTC)
    if period == "daily":
        return (start + timedelta(days=1)).timestamp()
    if period == "weekly":
        return (start + timedelta(days=7)).timestamp()
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month).timestamp()
