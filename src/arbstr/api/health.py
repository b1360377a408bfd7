"""Health routes: overall status with per-provider circuits, liveness, readiness."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from arbstr.api.auth import admin_only
from arbstr.api.deps import GatewayDep, ViewsDep
from arbstr.api.shapes import HealthReport, LiveReport, RateLimits, ReadyReport
from arbstr.telemetry import Metrics

__all__ = ["health", "live", "metrics_route", "ratelimits", "ready"]


@get("/health", sync_to_thread=False, tags=["health"])
def health(views: ViewsDep) -> Response[HealthReport]:
    """`ok`, `degraded` (200) or `unhealthy` (503: no provider can take traffic right now)."""
    report = msgspec.convert(views.health_report(), HealthReport)
    return Response(report, status_code=503 if report.status == "unhealthy" else 200)


@get("/health/live", sync_to_thread=False, tags=["health"])
def live() -> LiveReport:
    """The process is up and serving."""
    return LiveReport()


@get("/health/ready", tags=["health"])
async def ready(gateway: GatewayDep) -> Response[ReadyReport]:
    """Ready (200) when every store answers; 503 while draining (from SIGTERM on) or while a
    store does not answer, with the checks that failed."""
    status, checks = await gateway.ready()
    return Response(ReadyReport(status, checks), status_code=200 if status == "ok" else 503)


@get("/v1/ratelimits", sync_to_thread=False, guards=[admin_only], tags=["operator"])
def ratelimits(views: ViewsDep, gateway: GatewayDep) -> RateLimits:
    """Per provider/model: available, tracking or exhausted, cooldown end, last quota; with
    `[queue] enabled`, each line's depth and oldest wait."""
    queues = gateway.queue.snapshot() if gateway.queue is not None else []
    return msgspec.convert({"ratelimits": views.ratelimits(), "queues": queues}, RateLimits)


@get("/metrics", sync_to_thread=False, name="metrics", guards=[admin_only], tags=["operator"])
def metrics_route(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format: requests, errors, latency, overhead, tokens, cost, circuits."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
