"""The admin API (DESIGN §7): projects, virtual keys, provider keys, audit; `GET /v1/key`.

Structs in, Structs out; every route but `/v1/key` needs the admin token (`admin_only`)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from arbstr.api.auth import admin_only, caller, key_only
from arbstr.api.openapi import query_operation
from arbstr.api.stats import parse_stats_query, parse_time
from arbstr.errors import BadRequest, NotFound, error_body
from arbstr.ids import new_request_id
from arbstr.keys.admin import Actor, KeyAdmin
from arbstr.keys.schemas import (
    AuditPage,
    KeyCreate,
    KeyOut,
    KeyPage,
    KeyPatch,
    OwnKey,
    ProjectCreate,
    ProjectOut,
    ProjectPage,
    ProjectPatch,
    ProviderKeyBody,
    RotateBody,
)
from arbstr.pipeline.probe import CandidateTest, probe_candidates
from arbstr.stores.keys.base import AuditQuery
from arbstr.stores.requestlog.base import StatsResult

__all__ = ["ADMIN_ROUTES"]

KeyAdminDep = NamedDependency[KeyAdmin]
_BOOL = {"true": True, "1": True, "false": False, "0": False}


def _provide(state: State) -> KeyAdmin:
    admin: KeyAdmin = state.key_admin
    return admin


_deps = {"key_admin": Provide(_provide, sync_to_thread=False)}
_opts: dict[str, Any] = {"guards": [admin_only], "dependencies": _deps, "tags": ["admin"]}


def _actor(request: Request[Any, Any, Any]) -> Actor:
    who = caller(request)
    name = "admin" if who.admin else f"key:{who.key_id}"
    return Actor(name, request.client.host if request.client else None, new_request_id())


def _int(request: Request[Any, Any, Any], name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 9:
        raise BadRequest(f"'{name}' must be a positive integer", param=name)
    return int(value)


def _page(request: Request[Any, Any, Any], per_page: int = 20) -> tuple[int, int]:
    return _int(request, "page", 1), _int(request, "per_page", per_page)


_PAGED = query_operation("page", "per_page")


@post("/admin/projects", status_code=201, **_opts)
async def create_project(
    request: Request[Any, Any, Any], data: JSONBody[ProjectCreate], key_admin: KeyAdminDep
) -> ProjectOut:
    """Create a project (201)."""
    return await key_admin.create_project(data, _actor(request))


@get("/admin/projects", operation_class=_PAGED, **_opts)
async def list_projects(request: Request[Any, Any, Any], key_admin: KeyAdminDep) -> ProjectPage:
    """Projects, each with its spend in the current budget period."""
    return await key_admin.list_projects(*_page(request))


@get("/admin/projects/{project_id:str}", **_opts)
async def get_project(project_id: FromPath[str], key_admin: KeyAdminDep) -> ProjectOut:
    return await key_admin.get_project(project_id)


@patch("/admin/projects/{project_id:str}", **_opts)
async def update_project(
    request: Request[Any, Any, Any],
    project_id: FromPath[str],
    data: JSONBody[ProjectPatch],
    key_admin: KeyAdminDep,
) -> ProjectOut:
    """Change limits, name or `active` (false refuses every key of the project at once)."""
    return await key_admin.update_project(project_id, data, _actor(request))


@delete("/admin/projects/{project_id:str}", status_code=405, **_opts)
async def delete_project(project_id: FromPath[str]) -> Response[bytes]:
    """Projects are deactivated, never deleted (405)."""
    body = error_body(
        'projects are never deleted: PATCH it with {"active": false}',
        "invalid_request_error",
        "method_not_allowed",
    )
    return Response(
        body, status_code=405, media_type="application/json", headers={"allow": "GET, PATCH"}
    )


@put("/admin/projects/{project_id:str}/provider-keys/{provider:str}", **_opts)
async def put_provider_key(
    request: Request[Any, Any, Any],
    project_id: FromPath[str],
    provider: FromPath[str],
    data: JSONBody[ProviderKeyBody],
    key_admin: KeyAdminDep,
) -> ProjectOut:
    """The project's own key for a provider (stored AES-256-GCM encrypted, shown masked)."""
    return await key_admin.put_provider_key(project_id, provider, data.api_key, _actor(request))


@delete("/admin/projects/{project_id:str}/provider-keys/{provider:str}", status_code=204, **_opts)
async def delete_provider_key(
    request: Request[Any, Any, Any],
    project_id: FromPath[str],
    provider: FromPath[str],
    key_admin: KeyAdminDep,
) -> None:
    await key_admin.delete_provider_key(project_id, provider, _actor(request))


@post("/admin/keys", status_code=201, **_opts)
async def create_key(
    request: Request[Any, Any, Any], data: JSONBody[KeyCreate], key_admin: KeyAdminDep
) -> KeyOut:
    """Create a key: the answer carries its plaintext `key`, this once."""
    return await key_admin.create_key(data, _actor(request))


@get(
    "/admin/keys",
    operation_class=query_operation("project_id", "active", "page", "per_page"),
    **_opts,
)
async def list_keys(request: Request[Any, Any, Any], key_admin: KeyAdminDep) -> KeyPage:
    """Keys without secrets, with spend, request count, last use and budget reset."""
    active_raw = request.query_params.get("active")
    if active_raw is not None and active_raw.lower() not in _BOOL:
        raise BadRequest("'active' must be true or false", param="active")
    active = _BOOL[active_raw.lower()] if active_raw is not None else None
    project = request.query_params.get("project_id") or None
    return await key_admin.list_keys(project, active, *_page(request))


