"""Admission steps of virtual keys (DESIGN §7): who is calling, may it use this model, does the
request fit every limit of its key and project. Each refusal happens before any upstream call,
is recorded with the key's id, and reads only this process's memory unless a meter needs a
lease (several replicas, near a cap)."""

from __future__ import annotations

import time
from collections.abc import Awaitable

from arbstr.errors import Forbidden, RateLimited
from arbstr.keys.accounts import ReservationPending
from arbstr.keys.model import model_allowed
from arbstr.keys.ring import KeyRefused
from arbstr.pipeline.context import RequestContext, Shared

__all__ = ["authenticate", "check_model", "reserve"]


def authenticate(shared: Shared, ctx: RequestContext) -> None:
    keys = shared.keys
    if keys is None or ctx.meta.operator:
        return
    address = ctx.meta.client_ip or "unknown"
    wait = keys.throttle.blocked(address)
    if wait is not None:
        raise RateLimited(
            "too many failed authentications from this address; try again later",
            code="auth_throttled",
            retry_after=wait,
        )
    try:
        key, project = keys.ring.identify(ctx.meta.authorization, time.time())
    except KeyRefused as exc:
        keys.throttle.failed(address, exc.code, ctx.meta.request_id)
        ctx.record.key_id, ctx.record.project_id = exc.key_id, exc.project_id
        auth = ctx.meta.authorization
        if auth is not None and keys.is_admin(auth.decode("latin-1").partition(" ")[2].strip()):
            exc.message = "the admin token is not a virtual key: it cannot call models"
        raise
    ctx.key, ctx.project = key, project
    ctx.meta.project_id = project.id
    ctx.record.key_id, ctx.record.project_id = key.id, project.id


def check_model(shared: Shared, ctx: RequestContext) -> None:
    key, project = ctx.key, ctx.project
    if key is None or project is None or not (key.allowed_models or project.allowed_models):
        return
    for kind, patterns in (("key", key.allowed_models), ("project", project.allowed_models)):
        if not model_allowed(patterns, ctx.model):
            raise Forbidden(
                f"model '{ctx.model}' is not allowed for this {kind}",
                code="model_not_allowed",
                param="model",
            )


def reserve(shared: Shared, ctx: RequestContext) -> Awaitable[None] | None:
    key, project, plan = ctx.key, ctx.project, ctx.plan
    if key is None or project is None or plan is None or shared.keys is None:
        return None
    # the dearest candidate: a failover (or a circuit open on the cheapest) must not let the
    # actual cost pass what was reserved; settling gives the difference back
    estimate = max(plan.expected_cost(c) for c in plan.candidates)
    result = shared.keys.accounts.reserve(key, project, estimate, plan.in_est + plan.out_est)
    if isinstance(result, ReservationPending):
        return _leased(ctx, result)
    ctx.reservation = result
    return None


async def _leased(ctx: RequestContext, pending: ReservationPending) -> None:
    ctx.reservation = await pending.run()
