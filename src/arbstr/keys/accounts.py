"""`Accounts`: what a keyed request may spend. Admission reserves on every meter that applies
(lifetime requests, rpm, tpm, budget; key and project) all or nothing; the end of the request
settles the budget to its actual cost (its estimate when the cost is unknown) and the tokens
to the actual count."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from arbstr.errors import ArbstrError, BudgetExceeded, RateLimited
from arbstr.keys.meters import Meter, Meters
from arbstr.keys.model import KeyRow, ProjectRow, period_end, period_start
from arbstr.keys.ring import KeyRing

__all__ = ["Accounts", "Reservation"]

Header = tuple[bytes, bytes]


@dataclass(slots=True)
class Reservation:
    key: KeyRow
    project: ProjectRow
    estimate_sats: float
    estimate_tokens: int
    sats: list[Meter] = field(default_factory=list)
    tokens: list[Meter] = field(default_factory=list)
    headers: list[Header] = field(default_factory=list)
    settled: bool = False


def _iso_delay(seconds: float) -> bytes:
    return f"{max(0, math.ceil(seconds))}s".encode()


class Accounts:
    """The key ring (who) and the meters (how much), per process."""

    def __init__(self, ring: KeyRing, meters: Meters) -> None:
        self.ring = ring
        self.meters = meters

    def _plan(
        self, key: KeyRow, project: ProjectRow, now: float, est_sats: float, est_tokens: int
    ) -> list[tuple[Meter, float, ArbstrError]]:
        """Every meter the request must fit, in the order refusals are reported."""
        out: list[tuple[Meter, float, ArbstrError]] = []
        ms = self.meters
        if key.max_requests is not None:
            m = ms.meter(f"key:{key.id}:requests", 0.0, key.max_requests, True)
            out.append((m, 1, RateLimited(
                f"key {key.id} has used its {key.max_requests} requests",
                code="request_limit_exceeded",
            )))  # fmt: skip
        levels: tuple[tuple[str, KeyRow | ProjectRow, str], ...] = (
            ("key", key, f"key:{key.id}"),
            ("project", project, f"project:{project.id}"),
        )
        minute = float(int(now // 60) * 60)
        wait = minute + 60 - now
        for kind, row, scope in levels:
            if row.rpm is not None:
                m = ms.meter(f"{scope}:rpm", minute, row.rpm, True)
                out.append((m, 1, RateLimited(
                    f"{kind} {row.id} is over its rpm limit of {row.rpm}", retry_after=wait
                )))  # fmt: skip
            if row.tpm is not None:
                m = ms.meter(f"{scope}:tpm", minute, row.tpm, True)
                out.append((m, est_tokens, RateLimited(
                    f"{kind} {row.id} is over its tpm limit of {row.tpm}", retry_after=wait
                )))  # fmt: skip
        for kind, row, scope in levels:
            if row.budget_sats is not None:
                window = period_start(row.budget_period, now)
                m = ms.meter(f"{scope}:sats", window, row.budget_sats, False)
                end = period_end(row.budget_period, now)
                until = (
                    "it does not reset (period 'total')"
                    if end is None
                    else f"the {row.budget_period} period ends {_iso(end)}"
                )
                out.append((m, est_sats, BudgetExceeded(
                    f"{kind} {row.id} would pass its budget of {row.budget_sats:g} sats; {until}"
                )))  # fmt: skip
        return out

    def reserve(
        self, key: KeyRow, project: ProjectRow, est_sats: float, est_tokens: int
    ) -> Reservation | ReservationPending:
        """Reserve now, or hand back the slow path (some meter needs a lease)."""
        now = time.time()
        plan = self._plan(key, project, now, est_sats, est_tokens)
        res = Reservation(key, project, est_sats, est_tokens)
        taken: list[tuple[Meter, float]] = []
        for i, (m, amount, refusal) in enumerate(plan):
            ok = self.meters.try_take(m, amount)
            if ok is None:
                return ReservationPending(self, res, plan, i, taken, now)
            if not ok:
                self._undo(taken)
                raise refusal
            taken.append((m, amount))
        self._finish(res, plan, now)
        return res

    def _undo(self, taken: list[tuple[Meter, float]]) -> None:
        for m, amount in taken:
            self.meters.give(m, amount)

    def _finish(
        self, res: Reservation, plan: list[tuple[Meter, float, ArbstrError]], now: float
    ) -> None:
        leased = self.meters.leased
        budget_left: float | None = None
        for m, _, _ in plan:
            if m.scope.endswith(":sats"):
                res.sats.append(m)
                left = m.remaining(leased)
                budget_left = left if budget_left is None else min(budget_left, left)
            elif m.scope.endswith(":tpm"):
                res.tokens.append(m)
        key_rpm = next((m for m, _, _ in plan if m.scope == f"key:{res.key.id}:rpm"), None)
        if key_rpm is not None:
            res.headers += [
                (b"x-ratelimit-limit-requests", str(int(key_rpm.limit)).encode()),
                (b"x-ratelimit-remaining-requests", str(int(key_rpm.remaining(leased))).encode()),
                (b"x-ratelimit-reset-requests", _iso_delay(key_rpm.window + 60 - now)),
            ]
        if budget_left is not None:
            res.headers.append((b"x-arbstr-budget-remaining-sats", f"{budget_left:.6f}".encode()))

    def settle(self, res: Reservation, charged_sats: float, tokens: int | None) -> None:
        """The request ended: its budget meters keep `charged_sats` of the reservation."""
        if res.settled:
            return
        res.settled = True
        back = res.estimate_sats - charged_sats
        if back:
            for m in res.sats:
                self.meters.give(m, back)
        if tokens is not None and tokens != res.estimate_tokens:
            for m in res.tokens:
                self.meters.give(m, res.estimate_tokens - tokens)


class ReservationPending:
    """The rest of a reservation, awaited: the meters from `index` on, leasing as needed."""

    __slots__ = ("accounts", "index", "now", "plan", "res", "taken")

    def __init__(
        self,
        accounts: Accounts,
        res: Reservation,
        plan: list[tuple[Meter, float, ArbstrError]],
        index: int,
        taken: list[tuple[Meter, float]],
        now: float,
    ) -> None:
        self.accounts, self.res, self.plan = accounts, res, plan
        self.index, self.taken, self.now = index, taken, now

    async def run(self) -> Reservation:
        meters = self.accounts.meters
        for m, amount, refusal in self.plan[self.index :]:
            ok = meters.try_take(m, amount)
            if ok is None:
                try:
                    ok = await meters.take(m, amount)
                except (TimeoutError, OSError, ConnectionError) as exc:
                    self.accounts._undo(self.taken)
                    raise ArbstrError(
                        f"the usage store did not answer ({type(exc).__name__})",
                        status=503,
                        code="usage_store_unavailable",
                    ) from None
                except BaseException:
                    self.accounts._undo(self.taken)
                    raise
            if not ok:
                self.accounts._undo(self.taken)
                raise refusal
            self.taken.append((m, amount))
        self.accounts._finish(self.res, self.plan, self.now)
        return self.res


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
