"""`Accounts`: what a keyed request may spend. Admission reserves on every meter that applies
(lifetime requests, rpm, tpm, budget; key and project) all or nothing; the end of the request
settles the budget to its actual cost (its estimate when the cost is unknown) and the tokens
to the actual count.

A key's plan (its meters, in refusal order) is built once and reused until the key or its
project changes (the mirror replaces a changed row's object) or its earliest window ends:
a request far from its caps costs a few dict-free counter updates."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from arbstr.errors import ArbstrError, BudgetExceeded, RateLimited
from arbstr.keys.meters import Meter, Meters
from arbstr.keys.model import KeyEntry, ProjectRow, period_end, period_start
from arbstr.keys.ring import KeyRing

__all__ = ["Accounts", "Plan", "Reservation", "ReservationPending"]

Header = tuple[bytes, bytes]
# what a planned take is for: the amount it takes and the refusal it gives
_REQUESTS, _RPM, _TPM, _SATS = 0, 1, 2, 3
Take = tuple[Meter, int, str, "KeyEntry | ProjectRow"]  # meter, what, kind, row


class Plan:
    """The meters of one key and its project, valid until `valid_until` (wall clock)."""

    __slots__ = ("key", "key_rpm", "limit_header", "project", "sats", "takes", "tokens", "valid")

    def __init__(self, key: KeyEntry, project: ProjectRow, takes: list[Take], valid: float) -> None:
        self.key, self.project, self.takes, self.valid = key, project, takes, valid
        self.sats = [m for m, what, _, _ in takes if what == _SATS]
        self.tokens = [m for m, what, _, _ in takes if what == _TPM]
        self.key_rpm = next((m for m, w, kind, _ in takes if w == _RPM and kind == "key"), None)
        self.limit_header = b"%d" % self.key_rpm.limit if self.key_rpm is not None else b""


class Reservation:
    __slots__ = ("estimate_sats", "estimate_tokens", "headers", "plan", "settled")

    def __init__(self, plan: Plan, estimate_sats: float, estimate_tokens: int) -> None:
        self.plan = plan
        self.estimate_sats, self.estimate_tokens = estimate_sats, estimate_tokens
        self.headers: list[Header] = []
        self.settled = False


class _Periods:
    """`period_start`/`period_end` of the current instant, recomputed when a period ends
    (datetime arithmetic is a few microseconds; this is a comparison)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, float | None]] = {}

    def get(self, period: str, now: float) -> tuple[float, float | None]:
        hit = self._cache.get(period)
        if hit is not None and hit[0] <= now and (hit[1] is None or now < hit[1]):
            return hit
        hit = (period_start(period, now), period_end(period, now))
        self._cache[period] = hit
        return hit


