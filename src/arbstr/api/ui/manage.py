"""Dashboard pages that change things or watch live state: providers (refreshed by a small
script of ours every 3 s), projects and keys (create, revoke, rotate; every form carries the
session's CSRF token)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from arbstr.api.ui.pages import SECURITY_HEADERS, _nonce, _page, _sessions
from arbstr.errors import ArbstrError
from arbstr.keys.admin import Actor
from arbstr.keys.schemas import KeyCreate, KeyPatch, ProjectCreate, ProjectPatch, RotateBody
from arbstr.stores.requestlog.base import StatsQuery

__all__ = ["MANAGE_ROUTES"]

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _providers_context(request: Request[Any, Any, Any], errors: dict[str, Any]) -> dict[str, Any]:
    views = request.app.state.views
    health = views.health_report()["providers"]
    limits: dict[str, list[dict[str, object]]] = {}
    for row in views.ratelimits():
        limits.setdefault(str(row.get("provider")), []).append(row)
    ends = {
        name: time.strftime("%H:%M:%S", time.gmtime(time.time() + float(h["cooldown_s"])))
        for name, h in health.items()
        if h.get("cooldown_s")
    }
    return {
        "providers": views.describe_providers(),
        "health": health,
        "ends": ends,
        "limits": limits,
        "recent": errors,
        "chains": request.app.state.gateway.shared.settings.config.chains,
        "now": time.strftime("%H:%M:%S", time.gmtime()),
    }


@get("/ui/providers", include_in_schema=False)
async def providers_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    """Rates, models, circuit and cooldown state, last quota, the last hour's error rate and
    latency per provider; chains in order. `?partial=1` is the live table alone."""
    now = time.time()
    stats = await request.app.state.request_log.stats(
        StatsQuery(since=now - 3600, until=now), "provider"
    )
    context = _providers_context(request, stats.providers or {})
    if request.query_params.get("partial"):
        return _page(request, "providers_live.html.j2", context)
    return _page(request, "providers.html.j2", context)


def _actor(request: Request[Any, Any, Any]) -> Actor:
    return Actor("admin", request.client.host if request.client else None)


def _checked(request: Request[Any, Any, Any], data: dict[str, str]) -> Response[Any] | None:
    """None when the form's CSRF token belongs to this session (or auth is off)."""
    nonce = _nonce(request)
    if nonce is None:
        return Redirect("/ui/login?next=/ui/keys", headers=SECURITY_HEADERS)
    if nonce and not _sessions(request).check_csrf(nonce, data.get("csrf")):
        return Response("missing or wrong CSRF token", status_code=403, media_type="text/plain")
    return None


_NUMBERS = {"budget_sats": float, "ttl_s": float, "rpm": int, "tpm": int, "max_requests": int}


def _fields(data: dict[str, str], kind: type[Any], clearing: bool = False) -> Any:
    """A form as the admin API's Struct: numbers parsed, models split on commas. An empty
    field is left out, or, when `clearing` (an edit form), an emptied number clears its limit."""
    fields: dict[str, Any] = {}
    for name, raw in data.items():
        value = raw.strip()
        if name in ("csrf", "deactivate") or name not in kind.__struct_fields__:
            continue
        if name in _NUMBERS:
            if value:
                fields[name] = _number(name, value, _NUMBERS[name])
            elif clearing:
                fields[name] = None
        elif name == "allowed_models":
            if value or clearing:
                fields[name] = [m.strip() for m in value.split(",") if m.strip()]
        elif value:
            fields[name] = value
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in text else None
        raise ArbstrError(text, status=400, code="invalid_request", param=param) from None


def _number(name: str, value: str, kind: type[float] | type[int]) -> float | int:
    try:
        return kind(value)
    except ValueError:
        raise ArbstrError(f"{name} must be a number", status=400, param=name) from None


def _said(exc: ArbstrError) -> str:
    return exc.message + (f" ({exc.param})" if exc.param else "")


