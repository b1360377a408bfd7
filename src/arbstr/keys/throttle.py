"""Auth failures per client address: a burst gets 429s for the rest of its window, and each
(address, reason) burst becomes one audit row with a count, so a flood of random keys costs
no database statement per attempt and cannot fill the audit table."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from arbstr.keys.model import AuditEvent, new_id

__all__ = ["AuthThrottle"]

MAX_ADDRESSES = 10_000  # addresses tracked at once; the oldest is flushed past this


class _Burst:
    __slots__ = ("count", "first", "last", "reasons", "request_id")

    def __init__(self, now: float, request_id: str | None) -> None:
        self.first = self.last = now
        self.count = 0
        self.reasons: dict[str, int] = {}
        self.request_id = request_id


class AuthThrottle:
    def __init__(self, burst: int, window_s: float) -> None:
        self.burst = burst
        self.window_s = window_s
        self._bursts: OrderedDict[str, _Burst] = OrderedDict()
        self._done: list[AuditEvent] = []

    def blocked(self, address: str, now: float | None = None) -> float | None:
        """Seconds until `address` may try again (the attempt counts in its burst), or None."""
        b = self._bursts.get(address)
        if b is None or b.count < self.burst:
            return None
        now = time.time() if now is None else now
        left = b.first + self.window_s - now
        if left <= 0:
            return None
        b.count += 1
        b.last = now
        b.reasons["throttled"] = b.reasons.get("throttled", 0) + 1
        return left

    def failed(self, address: str, reason: str, request_id: str | None = None) -> None:
        now = time.time()
        b = self._bursts.get(address)
        if b is not None and now - b.first >= self.window_s:
            self._close(address, b)
            b = None
        if b is None:
            b = self._bursts[address] = _Burst(now, request_id)
            while len(self._bursts) > MAX_ADDRESSES:
                old_address, old = self._bursts.popitem(last=False)
                self._close(old_address, old, pop=False)
        b.count += 1
        b.last = now
        b.reasons[reason] = b.reasons.get(reason, 0) + 1

    def _close(self, address: str, b: _Burst, pop: bool = True) -> None:
        if pop:
            self._bursts.pop(address, None)
        changes: dict[str, list[Any]] = {r: [0, n] for r, n in sorted(b.reasons.items())}
        changes["span_s"] = [0, round(b.last - b.first, 3)]
        self._done.append(  # one row per burst: the count, and the count of each reason
            AuditEvent(
                id=new_id(16),
                timestamp=b.first,
                actor="anonymous",
                action="auth.failure",
                target=",".join(sorted(b.reasons)),
                outcome="denied",
                client_ip=address,
                request_id=b.request_id,
                changes=changes,
                count=b.count,
            )
        )

    def take_events(self, everything: bool = False) -> list[AuditEvent]:
        """Audit rows of the bursts that ended (all of them when `everything`)."""
        now = time.time()
        for address, b in list(self._bursts.items()):
            if everything or now - b.first >= self.window_s:
                self._close(address, b)
        events, self._done = self._done, []
        return events