class Accounts:
    """The key ring (who) and the meters (how much), per process."""

    def __init__(self, ring: KeyRing, meters: Meters) -> None:
        self.ring = ring
        self.meters = meters
        self._periods = _Periods()
        self._plans: dict[str, Plan] = {}

    def plan(self, key: KeyEntry, project: ProjectRow, now: float) -> Plan:
        hit = self._plans.get(key.id)
        if hit is not None and hit.key is key and hit.project is project and now < hit.valid:
            return hit
        takes: list[Take] = []
        meter = self.meters.meter
        valid = math.inf
        if key.max_requests is not None:
            m = meter(f"key:{key.id}:requests", 0.0, key.max_requests, True)
            takes.append((m, _REQUESTS, "key", key))
        minute = float(int(now // 60) * 60)
        levels: tuple[tuple[str, KeyEntry | ProjectRow], ...] = (("key", key), ("project", project))
        for kind, row in levels:
            if row.rpm is not None:
                valid = minute + 60
                m = meter(f"{kind}:{row.id}:rpm", minute, row.rpm, True, valid)
                takes.append((m, _RPM, kind, row))
            if row.tpm is not None:
                valid = minute + 60
                m = meter(f"{kind}:{row.id}:tpm", minute, row.tpm, True, valid)
                takes.append((m, _TPM, kind, row))
        for kind, row in levels:
            if row.budget_sats is not None:
                window, end = self._periods.get(row.budget_period, now)
                ends = math.inf if end is None else end
                valid = min(valid, ends)
                m = meter(f"{kind}:{row.id}:sats", window, row.budget_sats, False, ends)
                takes.append((m, _SATS, kind, row))
        if len(self._plans) > 100_000:
            self._plans.clear()
        plan = self._plans[key.id] = Plan(key, project, takes, valid)
        return plan

    def refusal(self, take: Take, now: float) -> ArbstrError:
        """The error of a take that did not fit (built only when one does not)."""
        m, what, kind, row = take
        if what == _REQUESTS:
            limit = getattr(row, "max_requests", None)
            return RateLimited(
                f"key {row.id} has used its {limit} requests", code="request_limit_exceeded"
            )
        if what in (_RPM, _TPM):
            name, limit = ("rpm", row.rpm) if what == _RPM else ("tpm", row.tpm)
            return RateLimited(
                f"{kind} {row.id} is over its {name} limit of {limit}",
                retry_after=m.window + 60 - now,
            )
        end = self._periods.get(row.budget_period, now)[1]
        until = (
            "it does not reset (period 'total')"
            if end is None
            else f"the {row.budget_period} period ends {_iso(end)}"
        )
        return BudgetExceeded(
            f"{kind} {row.id} would pass its budget of {row.budget_sats:g} sats; {until}"
        )

    def reserve(
        self, key: KeyEntry, project: ProjectRow, est_sats: float, est_tokens: int
    ) -> Reservation | ReservationPending:
        """Reserve now, or hand back the slow path (some meter needs a lease). A key without
        limits still gets a reservation: the request log charges every keyed request."""
        now = time.time()
        plan = self.plan(key, project, now)
        res = Reservation(plan, est_sats, est_tokens)
        takes = plan.takes
        if not takes:
            return res
        amounts = (1, 1, est_tokens, est_sats)
        if not self.meters.leased:  # exact counters in memory: the common case, inlined
            for i, (m, what, _, _) in enumerate(takes):
                amount = amounts[what]
                if m.used + amount > m.limit + 1e-9:
                    for done, w, _, _ in takes[:i]:
                        done.used -= amounts[w]
                    raise self.refusal(takes[i], now)
                m.used += amount
            self.finish(res, now)
            return res
        taken: list[tuple[Meter, float]] = []
        try_take = self.meters.try_take
        for i, take in enumerate(takes):
            m, amount = take[0], amounts[take[1]]
            ok = try_take(m, amount)
            if ok is None:
                return ReservationPending(self, res, i, taken, now)
            if not ok:
                self.undo(taken)
                raise self.refusal(take, now)
            taken.append((m, amount))
        self.finish(res, now)
        return res

    def undo(self, taken: list[tuple[Meter, float]]) -> None:
        for m, amount in taken:
            self.meters.give(m, amount)

    def finish(self, res: Reservation, now: float) -> None:
        """The reservation's response headers."""
        plan, leased = res.plan, self.meters.leased
        m = plan.key_rpm
        if m is not None:
            res.headers += [
                (b"x-ratelimit-limit-requests", plan.limit_header),
                (b"x-ratelimit-remaining-requests", b"%d" % m.remaining(leased)),
                (b"x-ratelimit-reset-requests", b"%ds" % max(0, math.ceil(m.window + 60 - now))),
            ]
        if plan.sats:
            left = math.inf
            for s in plan.sats:
                left = min(left, s.remaining(leased))
            res.headers.append((b"x-arbstr-budget-remaining-sats", b"%.6f" % left))

    def settle(self, res: Reservation, charged_sats: float, tokens: int | None) -> None:
        """The request ended: its budget meters keep `charged_sats` of the reservation."""
        if res.settled:
            return
        res.settled = True
        back = res.estimate_sats - charged_sats
        if back:
            for m in res.plan.sats:
                self.meters.give(m, back)
        if tokens is not None and tokens != res.estimate_tokens:
            for m in res.plan.tokens:
                self.meters.give(m, res.estimate_tokens - tokens)


class ReservationPending:
    """The rest of a reservation, awaited: the takes from `index` on, leasing as needed."""

    __slots__ = ("accounts", "index", "now", "res", "taken")

    def __init__(
        self,
        accounts: Accounts,
        res: Reservation,
        index: int,
        taken: list[tuple[Meter, float]],
        now: float,
    ) -> None:
        self.accounts, self.res, self.index, self.taken, self.now = (
            accounts, res, index, taken, now,
        )  # fmt: skip

    async def run(self) -> Reservation:
        accounts, meters, res = self.accounts, self.accounts.meters, self.res
        amounts = (1, 1, res.estimate_tokens, res.estimate_sats)
        for take in res.plan.takes[self.index :]:
            m, amount = take[0], amounts[take[1]]
            ok = meters.try_take(m, amount)
            if ok is None:
                try:
                    ok = await meters.take(m, amount)
                except Exception as exc:  # asyncpg's errors are not OSErrors: all of them
                    accounts.undo(self.taken)
                    raise ArbstrError(
                        f"the usage store did not answer ({type(exc).__name__})",
                        status=503,
                        code="usage_store_unavailable",
                    ) from None
                except BaseException:
                    accounts.undo(self.taken)
                    raise
            if not ok:
                accounts.undo(self.taken)
                raise accounts.refusal(take, self.now)
            self.taken.append((m, amount))
        accounts.finish(res, self.now)
        return res


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
