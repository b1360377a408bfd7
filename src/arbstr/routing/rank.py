"""Ranking strategies: cheapest expected cost, config order, lowest observed latency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from arbstr.config import Strategy
from arbstr.routing.cost import expected_cost
from arbstr.routing.resolve import Candidate

__all__ = ["STRATEGIES", "Ewma", "Strategy", "rank"]

STRATEGIES: tuple[Strategy, ...] = ("cheapest", "ordered", "lowest_latency")


class Ewma:
    """Exponentially weighted moving average (alpha 0.2) of observed latency in ms."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.value: float | None = None

    def update(self, sample: float) -> float:
        """Fold one observation in (the first one is taken as is); returns the new average."""
        self.value = (
            sample if self.value is None else self.alpha * sample + (1 - self.alpha) * self.value
        )
        return self.value


def rank(
    candidates: Sequence[Candidate],
    strategy: Strategy,
    in_est: int,
    out_est: int,
    latency_ewma: Mapping[str, float] | None = None,
) -> tuple[Candidate, ...]:
    """Order candidates for one request; every sort is stable, so ties keep config order.

    `cheapest`: by `expected_cost(provider, in_est, out_est)`. `ordered`: as given.
    `lowest_latency`: by `latency_ewma[provider name]` in ms, providers without one last.
    """
    if strategy == "ordered" or len(candidates) < 2:
        return tuple(candidates)
    if strategy == "lowest_latency":
        known = latency_ewma or {}
        return tuple(
            sorted(
                candidates,
                key=lambda c: (c.provider.name not in known, known.get(c.provider.name, 0.0)),
            )
        )
    if strategy == "cheapest":
        return tuple(sorted(candidates, key=lambda c: expected_cost(c.provider, in_est, out_est)))
    raise ValueError(f"unknown strategy {strategy!r}")
