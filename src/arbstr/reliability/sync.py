"""Share circuit and cooldown state between replicas through a `StateStore`, off the hot path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from arbstr.reliability.health import ProviderHealth
from arbstr.stores.state import StateRow, StateStore

__all__ = ["StateSync"]

log = logging.getLogger(__name__)


class StateSync:
    """Every `interval_s`: publish what changed here, apply what changed elsewhere.

    The request path only reads the local `Health` and marks what it changed; this task is the
    only thing that waits on the database, so a slow or absent database never slows a request.
    """

    def __init__(self, store: StateStore, health: ProviderHealth, interval_s: float = 0.25) -> None:
        self.store = store
        self.health = health
        self.interval_s = interval_s
        self.origin = uuid.uuid4().hex[:12]
        self._since = 0.0
        self._task: asyncio.Task[None] | None = None
        self._published: dict[tuple[str, str, str], tuple[object, ...]] = {}

    async def start(self) -> None:
        await self.store.setup()
        await self.sync_once()
        self._task = asyncio.create_task(self._run(), name="arbstr-state-sync")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.sync_once()
        await self.store.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync_once()
            except Exception as exc:  # keep serving on local state; retry next tick
                log.warning("state sync failed: %s", type(exc).__name__)

    def _outgoing(self) -> list[StateRow]:
        circuits, cooldowns = self.health.take_changes()
        mono, wall = self.health.clock(), self.health.wall()
        rows: list[StateRow] = []
        for name, snap in circuits:
            until = wall + (snap.open_until - mono) if snap.open_until is not None else None
            rows.append(
                StateRow(
                    provider=name,
                    kind="circuit",
                    state=snap.state,
                    until=until,
                    failure_count=snap.failure_count,
                    origin=self.origin,
                )
            )
        for (provider, model), cooling in cooldowns:
            rows.append(
                StateRow(
                    provider=provider,
                    model=model or "",
                    kind="cooldown",
                    state="cooldown",
                    until=wall + (cooling.until - mono),
                    reason=cooling.reason,
                    origin=self.origin,
                )
            )
        return rows

    async def sync_once(self) -> None:
        rows = self._outgoing()
        try:
            await self.store.publish(rows)
        except BaseException:  # not lost: sent again with the next exchange
            self.health.mark_changed(
                [r.provider for r in rows if r.kind == "circuit"],
                [(r.provider, r.model or None) for r in rows if r.kind == "cooldown"],
            )
            raise
        started = self.health.wall()
        rows = await self.store.changes_since(self._since)
        # overlap the next window a little: rows committed late are applied again, harmlessly
        self._since = max(self._since, started - 2.0)
        mono, wall = self.health.clock(), self.health.wall()
        for row in rows:
            if row.origin == self.origin or row.until is None or row.until <= wall:
                continue
            if row.kind == "circuit":
                self.health.apply_remote_circuit(
                    row.provider, row.state, mono + (row.until - wall), row.failure_count
                )
            elif row.kind == "cooldown":
                key = (row.provider, row.model or None)
                self.health.apply_remote_cooldown(key, row.until - wall, row.reason or "remote")
