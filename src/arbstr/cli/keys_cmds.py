"""`arbstr projects ...`, `arbstr keys ...`, `arbstr audit`: the admin API's operations on the
configured database, with the server up or down (running replicas pick a change up within
`auth.refresh_interval_s`). Every change is audited with the actor `cli`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from arbstr.api.stats import parse_time
from arbstr.cli.config_cmds import ConfigOpt, err, load_or_exit, out
from arbstr.cli.data_cmds import JsonOpt, table_of
from arbstr.errors import ArbstrError
from arbstr.keys.admin import Actor, KeyAdmin
from arbstr.keys.crypto import Cipher, CipherError
from arbstr.keys.schemas import KeyCreate, KeyOut, KeyPatch, ProjectCreate, ProjectOut, ProjectPatch
from arbstr.stores.keys import open_key_store
from arbstr.stores.keys.base import AuditQuery
from arbstr.stores.requestlog import open_request_log

__all__ = ["audit", "keys_app", "projects_app"]

T = TypeVar("T")
CLI = Actor("cli")
projects_app = typer.Typer(
    help="Projects: create, list, show, update, deactivate.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Virtual keys: create, list, show, update, revoke, rotate.", no_args_is_help=True
)

Budget = Annotated[float | None, typer.Option("--budget", help="budget in sats")]
Period = Annotated[str | None, typer.Option("--period", help="total|daily|weekly|monthly")]
Rpm = Annotated[int | None, typer.Option("--rpm", help="requests per minute")]
Tpm = Annotated[int | None, typer.Option("--tpm", help="tokens per minute")]
Models = Annotated[str | None, typer.Option("--models", help="comma-separated names or globs")]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _run(config: str | None, action: Callable[[KeyAdmin], Awaitable[T]]) -> T:
    settings = load_or_exit(config, need_keys=False)
    url = settings.config.database.effective_url

    async def run() -> T:
        store = open_key_store(url)
        log = open_request_log(url)
        try:
            await log.migrate()
            await store.migrate()
            admin = KeyAdmin(store, log, {p.name for p in settings.providers}, Cipher.from_env())
            return await action(admin)
        finally:
            await store.aclose()
            await log.aclose()

    try:
        return asyncio.run(run())
    except ArbstrError as exc:
        where = f" ({exc.param})" if exc.param else ""
        err.print(f"Error{where}: {exc.message}", markup=False)
        raise typer.Exit(2) from None
    except (CipherError, OSError) as exc:
        err.print(f"Error: {exc}", markup=False)
        raise typer.Exit(1) from None


def _convert(data: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert({k: v for k, v in data.items() if v is not None}, kind)
    except msgspec.ValidationError as exc:
        err.print(f"Error: {exc}", markup=False)
        raise typer.Exit(2) from None


def _limits(
    name: str | None,
    budget: float | None,
    period: str | None,
    rpm: int | None,
    tpm: int | None,
    models: str | None,
) -> dict[str, Any]:
    """The options keys and projects share, as the body's fields (None: not given)."""
    return {"name": name, "budget_sats": budget, "budget_period": period, "rpm": rpm,
            "tpm": tpm, "allowed_models": _models(models)}  # fmt: skip


def _models(value: str | None) -> list[str] | None:
    return None if value is None else [m.strip() for m in value.split(",") if m.strip()]


def _expiry(value: str | None) -> dict[str, Any]:
    """`30d`, `12h`, `90m` -> ttl_s; anything else is an ISO 8601 `expires_at`."""
    if value is None:
        return {}
    m = _DURATION.fullmatch(value.strip())
    if m:
        return {"ttl_s": float(m.group(1)) * _UNITS[m.group(2)]}
    return {"expires_at": value}


def _show(value: Any, as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        typer.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())
    else:
        render()


def _project_table(rows: list[ProjectOut], title: str = "projects") -> None:
    cells = [
        [p.id, p.name, "yes" if p.active else "no", _num(p.budget_sats), p.budget_period,
         f"{p.spend_sats:.2f}", _num(p.rpm), ",".join(p.allowed_models) or "*"]
        for p in rows
    ]  # fmt: skip
    columns = ["id", "name", "active", "budget", "period", "spent", "rpm", "models"]
    out.print(table_of(title, columns, cells, {0, 1, 7}))


def _key_table(rows: list[KeyOut], title: str = "keys") -> None:
    cells = [
        [k.id, k.project_id, k.name, "yes" if k.active else "no", _num(k.budget_sats),
         f"{k.spend_sats:.2f}", str(k.requests), _num(k.max_requests), _num(k.rpm),
         k.expires_at or "-"]
        for k in rows
    ]  # fmt: skip
    columns = ["id", "project", "name", "active", "budget", "spent", "requests", "max", "rpm",
               "expires"]  # fmt: skip
    out.print(table_of(title, columns, cells, {0, 1, 2, 9}))


def _num(value: float | int | None) -> str:
    return "-" if value is None else f"{value:g}"


