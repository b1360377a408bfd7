"""Circuit breaker per provider: closed -> open -> half_open (one probe) -> closed or open."""

from __future__ import annotations

import enum
from collections.abc import Callable

import msgspec

from arbstr.config import ReliabilityConfig

__all__ = ["Admission", "BreakerRegistry", "BreakerState", "CircuitBreaker", "State"]

Clock = Callable[[], float]


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission(enum.Enum):
    ALLOWED = "allowed"
    PROBE = "probe"
    REJECTED = "rejected"


class BreakerState(msgspec.Struct, frozen=True):
    """A snapshot for /health and for sharing between replicas."""

    state: str
    failure_count: int
    trip_count: int
    open_until: float | None  # monotonic seconds of this process


class CircuitBreaker:
    """Counts consecutive failures; only 5xx, timeouts, connect and mid-stream errors count."""

    __slots__ = (
        "_clock",
        "_probing",
        "failure_count",
        "open_s",
        "open_until",
        "state",
        "threshold",
        "trip_count",
    )

    def __init__(self, threshold: int, open_s: float, clock: Clock) -> None:
        self.threshold, self.open_s, self._clock = threshold, open_s, clock
        self.state = State.CLOSED
        self.failure_count = 0
        self.trip_count = 0
        self.open_until: float | None = None
        self._probing = False

    def current(self) -> State:
        """The state now; an open circuit whose time is up becomes half-open lazily."""
        if (
            self.state is State.OPEN
            and self.open_until is not None
            and self._clock() >= self.open_until
        ):
            self.state = State.HALF_OPEN
            self._probing = False
        return self.state

    def try_acquire(self) -> Admission:
        state = self.current()
        if state is State.CLOSED:
            return Admission.ALLOWED
        if state is State.HALF_OPEN and not self._probing:
            self._probing = True
            return Admission.PROBE
        return Admission.REJECTED

    def record_success(self) -> None:
        self.state = State.CLOSED
        self.failure_count = 0
        self.open_until = None
        self._probing = False

    def record_failure(self) -> None:
        self.failure_count += 1
        if self.state is State.HALF_OPEN or self.failure_count >= self.threshold:
            self._trip()

    def release_probe(self) -> None:
        """A probe abandoned without a result counts as a failure."""
        if self._probing:
            self.record_failure()

    def _trip(self) -> None:
        if self.state is not State.OPEN:
            self.trip_count += 1
        self.state = State.OPEN
        self.open_until = self._clock() + self.open_s
        self._probing = False

    def snapshot(self) -> BreakerState:
        state = self.current()
        return BreakerState(state.value, self.failure_count, self.trip_count, self.open_until)

    def apply_remote(self, state: str, open_until: float | None, failure_count: int) -> None:
        """Adopt another replica's view (open circuits win; a closed remote never re-closes us)."""
        if state == State.OPEN.value and open_until is not None:
            if self.state is not State.OPEN or (self.open_until or 0) < open_until:
                self.state = State.OPEN
                self.open_until = open_until
                self._probing = False
            self.failure_count = max(self.failure_count, failure_count)


class BreakerRegistry:
    """One breaker per provider name, created on first use."""

    def __init__(self, config: ReliabilityConfig, clock: Clock) -> None:
        self.config, self.clock = config, clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(
                self.config.circuit_failure_threshold, self.config.circuit_open_s, self.clock
            )
        return breaker

    def snapshot(self) -> dict[str, BreakerState]:
        return {name: b.snapshot() for name, b in self._breakers.items()}

    def apply_remote(
        self, name: str, state: str, open_until: float | None, failure_count: int
    ) -> None:
        self.get(name).apply_remote(state, open_until, failure_count)
