"""Health routes: overall status with per-provider circuits, liveness, readiness."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from arbstr.api.deps import GatewayDep, json_response
from arbstr.telemetry import Metrics

__all__ = ["health", "live", "metrics_route", "ratelimits", "ready"]


@get("/health", sync_to_thread=False)
def health(gateway: GatewayDep) -> Response[bytes]:
    """`ok`, `degraded` (200) or `unhealthy` (503) with each provider's circuit state."""
    report = gateway.health_report()
    return json_response(report, status=503 if report["status"] == "unhealthy" else 200)


@get("/health/live", sync_to_thread=False)
def live() -> Response[bytes]:
    """The process is up and serving."""
    return json_response({"status": "ok"})


@get("/health/ready")
async def ready(gateway: GatewayDep) -> Response[bytes]:
    """Ready when the stores answer."""
    ok, detail = await gateway.ready()
    return json_response({"status": "ok" if ok else "unavailable", **detail}, 200 if ok else 503)


@get("/v1/ratelimits", sync_to_thread=False)
def ratelimits(gateway: GatewayDep) -> Response[bytes]:
    """Per provider/model: available, tracking or exhausted, cooldown end, last quota."""
    return json_response({"ratelimits": gateway.health.cooldowns.snapshot()})


@get("/metrics", sync_to_thread=False, name="metrics")
def metrics_route(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format: requests, errors, latency, overhead, tokens, cost, circuits."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
