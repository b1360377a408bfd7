"""The admin API's answers: rows from the key store with their spend, request count and last
use from the request log (the ledger), times as ISO 8601."""

from __future__ import annotations

import time

from arbstr.keys.model import KeyRow, ProjectRow, period_end, period_start
from arbstr.keys.schemas import KeyOut, ProjectOut
from arbstr.stores.keys.base import KeyStore
from arbstr.stores.requestlog.base import RequestLog
from arbstr.stores.requestlog.sql import iso

__all__ = ["keys", "projects", "spend"]


def _opt_iso(ts: float | None) -> str | None:
    return iso(ts) if ts else None


async def spend(
    log: RequestLog, scope: str, rows: list[ProjectRow] | list[KeyRow], now: float
) -> dict[str, tuple[float, int, float]]:
    """Spend in each row's current period; the request count and last use over all time."""
    ids = [r.id for r in rows]
    lifetime = await log.spend(scope, 0.0, ids)
    out = {
        i: (0.0, lifetime.get(i, (0.0, 0, 0.0))[1], lifetime.get(i, (0, 0, 0.0))[2]) for i in ids
    }
    by_period: dict[float, list[str]] = {}
    for r in rows:
        by_period.setdefault(period_start(r.budget_period, now), []).append(r.id)
    for since, members in by_period.items():
        spent = lifetime if since == 0 else await log.spend(scope, since, members)
        for i in members:
            out[i] = (spent.get(i, (0.0, 0, 0.0))[0], out[i][1], out[i][2])
    return out


async def projects(
    store: KeyStore, log: RequestLog, rows: list[ProjectRow], provider_keys: bool = False
) -> list[ProjectOut]:
    now = time.time()
    spent = await spend(log, "project", rows, now)
    masked: dict[str, dict[str, str]] = {}
    if provider_keys and rows:
        changes = await store.changes_since(min(r.rev for r in rows) - 1)
        for pk in changes.provider_keys:
            masked.setdefault(pk.project_id, {})[pk.provider] = pk.masked
    return [
        ProjectOut(
            id=r.id,
            name=r.name,
            active=r.active,
            budget_sats=r.budget_sats,
            budget_period=r.budget_period,
            rpm=r.rpm,
            tpm=r.tpm,
            allowed_models=r.allowed_models,
            metadata=r.metadata,
            created_at=iso(r.created_at),
            updated_at=_opt_iso(r.updated_at),
            spend_sats=round(spent[r.id][0], 6),
            budget_reset_at=_opt_iso(period_end(r.budget_period, now)),
            provider_keys=masked.get(r.id, {}),
        )
        for r in rows
    ]


async def keys(log: RequestLog, rows: list[KeyRow]) -> list[KeyOut]:
    now = time.time()
    spent = await spend(log, "key", rows, now)
    return [
        KeyOut(
            id=r.id,
            project_id=r.project_id,
            name=r.name,
            active=r.active,
            expires_at=_opt_iso(r.expires_at),
            max_requests=r.max_requests,
            budget_sats=r.budget_sats,
            budget_period=r.budget_period,
            rpm=r.rpm,
            tpm=r.tpm,
            allowed_models=r.allowed_models,
            metadata=r.metadata,
            created_at=iso(r.created_at),
            updated_at=_opt_iso(r.updated_at),
            revoked_at=_opt_iso(r.revoked_at),
            spend_sats=round(spent[r.id][0], 6),
            requests=spent[r.id][1],
            last_used_at=_opt_iso(spent[r.id][2]),
            budget_reset_at=_opt_iso(period_end(r.budget_period, now)),
        )
        for r in rows
    ]