@get("/admin/keys/{key_id:str}", **_opts)
async def get_key(key_id: FromPath[str], key_admin: KeyAdminDep) -> KeyOut:
    return await key_admin.get_key(key_id)


@patch("/admin/keys/{key_id:str}", **_opts)
async def update_key(
    request: Request[Any, Any, Any],
    key_id: FromPath[str],
    data: JSONBody[KeyPatch],
    key_admin: KeyAdminDep,
) -> KeyOut:
    return await key_admin.update_key(key_id, data, _actor(request))


@post("/admin/keys/{key_id:str}/revoke", status_code=200, **_opts)
async def revoke_key(
    request: Request[Any, Any, Any], key_id: FromPath[str], key_admin: KeyAdminDep
) -> KeyOut:
    """Soft revoke: refused by every replica within a second; the row and its spend stay."""
    return await key_admin.revoke_key(key_id, _actor(request))


@delete("/admin/keys/{key_id:str}", status_code=204, **_opts)
async def delete_key(
    request: Request[Any, Any, Any], key_id: FromPath[str], key_admin: KeyAdminDep
) -> None:
    """The same soft revoke, answered 204."""
    await key_admin.revoke_key(key_id, _actor(request))


@post("/admin/keys/{key_id:str}/rotate", status_code=200, **_opts)
async def rotate_key(
    request: Request[Any, Any, Any],
    key_id: FromPath[str],
    data: JSONBody[RotateBody],
    key_admin: KeyAdminDep,
) -> KeyOut:
    """A new secret for the same id, limits and spend; the old one works for `grace_s`."""
    return await key_admin.rotate_key(key_id, data, _actor(request))


@get(
    "/admin/keys/{key_id:str}/usage",
    operation_class=query_operation("range", "since", "until", "model", "provider"),
    **_opts,
)
async def key_usage(
    request: Request[Any, Any, Any], key_id: FromPath[str], key_admin: KeyAdminDep
) -> StatsResult:
    """The `/v1/stats` shape, for this key's requests."""
    await key_admin.get_key(key_id)
    query = parse_stats_query(dict(request.query_params))
    return await key_admin.log.stats(msgspec.structs.replace(query, key_id=key_id))


@get(
    "/admin/audit",
    operation_class=query_operation(
        "action", "actor", "outcome", "target", "since", "until", "page", "per_page"
    ),
    **_opts,
)
async def list_audit(request: Request[Any, Any, Any], key_admin: KeyAdminDep) -> AuditPage:
    """Every change and every burst of auth failures, newest first."""
    params = dict(request.query_params)
    query = AuditQuery(
        action=params.get("action") or None,
        actor=params.get("actor") or None,
        outcome=params.get("outcome") or None,
        target=params.get("target") or None,
        since=parse_time(params, "since"),
        until=parse_time(params, "until"),
    )
    return await key_admin.audit(query, *_page(request, 50))


@get("/v1/key", guards=[key_only], dependencies=_deps, tags=["keys"])
async def own_key(request: Request[Any, Any, Any], key_admin: KeyAdminDep) -> OwnKey:
    """The calling key: its project, limits, spend and when its budget resets."""
    who = caller(request)
    if who.key_id is None:
        raise NotFound("auth is off: there is no calling key", param="authorization")
    out = await key_admin.get_key(who.key_id)
    project = await key_admin.get_project(out.project_id)
    remaining = None
    if out.budget_sats is not None:
        remaining = max(0.0, round(out.budget_sats - out.spend_sats, 6))
    return OwnKey(
        id=out.id,
        name=out.name,
        project_id=out.project_id,
        project_name=project.name,
        expires_at=out.expires_at,
        max_requests=out.max_requests,
        requests=out.requests,
        rpm=out.rpm,
        tpm=out.tpm,
        allowed_models=out.allowed_models,
        budget_sats=out.budget_sats,
        budget_period=out.budget_period,
        spend_sats=out.spend_sats,
        budget_remaining_sats=remaining,
        budget_reset_at=out.budget_reset_at if out.budget_sats is not None else None,
    )


class CandidateTestBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    prompt: str = "Say hello in five words."


@post("/v1/test/{model:str}", status_code=200, guards=[admin_only], tags=["operator"])
async def candidate_test(
    request: Request[Any, Any, Any], model: FromPath[str], data: JSONBody[CandidateTestBody]
) -> CandidateTest:
    """Call every candidate of a model or chain once, ignoring cooldowns and circuits; each
    one's status, latency, tokens, cost and the start of its answer, plus a summary."""
    shared = request.app.state.gateway.shared
    return await probe_candidates(shared, model, data.prompt)


ADMIN_ROUTES = [
    candidate_test,
    create_project,
    list_projects,
    get_project,
    update_project,
    delete_project,
    put_provider_key,
    delete_provider_key,
    create_key,
    list_keys,
    get_key,
    update_key,
    revoke_key,
    delete_key,
    rotate_key,
    key_usage,
    list_audit,
    own_key,
]