async def _keys_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    admin = request.app.state.key_admin
    projects = await admin.list_projects(1, 100)
    keys = await admin.list_keys(None, None, 1, 100)
    return {"projects": projects, "keys": keys}


@get("/ui/keys", include_in_schema=False)
async def keys_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    """Projects and keys with spend against budget and the reset time."""
    return _page(request, "keys.html.j2", await _keys_context(request))


async def _after(
    request: Request[Any, Any, Any], message: str | None = None, **extra: Any
) -> Template | Redirect:
    context = await _keys_context(request)
    return _page(request, "keys.html.j2", {**context, "message": message, **extra})


@post("/ui/projects", include_in_schema=False, status_code=200)
async def create_project(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    refused = _checked(request, data)
    if refused is not None:
        return refused
    try:
        body = _fields(data, ProjectCreate)
        made = await request.app.state.key_admin.create_project(body, _actor(request))
    except ArbstrError as exc:
        return await _after(request, error=_said(exc))
    return await _after(request, f"project {made.name} ({made.id}) created")


@post("/ui/keys", include_in_schema=False, status_code=200)
async def create_key(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    refused = _checked(request, data)
    if refused is not None:
        return refused
    try:
        body = _fields(data, KeyCreate)
        made = await request.app.state.key_admin.create_key(body, _actor(request))
    except ArbstrError as exc:
        return await _after(request, error=_said(exc))
    return await _after(request, f"key {made.id} created", plaintext=made.key, plain_id=made.id)


@post("/ui/keys/{key_id:str}/{action:str}", include_in_schema=False, status_code=200)
async def key_action(
    request: Request[Any, Any, Any], key_id: FromPath[str], action: FromPath[str], data: Form
) -> Response[Any]:
    """`revoke` or `rotate` (the new plaintext shown once)."""
    refused = _checked(request, data)
    if refused is not None:
        return refused
    admin = request.app.state.key_admin
    try:
        if action == "revoke":
            await admin.revoke_key(key_id, _actor(request))
            return await _after(request, f"key {key_id} revoked")
        if action == "rotate":
            made = await admin.rotate_key(key_id, RotateBody(), _actor(request))
            return await _after(
                request, f"key {key_id} rotated", plaintext=made.key, plain_id=key_id
            )
    except ArbstrError as exc:
        return await _after(request, error=exc.message)
    return await _after(request, error=f"unknown action '{action}'")


@get("/ui/edit/{kind:str}/{row_id:str}", include_in_schema=False)
async def edit_page(
    request: Request[Any, Any, Any], kind: FromPath[str], row_id: FromPath[str]
) -> Template | Redirect:
    """A key's or a project's limits in a form."""
    admin = request.app.state.key_admin
    try:
        row = await (admin.get_key(row_id) if kind == "keys" else admin.get_project(row_id))
    except ArbstrError as exc:
        return _page(request, "error.html.j2", {"message": exc.message}, 404)
    return _page(request, "edit.html.j2", {"kind": kind, "row": row})


@post("/ui/edit/{kind:str}/{row_id:str}", include_in_schema=False, status_code=200)
async def edit(
    request: Request[Any, Any, Any], kind: FromPath[str], row_id: FromPath[str], data: Form
) -> Response[Any]:
    refused = _checked(request, data)
    if refused is not None:
        return refused
    admin = request.app.state.key_admin
    try:
        if kind == "keys":
            await admin.update_key(row_id, _fields(data, KeyPatch, True), _actor(request))
        elif data.get("deactivate"):
            await admin.update_project(row_id, ProjectPatch(active=False), _actor(request))
        else:
            await admin.update_project(row_id, _fields(data, ProjectPatch, True), _actor(request))
    except ArbstrError as exc:
        return await _after(request, error=_said(exc))
    return await _after(request, f"{kind[:-1]} {row_id} updated")


MANAGE_ROUTES = [providers_page, keys_page, create_project, create_key, key_action, edit_page, edit]
