"""The dashboard's pages (DESIGN §8), rendered on the server: overview, requests, a request,
audit, login and logout. Filters are query parameters, so every view is a URL to share."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from arbstr.api.stats import RANGES, parse_list_query, parse_stats_query
from arbstr.api.ui.charts import bars
from arbstr.api.ui.session import COOKIE, LOGIN_COOKIE, MAX_AGE_S, Sessions
from arbstr.errors import ArbstrError
from arbstr.keys.model import AuditEvent, new_id
from arbstr.keys.runtime import KeyService
from arbstr.stores.keys.base import AuditQuery
from arbstr.stores.requestlog import RequestLog
from arbstr.stores.requestlog.sql import iso

__all__ = ["UI_ROUTES"]

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_BUCKET = {"last_1h": "minute", "last_24h": "hour", "last_7d": "hour", "last_30d": "day"}
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _keys(request: Request[Any, Any, Any]) -> KeyService | None:
    return request.app.state.get("key_service")


def _sessions(request: Request[Any, Any, Any]) -> Sessions:
    return request.app.state.ui_sessions  # type: ignore[no-any-return]


def _log(request: Request[Any, Any, Any]) -> RequestLog:
    return request.app.state.request_log  # type: ignore[no-any-return]


def _nonce(request: Request[Any, Any, Any]) -> str | None:
    """The session's nonce; "" when auth is off (no session needed); None: log in first."""
    if _keys(request) is None:
        return ""
    return _sessions(request).nonce(request.cookies.get(COOKIE))


def _page(
    request: Request[Any, Any, Any], name: str, context: dict[str, Any], status: int = 200
) -> Template | Redirect:
    nonce = _nonce(request)
    if nonce is None:
        return Redirect(f"/ui/login?next={request.url.path}", headers=SECURITY_HEADERS)
    base = {
        "auth_on": _keys(request) is not None,
        "csrf": _sessions(request).csrf(nonce) if nonce else "",
        "path": request.url.path,
    }
    return Template(
        template_name=name,
        context={**base, **context},
        status_code=status,
        headers=SECURITY_HEADERS,
    )


def _top(groups: dict[str, Any], n: int = 20) -> dict[str, Any]:
    ranked = sorted(groups.items(), key=lambda kv: -kv[1].costs.total_cost_sats)
    return dict(ranked[:n])


def _error(request: Request[Any, Any, Any], exc: ArbstrError) -> Template | Redirect:
    return _page(request, "error.html.j2", {"message": exc.message, "param": exc.param}, 400)


@get("/", include_in_schema=False, sync_to_thread=False)
def root() -> Response[str]:
    """A page that links to the dashboard, the API schema and health."""
    body = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>arbstr</title>'
        '<h1>arbstr</h1><ul><li><a href="/ui">Dashboard</a></li>'
        '<li><a href="/schema">API schema</a></li><li><a href="/health">Health</a></li></ul>'
    )
    return Response(body, media_type="text/html", headers=SECURITY_HEADERS)


