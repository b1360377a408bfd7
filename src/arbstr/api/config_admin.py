"""Live configuration routes (DESIGN §12): `POST /admin/reload`, `PUT/DELETE
/admin/providers/{name}` and `/admin/chains/{name}`. Edits go to the config file (tomlkit keeps
its comments), checked as `arbstr check` does, written atomically, audited, then applied."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, delete, post, put
from litestar.params import FromPath

from arbstr.api.admin import _actor
from arbstr.api.auth import admin_only
from arbstr.config import ConfigError, load_settings
from arbstr.config_edit import ConfigEditError, delete_table, put_table, write_checked
from arbstr.errors import ArbstrError, BadRequest, Forbidden
from arbstr.keys.admin import KeyAdmin
from arbstr.live import LiveConfig, Reloaded

__all__ = ["CONFIG_ROUTES"]

_opts: dict[str, Any] = {"guards": [admin_only], "tags": ["admin"]}
_lock = asyncio.Lock()  # one edit of the file at a time in this process


class ReloadAnswer(msgspec.Struct):
    added: list[str]
    removed: list[str]
    changed: list[str]
    chains: list[str]
    needs_restart: list[str]


class InvalidConfig(ArbstrError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_config"


def _answer(done: Reloaded) -> ReloadAnswer:
    return msgspec.convert(done, ReloadAnswer, from_attributes=True)


def _live(request: Request[Any, Any, Any]) -> LiveConfig:
    live: LiveConfig = request.app.state.live
    return live


@post("/admin/reload", status_code=200, **_opts)
async def reload_config(request: Request[Any, Any, Any]) -> ReloadAnswer:
    """Read the config file again and apply it; an invalid file changes nothing (400 with
    `arbstr check`'s message)."""
    live = _live(request)
    async with _lock:
        try:
            settings = await asyncio.to_thread(load_settings, live.source)
        except ConfigError as exc:
            raise InvalidConfig(f"Configuration error: {exc}") from None
        done = live.reload(settings)
    await _audit(request, "config.reload", None, {"added": [None, done.added],
                                                  "removed": [done.removed, None]})  # fmt: skip
    return _answer(done)


async def _edit(
    request: Request[Any, Any, Any], kind: str, name: str, body: dict[str, Any] | None
) -> tuple[Reloaded, bool]:
    if request.app.state.get("key_service") is None:
        raise Forbidden(
            "editing the config file needs [auth] enabled (the admin token)", code="admin_required"
        )
    live = _live(request)
    path = Path(live.source)
    async with _lock:
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            if body is None:
                new_text, created = delete_table(text, kind, name), False
            else:
                new_text, created = put_table(text, kind, name, body)
            settings = await asyncio.to_thread(write_checked, path, new_text)
        except ConfigEditError as exc:
            code = {409: "conflict", 404: "not_found"}.get(exc.status, "invalid_config")
            raise ArbstrError(exc.message, status=exc.status, param=exc.param, code=code) from None
        except ConfigError as exc:
            raise InvalidConfig(f"Configuration error: {exc}") from None
        except OSError as exc:
            raise ArbstrError(f"cannot write the config file: {exc.strerror}") from None
        return live.reload(settings), created


def _body(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadRequest("the body must be a JSON object of the table's fields")
    return raw


async def _audit(
    request: Request[Any, Any, Any], action: str, target: str | None, changes: dict[str, list[Any]]
) -> None:
    admin: KeyAdmin | None = request.app.state.get("key_admin")
    if admin is not None and request.app.state.get("key_service") is not None:
        await admin.record(_actor(request), action, target, changes)


def _masked(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("***" if k == "api_key" and v and "${" not in str(v) else v) for k, v in fields.items()
    }


@put("/admin/providers/{name:str}", **_opts)
async def put_provider(
    request: Request[Any, Any, Any], name: FromPath[str]
) -> Response[ReloadAnswer]:
    """Add or replace a `[[providers]]` table (its fields as JSON; `name` from the path)."""
    fields = _body(await request.json())
    done, created = await _edit(request, "providers", name, fields)
    await _audit(request, "config.provider.put", name, {"provider": [None, _masked(fields)]})
    return Response(_answer(done), status_code=201 if created else 200)


@delete("/admin/providers/{name:str}", status_code=200, **_opts)
async def delete_provider(request: Request[Any, Any, Any], name: FromPath[str]) -> ReloadAnswer:
    """Remove a provider; refused (409) while a chain uses it."""
    done, _ = await _edit(request, "providers", name, None)
    await _audit(request, "config.provider.delete", name, {"provider": [name, None]})
    return _answer(done)


@put("/admin/chains/{name:str}", **_opts)
async def put_chain(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[ReloadAnswer]:
    """Add or replace a `[[chains]]` table (`entries`, `strategy`)."""
    fields = _body(await request.json())
    done, created = await _edit(request, "chains", name, fields)
    await _audit(request, "config.chain.put", name, {"chain": [None, fields]})
    return Response(_answer(done), status_code=201 if created else 200)


@delete("/admin/chains/{name:str}", status_code=200, **_opts)
async def delete_chain(request: Request[Any, Any, Any], name: FromPath[str]) -> ReloadAnswer:
    done, _ = await _edit(request, "chains", name, None)
    await _audit(request, "config.chain.delete", name, {"chain": [name, None]})
    return _answer(done)


CONFIG_ROUTES = [reload_config, put_provider, delete_provider, put_chain, delete_chain]