# ---- projects ----------------------------------------------------------------------------
@projects_app.command("create")
def project_create(
    name: Annotated[str, typer.Option("--name")],
    budget: Budget = None,
    period: Period = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    models: Models = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a project."""
    body = _convert(_limits(name, budget, period, rpm, tpm, models), ProjectCreate)
    made = _run(config, lambda a: a.create_project(body, CLI))
    _show(made, as_json, lambda: _project_table([made], "project created"))


@projects_app.command("list")
def project_list(
    page: int = 1, per_page: int = 50, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Projects with their spend in the current budget period."""
    got = _run(config, lambda a: a.list_projects(page, per_page))
    _show(got, as_json, lambda: _project_table(got.data, f"projects ({got.total})"))


@projects_app.command("show")
def project_show(project_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    got = _run(config, lambda a: a.get_project(project_id))
    _show(got, as_json, lambda: _project_table([got], "project"))


@projects_app.command("update")
def project_update(
    project_id: str,
    name: Annotated[str | None, typer.Option("--name")] = None,
    budget: Budget = None,
    period: Period = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    models: Models = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a project's name, limits or models."""
    patch = _convert(_limits(name, budget, period, rpm, tpm, models), ProjectPatch)
    got = _run(config, lambda a: a.update_project(project_id, patch, CLI))
    _show(got, as_json, lambda: _project_table([got], "project updated"))


@projects_app.command("deactivate")
def project_deactivate(project_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Refuse every key of the project (projects are never deleted)."""
    got = _run(config, lambda a: a.update_project(project_id, ProjectPatch(active=False), CLI))
    _show(got, as_json, lambda: _project_table([got], "project deactivated"))


# ---- keys --------------------------------------------------------------------------------
@keys_app.command("create")
def key_create(
    project: Annotated[str, typer.Option("--project", help="project id")],
    name: Annotated[str, typer.Option("--name")],
    budget: Budget = None,
    period: Period = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    models: Models = None,
    expires: Annotated[str | None, typer.Option("--expires", help="30d, 12h or ISO 8601")] = None,
    max_requests: Annotated[int | None, typer.Option("--max-requests")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; its plaintext is printed this once."""
    body = _convert(
        {**_limits(name, budget, period, rpm, tpm, models), "project_id": project,
         "max_requests": max_requests, **_expiry(expires)},
        KeyCreate,
    )  # fmt: skip
    made = _run(config, lambda a: a.create_key(body, CLI))

    def render() -> None:
        _key_table([made], "key created")
        out.print(f"key (shown once): {made.key}", markup=False, soft_wrap=True)

    _show(made, as_json, render)


@keys_app.command("list")
def key_list(
    project: Annotated[str | None, typer.Option("--project")] = None,
    active: Annotated[bool | None, typer.Option("--active/--revoked")] = None,
    page: int = 1,
    per_page: int = 50,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Keys (never their secrets) with spend, request counts and expiry."""
    got = _run(config, lambda a: a.list_keys(project, active, page, per_page))
    _show(got, as_json, lambda: _key_table(got.data, f"keys ({got.total})"))


@keys_app.command("show")
def key_show(key_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    got = _run(config, lambda a: a.get_key(key_id))
    _show(got, as_json, lambda: _key_table([got], "key"))


@keys_app.command("update")
def key_update(
    key_id: str,
    name: Annotated[str | None, typer.Option("--name")] = None,
    budget: Budget = None,
    period: Period = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    models: Models = None,
    expires: Annotated[str | None, typer.Option("--expires")] = None,
    max_requests: Annotated[int | None, typer.Option("--max-requests")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a key's name, limits, models or expiry."""
    expiry = _expiry(expires)
    if "ttl_s" in expiry:
        import time

        expiry = {"expires_at": time.time() + expiry["ttl_s"]}
    patch = _convert(
        {**_limits(name, budget, period, rpm, tpm, models), "max_requests": max_requests,
         **expiry},
        KeyPatch,
    )  # fmt: skip
    got = _run(config, lambda a: a.update_key(key_id, patch, CLI))
    _show(got, as_json, lambda: _key_table([got], "key updated"))


@keys_app.command("revoke")
def key_revoke(key_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key: refused everywhere within a second."""
    got = _run(config, lambda a: a.revoke_key(key_id, CLI))
    _show(got, as_json, lambda: _key_table([got], "key revoked"))


@keys_app.command("rotate")
def key_rotate(
    key_id: str,
    grace: Annotated[float, typer.Option("--grace", help="seconds the old secret still works")] = 0,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A new secret for the same key (printed once); the old one works for --grace seconds."""
    from arbstr.keys.schemas import RotateBody

    body = _convert({"grace_s": grace}, RotateBody)
    got = _run(config, lambda a: a.rotate_key(key_id, body, CLI))

    def render() -> None:
        _key_table([got], "key rotated")
        out.print(f"key (shown once): {got.key}", markup=False, soft_wrap=True)

    _show(got, as_json, render)


# ---- audit -------------------------------------------------------------------------------
def audit(
    action: Annotated[str | None, typer.Option("--action", help="e.g. key.revoke")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601")] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    page: int = 1,
    per_page: int = 50,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Changes and auth failures, newest first."""
    try:
        start = parse_time({"since": since} if since else {}, "since")
    except ArbstrError as exc:
        err.print(f"Error: {exc.message}", markup=False)
        raise typer.Exit(2) from None
    query = AuditQuery(action=action, actor=actor, since=start)
    got = _run(config, lambda a: a.audit(query, page, per_page))

    def render() -> None:
        cells = [
            [e.timestamp, e.actor, e.action, e.target or "-", e.outcome, str(e.count),
             e.client_ip or "-"]
            for e in got.data
        ]  # fmt: skip
        columns = ["time", "actor", "action", "target", "outcome", "count", "address"]
        out.print(table_of(f"audit ({got.total})", columns, cells, {0, 1, 2, 3, 6}))

    _show(got, as_json, render)