@get("/ui", include_in_schema=False)
async def overview(request: Request[Any, Any, Any]) -> Template | Redirect:
    """Tiles, a time series and breakdowns for a range, from the hourly rollups."""
    params = {k: v for k, v in request.query_params.items() if v}
    params.setdefault("range", "last_24h")
    try:
        query = parse_stats_query(params)
    except ArbstrError as exc:
        return _error(request, exc)
    log = _log(request)
    bucket = "hour" if "since" in params else _BUCKET.get(params["range"], "hour")
    if bucket == "minute" and query.until - query.since > 2 * 86400:
        bucket = "hour"
    totals = await log.stats(query)
    series = await log.timeseries(query, bucket)  # type: ignore[arg-type]
    by_provider = (await log.stats(query, "provider")).providers or {}
    by_model = (await log.stats(query, "model")).models or {}
    # by project and key: the rollup per key and hour (36 ms for 24 h, 221 ms for 30 days of
    # 1M requests from 50 keys; bench/ui_pages.py); the 20 that cost most
    by_project = _top((await log.stats(query, "project")).projects or {})
    by_key = _top((await log.stats(query, "key")).keys or {})
    size = {"minute": 60, "hour": 3600, "day": 86400}[bucket]
    found = {p.start: p for p in series.data}
    starts = [iso(t) for t in range(int(query.since // size * size), int(query.until), size)]
    points = [found.get(t) for t in starts]  # every bucket of the range, the empty ones too
    labels = [t[5:16].replace("T", " ") for t in starts]
    chart = bars(
        f"Requests per {bucket}", labels, [float(p.counts.total) if p else 0.0 for p in points]
    )
    cost_chart = bars(
        f"Cost per {bucket} (sats)",
        labels,
        [p.costs.total_cost_sats if p else 0.0 for p in points],
    )
    counts = totals.counts
    error_rate = counts.error / counts.total * 100 if counts.total else 0.0
    return _page(
        request,
        "overview.html.j2",
        {
            "ranges": list(RANGES),
            "range": params.get("range"),
            "totals": totals,
            "error_rate": error_rate,
            "series": series,
            "labels": labels,
            "chart": chart,
            "cost_chart": cost_chart,
            "by_provider": by_provider,
            "by_model": by_model,
            "by_project": by_project,
            "by_key": by_key,
        },
    )


@get("/ui/requests", include_in_schema=False)
async def requests_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    """The request log with the `/v1/requests` filters, sort and pages."""
    params = {k: v for k, v in request.query_params.items() if v}  # a form's empty fields
    try:
        query = parse_list_query(params)
    except ArbstrError as exc:
        return _error(request, exc)
    page = await _log(request).list(query)
    keep = {k: v for k, v in params.items() if k != "page" and v}
    return _page(
        request,
        "requests.html.j2",
        {"page": page, "query": query, "params": keep, "filters": params},
    )


@get("/ui/requests/{request_id:str}", include_in_schema=False)
async def request_page(
    request: Request[Any, Any, Any], request_id: FromPath[str]
) -> Template | Redirect:
    """One request: attempts on a timeline, tokens, and the cost formula with its numbers."""
    detail = await _log(request).get(request_id)
    if detail is None:
        return _page(request, "error.html.j2", {"message": f"no request '{request_id}'"}, 404)
    settings = request.app.state.gateway.shared.settings
    provider = settings.provider(detail.provider) if detail.provider else None
    return _page(request, "request.html.j2", {"r": detail, "provider": provider})


@get("/ui/audit", include_in_schema=False)
async def audit_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    """The audit log, newest first, with its filters."""
    admin = request.app.state.key_admin
    params = {k: v for k, v in request.query_params.items() if v}
    query = AuditQuery(
        action=params.get("action"),
        actor=params.get("actor"),
        outcome=params.get("outcome"),
        target=params.get("target"),
    )
    try:
        number = int(params.get("page", "1"))
        page = await admin.audit(query, number, 50)
    except (ValueError, ArbstrError) as exc:
        message = exc.message if isinstance(exc, ArbstrError) else "page must be a number"
        return _page(request, "error.html.j2", {"message": message, "param": "page"}, 400)
    return _page(request, "audit.html.j2", {"page": page, "filters": params})


@get("/ui/login", include_in_schema=False, sync_to_thread=False)
def login_form(request: Request[Any, Any, Any]) -> Response[Any]:
    if _keys(request) is None:
        return Redirect("/ui")
    return _login_page(request.query_params.get("next", "/ui"), None, 200)


@post("/ui/login", include_in_schema=False, status_code=303)
async def login(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    """Check the admin token; a session cookie on success, a throttled, audited failure else."""
    keys = _keys(request)
    if keys is None:
        return Redirect("/ui")
    address = request.client.host if request.client else "unknown"
    form_token = data.get("login_csrf", "")
    if not form_token or not hmac.compare_digest(form_token, request.cookies.get(LOGIN_COOKIE, "")):
        return _refused(request, "the login form expired; load it again", 403)
    if keys.throttle.blocked(address) is not None:
        return _refused(request, "too many failed logins from this address; wait a minute", 429)
    if not keys.is_admin(data.get("token", "")):
        keys.throttle.failed(address, "ui_login")
        return _refused(request, "that is not the admin token", 401)
    await keys.store.add_audit(
        [
            AuditEvent(
                id=new_id(16),
                timestamp=time.time(),
                actor="admin",
                action="admin.login",
                client_ip=address,
            )
        ]
    )
    target = data.get("next", "/ui")
    if not target.startswith("/ui") or target.startswith("//"):
        target = "/ui"
    response = Redirect(target, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        _sessions(request).issue(),
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


def _refused(request: Request[Any, Any, Any], message: str, status: int) -> Response[Any]:
    return _login_page("/ui", message, status)


def _login_page(next_path: str, error: str | None, status: int) -> Response[Any]:
    """The login form with a fresh double-submit token (its cookie set beside it)."""
    token = new_id(24)
    context = {"login_csrf": token, "next": next_path, "error": error, "auth_on": True,
               "csrf": "", "path": "/ui/login"}  # fmt: skip
    response = Template(
        template_name="login.html.j2", context=context, status_code=status,
        headers=SECURITY_HEADERS,
    )  # fmt: skip
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/ui")
    return response


@post("/ui/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    nonce = _nonce(request)
    if nonce and not _sessions(request).check_csrf(nonce, data.get("csrf")):
        return Response("missing or wrong CSRF token", status_code=403, media_type="text/plain")
    response = Redirect("/ui/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response


UI_ROUTES = [root, overview, requests_page, request_page, audit_page, login_form, login, logout]
