"""The admin API's bodies and answers (DESIGN §7): msgspec Structs, shared by the HTTP routes
and the CLI. Unknown fields are refused; every constraint names its field when it fails."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from arbstr.keys.model import Period

__all__ = [
    "AuditOut",
    "AuditPage",
    "KeyCreate",
    "KeyOut",
    "KeyPage",
    "KeyPatch",
    "OwnKey",
    "ProjectCreate",
    "ProjectOut",
    "ProjectPage",
    "ProjectPatch",
    "ProviderKeyBody",
    "RotateBody",
]

Name = Annotated[str, Meta(min_length=1, max_length=200)]
# upper bounds too: a number past what the stores hold (SQLite's 64-bit integers) or a JSON
# 1e400 (decoded as infinity) must be a 400 naming the field, never a 500 from the database
Sats = Annotated[float, Meta(ge=0, le=1e15)]
PerMinute = Annotated[int, Meta(ge=1, le=10**9)]
Count = Annotated[int, Meta(ge=1, le=10**12)]
Models = Annotated[list[Annotated[str, Meta(min_length=1, max_length=200)]], Meta(max_length=200)]
Metadata = dict[str, Any]
When = float | str  # unix seconds or ISO 8601


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Limits(_In):
    """What keys and projects both set (a key also has its expiry and lifetime count)."""

    name: Name
    budget_sats: Sats | None = None
    budget_period: Period = "total"
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None
    allowed_models: Models = msgspec.field(default_factory=list)
    metadata: Metadata = msgspec.field(default_factory=dict)


class _LimitsPatch(_In):
    """Any of the limits; an absent field is unchanged, `null` clears a limit."""

    name: Name | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    budget_sats: Sats | UnsetType | None = UNSET
    budget_period: Period | UnsetType = UNSET
    rpm: PerMinute | UnsetType | None = UNSET
    tpm: PerMinute | UnsetType | None = UNSET
    allowed_models: Models | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET


class ProjectCreate(_Limits):
    pass


class ProjectPatch(_LimitsPatch):
    pass


class KeyCreate(_Limits, kw_only=True):
    project_id: Annotated[str, Meta(min_length=1, max_length=32)]
    expires_at: When | None = None
    ttl_s: Annotated[float, Meta(gt=0, le=100 * 365 * 86400)] | None = None
    max_requests: Count | None = None


class KeyPatch(_LimitsPatch, kw_only=True):
    expires_at: When | UnsetType | None = UNSET
    max_requests: Count | UnsetType | None = UNSET


class RotateBody(_In):
    grace_s: Annotated[float, Meta(ge=0, le=30 * 86400)] = 0.0


class ProviderKeyBody(_In):
    api_key: Annotated[str, Meta(min_length=1, max_length=4096)]


class ProjectOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    active: bool
    budget_sats: float | None
    budget_period: str
    rpm: int | None
    tpm: int | None
    allowed_models: list[str]
    metadata: dict[str, Any]
    created_at: str
    updated_at: str | None
    spend_sats: float
    budget_reset_at: str | None
    provider_keys: dict[str, str] = msgspec.field(default_factory=dict)  # provider -> masked


class KeyOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    project_id: str
    name: str
    active: bool
    expires_at: str | None
    max_requests: int | None
    budget_sats: float | None
    budget_period: str
    rpm: int | None
    tpm: int | None
    allowed_models: list[str]
    metadata: dict[str, Any]
    created_at: str
    updated_at: str | None
    revoked_at: str | None
    spend_sats: float
    requests: int
    last_used_at: str | None
    budget_reset_at: str | None
    key: str | None = None  # the plaintext: in the create and rotate answers only


class OwnKey(msgspec.Struct, kw_only=True):
    """`GET /v1/key`: the caller's own key."""

    id: str
    name: str
    project_id: str
    project_name: str
    expires_at: str | None
    max_requests: int | None
    requests: int
    rpm: int | None
    tpm: int | None
    allowed_models: list[str]
    budget_sats: float | None
    budget_period: str
    spend_sats: float
    budget_remaining_sats: float | None
    budget_reset_at: str | None


class AuditOut(msgspec.Struct, kw_only=True):
    id: str
    timestamp: str
    actor: str
    action: str
    target: str | None
    outcome: str
    client_ip: str | None
    request_id: str | None
    changes: dict[str, list[Any]]
    count: int


class ProjectPage(msgspec.Struct):
    data: list[ProjectOut]
    page: int
    per_page: int
    total: int
    total_pages: int


class KeyPage(msgspec.Struct):
    data: list[KeyOut]
    page: int
    per_page: int
    total: int
    total_pages: int


class AuditPage(msgspec.Struct):
    data: list[AuditOut]
    page: int
    per_page: int
    total: int
    total_pages: int
