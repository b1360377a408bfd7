"""Ranking strategies: cheapest expected cost, config order, lowest observed latency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from arbstr.routing.cost import expected_cost
from arbstr.routing.resolve import Candidate

__all__ = ["Ewma", "Strategy", "rank"]

Strategy = Literal["cheapest", "ordered", "lowest_latency"]


class Ewma:
    """Exponentially weighted moving average (alpha 0.2) of observed latency in ms."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def update(self, sample: float) -> float:
        self.value = (
            sample if self.value is None else self.alpha * sample + (1 - self.alpha) * self.value
        )
        return self.value


def rank(
    candidates: Sequence[Candidate],
    strategy: Strategy,
    in_est: int,
    out_est: int,
    latency: Mapping[str, float] | None = None,
) -> tuple[Candidate, ...]:
    """Order candidates; `sorted` is stable, so ties keep config order."""
    if strategy == "ordered" or len(candidates) < 2:
        return tuple(candidates)
    if strategy == "lowest_latency":
        known = latency or {}
        return tuple(
            sorted(
                candidates,
                key=lambda c: (c.provider.name not in known, known.get(c.provider.name, 0.0)),
            )
        )
    return tuple(sorted(candidates, key=lambda c: expected_cost(c.provider, in_est, out_est)))
