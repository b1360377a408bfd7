"""Usage meters: budgets, lifetime request counts and per-minute limits, per key and project.

One process (the default): each meter is an exact counter in memory, seeded from the request
log at startup. Several processes (`[state] backend = "database"`, or several workers): every
meter leases slices of what remains from a counter row in the key store (one atomic
`UPDATE ... WHERE used + n <= limit`) and admits locally from its slice; a slice is an eighth of
what remained, so slices shrink as the cap nears until each request reserves exactly, in the
database. The sum of the leases never passes the limit; see docs/adr/0011 for the bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable

from arbstr.stores.keys.base import KeyStore

__all__ = ["Meter", "Meters"]

log = logging.getLogger(__name__)

SLICE_FRACTION = 0.125  # of what remains, per lease
IDLE_RETURN_S = 2.0  # an unused slice goes back after this long without a take
LEASE_TIMEOUT_S = 2.0
REFUSAL_MEMORY_S = 0.5  # a refused lease answers requests as large for this long, locally


class Meter:
    """One counter: (scope, window) with a limit. `integral` meters count whole requests."""

    __slots__ = (
        "debt",
        "ends",
        "integral",
        "last_slice",
        "leasing",
        "left",
        "limit",
        "lock",
        "refused",
        "scope",
        "touched",
        "used",
        "window",
    )

    def __init__(
        self,
        scope: str,
        window: float,
        limit: float,
        seed: float,
        integral: bool,
        ends: float = math.inf,
    ) -> None:
        self.scope, self.window, self.limit = scope, window, limit
        self.ends = ends  # when the window ends (wall clock): the meter can go a minute later
        self.used = seed  # local mode: the truth; leased mode: the store's total, last seen
        self.left = 0.0  # leased mode: leased and not yet used by this process
        self.last_slice = 0.0
        self.leasing = False
        self.touched = 0.0
        self.integral = integral
        self.lock: asyncio.Lock | None = None  # leased mode: one lease in flight per meter
        self.refused = (0.0, math.inf)  # (when, amount) of the last lease the store refused
        self.debt = 0.0  # taken while the store did not answer (charged when it answers)

    def remaining(self, leased: bool) -> float:
        if leased:
            return max(0.0, self.limit - self.used) + max(0.0, self.left)
        return max(0.0, self.limit - self.used)

    def slice_for(self, amount: float) -> float:
        extra = max(0.0, self.limit - self.used - amount) * SLICE_FRACTION
        return math.floor(extra) if self.integral else extra


class Meters:
    """Every meter of this process. `store=None`: exact local counters (one process)."""

    def __init__(self, store: KeyStore | None, seeds: dict[tuple[str, float], float]) -> None:
        self.store = store
        self.leased = store is not None
        self.seeds = seeds
        self.meters: dict[tuple[str, float], Meter] = {}
        self.statements = 0  # store calls made (leases, give-backs): tests and the benchmark
        self._task: asyncio.Task[None] | None = None

    def meter(
        self, scope: str, window: float, limit: float, integral: bool, ends: float = math.inf
    ) -> Meter:
        m = self.meters.get((scope, window))
        if m is None:
            seed = self.seeds.get((scope, window), 0.0)
            m = Meter(scope, window, limit, seed, integral, ends)
            self.meters[(scope, window)] = m
        if m.limit != limit:  # a PATCH changed it: the next take sees the new one
            m.limit, m.refused = limit, (0.0, math.inf)
        return m

    def try_take(self, m: Meter, amount: float) -> bool | None:
        """Take `amount` now: True, False (refused), or None (a lease is needed: `take`)."""
        m.touched = time.monotonic()
        if not self.leased:
            if m.used + amount > m.limit + 1e-9:
                return False
            m.used += amount
            return True
        if m.left >= amount:
            m.left -= amount
            if m.left < m.last_slice / 2 and not m.leasing:
                self._prefetch(m)
            return True
        return None

    async def take(self, m: Meter, amount: float) -> bool:
        """The slow path: lease what is missing plus a slice, or exactly what is missing.
        Requests that miss together wait for one lease and share its slice, so a burst does
        not scatter the remainder into slices nobody uses."""
        assert self.store is not None
        if m.lock is None:
            m.lock = asyncio.Lock()
        async with m.lock:
            if m.left >= amount:  # the lease just before this one left enough
                m.left -= amount
                return True
            when, refused = m.refused
            if amount >= refused and time.monotonic() - when < REFUSAL_MEMORY_S:
                return False  # the store just refused as much: a flood at the cap stays local
            need = amount - max(0.0, m.left)
            slice_ = m.slice_for(need)
            for ask in (need + slice_, need) if slice_ > 0 else (need,):
                try:
                    got = await self._lease(m, ask)
                except Exception:  # the store's trouble (asyncpg's own errors included)
                    if self._on_credit(m, amount):
                        return True
                    raise
                if got:
                    m.left += ask - amount
                    m.last_slice = ask - need
                    return True
            return False

    def _on_credit(self, m: Meter, amount: float) -> bool:
        """The store does not answer (an outage): take `amount` on credit while this process's
        credit on the meter stays within one slice (an eighth of what remained when it was last
        known), so an outage neither stops a key nor lets it run past its limit by more than a
        slice per replica. What was taken shows as a negative `left`; `flush` charges it."""
        allowance = max(m.slice_for(0.0), 1.0 if m.integral else 0.0)
        if m.debt + amount > allowance:
            return False
        if not m.debt:
            log.warning(
                "usage store unreachable: %s runs on credit (at most %g)", m.scope, allowance
            )
        m.debt += amount
        m.left -= amount
        return True

    def give(self, m: Meter, amount: float) -> None:
        """Return part of a reservation (positive) or charge more than reserved (negative)."""
        if self.leased:
            m.left += amount
        else:
            m.used -= amount

    async def _lease(self, m: Meter, amount: float) -> bool:
        assert self.store is not None
        self.statements += 1
        async with asyncio.timeout(LEASE_TIMEOUT_S):
            total = await self.store.lease(m.scope, m.window, amount, m.limit, self._seed(m))
        if total is None:
            m.used = max(m.used, m.limit - amount + (1 if m.integral else 1e-9))
            m.refused = (time.monotonic(), amount)
            return False
        m.used, m.debt = total, 0.0
        return True

    def _seed(self, m: Meter) -> float:
        return self.seeds.get((m.scope, m.window), 0.0)

    def _prefetch(self, m: Meter) -> None:
        m.leasing = True

        async def run() -> None:
            try:
                slice_ = m.slice_for(0.0)
                if slice_ > 0 and await self._lease(m, slice_):
                    m.left += slice_
                    m.last_slice = slice_
            except Exception as exc:
                log.warning("usage lease for %s failed: %s", m.scope, type(exc).__name__)
            finally:
                m.leasing = False

        self._spawn(run())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        _background.add(task)
        task.add_done_callback(_background.discard)

    # ---- background upkeep (leased mode) ------------------------------------------------
    async def start(self, every_s: float = 0.25) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._upkeep(every_s))

    async def _upkeep(self, every_s: float) -> None:
        failing = False
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.flush(idle_s=IDLE_RETURN_S)
                failing = False
            except Exception as exc:
                if not failing:  # once an outage, not four times a second
                    log.warning("usage upkeep failed: %s", type(exc).__name__)
                failing = True

    def prune(self, wall: float | None = None) -> int:
        """Drop the meters whose window ended more than a minute ago (the minute windows of
        every key that was used, otherwise kept forever); the count dropped."""
        wall = time.time() if wall is None else wall
        gone = [k for k, m in self.meters.items() if m.ends + 60 < wall and m.left == 0]
        for k in gone:
            del self.meters[k]
        return len(gone)

    async def flush(self, idle_s: float = 0.0) -> None:
        """Charge what was spent past the leases; give back slices idle for `idle_s`."""
        self.prune()
        if self.store is None:
            return
        now = time.monotonic()
        for m in list(self.meters.values()):
            if m.leasing:
                continue
            if m.left < 0 or (m.left > 0 and now - m.touched >= idle_s):
                amount = -m.left
                self.statements += 1
                m.used = await self.store.charge(m.scope, m.window, amount, self._seed(m))
                m.left += amount  # only once the store took it: a failed charge is kept
                m.debt = 0.0

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leased:
            with contextlib.suppress(Exception):
                await self.flush(idle_s=0.0)


_background: set[asyncio.Future[None]] = set()
