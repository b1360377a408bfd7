"""The retry decision table of DESIGN §4, backoff, the retries header and exhaustion errors."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from arbstr.config import ReliabilityConfig
from arbstr.errors import AllCircuitsOpen, AllProvidersFailed, AllRateLimited, ArbstrError
from arbstr.recording.record import AttemptRow
from arbstr.reliability.cooldown import CooldownTracker
from arbstr.reliability.ratelimit_headers import parse_duration, parse_retry_after

__all__ = [
    "Outcome",
    "RetryHeader",
    "backoff",
    "classify",
    "cooldown_for",
    "counts_against_circuit",
    "exhaustion_error",
]


class Outcome(enum.Enum):
    SUCCESS = "success"
    RETRY_SAME = "retry_same"  # connect error, timeout, 500 502 503 504
    NEXT_COOLDOWN = "next_cooldown"  # 429, 402
    NEXT_KEY_PROBLEM = "next_key_problem"  # 401, 403
    RETURN_TO_CLIENT = "return_to_client"  # other 4xx: the client's problem
    NEXT = "next"  # 501 and other 5xx, read errors after headers


_RETRYABLE = frozenset({500, 502, 503, 504})


def classify(status: int | None, error_kind: str | None) -> Outcome:
    if status is None:
        return Outcome.RETRY_SAME if error_kind in ("connect", "timeout") else Outcome.NEXT
    if status < 400:
        return Outcome.SUCCESS
    if status in _RETRYABLE:
        return Outcome.RETRY_SAME
    if status in (429, 402):
        return Outcome.NEXT_COOLDOWN
    if status in (401, 403):
        return Outcome.NEXT_KEY_PROBLEM
    if status < 500:
        return Outcome.RETURN_TO_CLIENT
    return Outcome.NEXT


def counts_against_circuit(action: Outcome, status: int | None) -> bool:
    """5xx, timeouts, connect and read errors count; 4xx (429 and key problems too) never."""
    return action in (Outcome.RETRY_SAME, Outcome.NEXT)


def backoff(
    attempt: int, config: ReliabilityConfig, retry_after_s: float | None, remaining_s: float
) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based); None when past the deadline."""
    steps = config.backoff_s or [0.0]
    wait = steps[min(attempt, len(steps) - 1)]
    if retry_after_s is not None and 0 <= retry_after_s < remaining_s:
        wait = retry_after_s
    if wait >= remaining_s:
        return None
    return wait


def cooldown_for(
    status: int, headers: Mapping[str, str], config: ReliabilityConfig, now_wall: float
) -> tuple[float, str]:
    """How long to cool a provider down after a 429 or 402, and why."""
    if status == 402:
        return config.cooldown_402_s, "402 payment required"
    retry_after = parse_retry_after(headers.get("retry-after"), now_wall)
    if retry_after is not None:
        return retry_after, "429 retry-after"
    resets = [
        parse_duration(headers.get(h))
        for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
    ]
    known = [r for r in resets if r is not None]
    if known:
        return max(known), "429 x-ratelimit-reset"
    reset_ms = headers.get("x-ratelimit-reset")
    if reset_ms is not None:
        try:
            return max(0.0, float(reset_ms) / 1000 - now_wall), "429 x-ratelimit-reset"
        except ValueError:
            pass
    return config.cooldown_default_s, "429 (default cooldown)"


class RetryHeader:
    """Failed attempts per provider in first-seen order: `3/alpha, 1/beta`."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, provider: str) -> None:
        self._counts[provider] = self._counts.get(provider, 0) + 1

    def header(self) -> str | None:
        if not self._counts:
            return None
        return ", ".join(f"{n}/{name}" for name, n in self._counts.items())


def _describe(row: AttemptRow) -> str:
    if row.skipped:
        return f"{row.provider}: skipped ({row.skipped})"
    return f"{row.provider}: {row.error or row.status}"


def exhaustion_error(
    rows: Sequence[AttemptRow],
    cooldowns: CooldownTracker,
    now_wall: float,
    circuit_wait: float | None = None,
) -> ArbstrError:
    """429 when every candidate was rate-limited, 503 when every circuit was open, else 502."""
    listing = ", ".join(_describe(r) for r in rows) or "no candidates"
    by_provider: dict[str, list[AttemptRow]] = {}
    for row in rows:
        by_provider.setdefault(row.provider, []).append(row)

    def limited(rs: list[AttemptRow]) -> bool:
        return all(r.skipped == "cooldown" or r.status in (429, 402) for r in rs)

    if rows and all(limited(rs) for rs in by_provider.values()):
        keys = [(r.provider, r.upstream_model) for r in rows] + [(p, None) for p in by_provider]
        wait = cooldowns.earliest_end(keys)
        return AllRateLimited(
            f"every provider is rate-limited or cooling down: {listing}",
            retry_after=wait if wait is not None else 1.0,
        )
    if rows and all(r.skipped == "circuit_open" for r in rows):
        return AllCircuitsOpen(
            f"every provider's circuit is open: {listing}",
            retry_after=circuit_wait if circuit_wait is not None else 1.0,
        )
    return AllProvidersFailed(f"all providers failed: {listing}")
