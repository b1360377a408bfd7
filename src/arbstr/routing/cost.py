"""Cost: the expected cost used for ranking and the actual cost of a finished request."""

from __future__ import annotations

import math
from collections.abc import Sequence

from arbstr.config import Provider
from arbstr.schemas.usage import Usage

__all__ = [
    "actual_cost",
    "actual_embedding_cost",
    "estimate_tokens",
    "expected_cost",
    "format_sats",
    "provider_reported_cost",
    "savings",
]

DEFAULT_OUTPUT_ESTIMATE = 256


def estimate_tokens(prompt_chars: int, max_tokens: int | None) -> tuple[int, int]:
    """(input, output) estimates: chars/4 rounded up, and `max_tokens` or 256."""
    return math.ceil(
        prompt_chars / 4
    ), DEFAULT_OUTPUT_ESTIMATE if max_tokens is None else max_tokens


def expected_cost(provider: Provider, in_est: int, out_est: int) -> float:
    """What this request is expected to cost at `provider`, in sats."""
    return (
        in_est * provider.input_rate + out_est * provider.output_rate
    ) / 1000 + provider.base_fee


def _split(usage: Usage) -> tuple[int, int, int] | None:
    if usage.prompt_tokens is None or usage.completion_tokens is None:
        return None
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    cached = min(max(cached, 0), usage.prompt_tokens)
    return usage.prompt_tokens - cached, cached, usage.completion_tokens


def actual_cost(provider: Provider, usage: Usage | None) -> float | None:
    """Sats for a finished chat request; None (never 0) when usage is unknown.

    `completion_tokens` already includes reasoning tokens, so they are not added again.
    """
    if usage is None:
        return None
    split = _split(usage)
    if split is None:
        return None
    uncached, cached, out = split
    return (
        uncached * provider.input_rate
        + cached * provider.cached_input_rate
        + out * provider.output_rate
    ) / 1000 + provider.base_fee


def actual_embedding_cost(provider: Provider, usage: Usage | None) -> float | None:
    """Sats for an embeddings request: input tokens and the base fee only."""
    if usage is None or usage.prompt_tokens is None:
        return None
    return usage.prompt_tokens * provider.input_rate / 1000 + provider.base_fee


def provider_reported_cost(usage: Usage | None) -> float | None:
    """The upstream's own figure (`usage.cost`, else `usage.total_cost`), kept separately."""
    if usage is None:
        return None
    return usage.cost if usage.cost is not None else usage.total_cost


def savings(
    paid: float, candidates: Sequence[object], usage: Usage, *, chat: bool = True
) -> float | None:
    """Most expensive eligible candidate's cost for the same usage minus what was paid."""
    costs = []
    for cand in candidates:
        provider: Provider = cand.provider  # type: ignore[attr-defined]
        cost = actual_cost(provider, usage) if chat else actual_embedding_cost(provider, usage)
        if cost is not None:
            costs.append(cost)
    if not costs:
        return None
    return round(max(0.0, max(costs) - paid), 9)


def format_sats(value: float) -> str:
    """Decimal with up to 6 places, trailing zeros trimmed: `8`, `0.125`, `1.000001`."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
