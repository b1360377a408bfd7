"""Cost: the expected cost used for ranking and the actual cost of a finished request."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from arbstr.config import Provider
from arbstr.routing.resolve import Candidate
from arbstr.schemas.usage import Usage

__all__ = [
    "DEFAULT_OUTPUT_ESTIMATE",
    "SATS_PLACES",
    "TokenCounts",
    "actual_cost",
    "actual_embedding_cost",
    "estimate_tokens",
    "expected_cost",
    "format_sats",
    "price",
    "provider_reported_cost",
    "savings",
]

DEFAULT_OUTPUT_ESTIMATE = 256


def estimate_tokens(prompt_chars: int, max_tokens: int | None) -> tuple[int, int]:
    """`(in_est, out_est)`: chars/4 rounded up, and `max_tokens` or 256 when absent.

    `max_tokens=0` stays 0 (embeddings plan with it: they rank on input tokens only);
    negative values count as 0.
    """
    in_est = (max(prompt_chars, 0) + 3) // 4
    out_est = DEFAULT_OUTPUT_ESTIMATE if max_tokens is None else max(max_tokens, 0)
    return in_est, out_est


def price(provider: Provider, uncached_in: int, cached_in: int, out: int) -> float:
    """`(uncached_in*input_rate + cached_in*cached_input_rate + out*output_rate)/1000 + fee`."""
    return (
        uncached_in * provider.input_rate
        + cached_in * provider.cached_input_rate
        + out * provider.output_rate
    ) / 1000 + provider.base_fee


def expected_cost(provider: Provider, in_est: int, out_est: int) -> float:
    """What this request is expected to cost at `provider`, in sats (no cache assumed)."""
    return (
        in_est * provider.input_rate + out_est * provider.output_rate
    ) / 1000 + provider.base_fee


def _count(value: int | None) -> int | None:
    return value if value is not None and value >= 0 else None  # negative = garbage = unknown


class TokenCounts(msgspec.Struct, frozen=True, gc=False):
    """Token counts of a finished request; None means the upstream did not say (never 0).

    `output` is `completion_tokens`, which already includes `reasoning`; `cached` is part of
    `input` (`prompt_tokens_details.cached_tokens`).
    """

    input: int | None = None
    cached: int | None = None
    output: int | None = None
    reasoning: int | None = None

    @classmethod
    def from_usage(cls, usage: Usage | None) -> TokenCounts:
        """Read the counts out of an OpenAI usage object."""
        if usage is None:
            return cls()
        prompt = usage.prompt_tokens_details
        completion = usage.completion_tokens_details
        return cls(
            input=_count(usage.prompt_tokens),
            cached=_count(prompt.cached_tokens) if prompt is not None else None,
            output=_count(usage.completion_tokens),
            reasoning=_count(completion.reasoning_tokens) if completion is not None else None,
        )

    def split_input(self) -> tuple[int, int] | None:
        """`(uncached, cached)` input tokens; absent cached counts as 0, capped at input."""
        if self.input is None:
            return None
        cached = min(self.cached or 0, self.input)
        return self.input - cached, cached


def actual_cost(provider: Provider, usage: Usage | None) -> float | None:
    """Sats for a finished chat request; None (never 0) when usage is unknown.

    `completion_tokens` already includes reasoning tokens, so they are not added again.
    """
    counts = TokenCounts.from_usage(usage)
    split = counts.split_input()
    if split is None or counts.output is None:
        return None
    return round(price(provider, split[0], split[1], counts.output), SATS_PLACES)


def actual_embedding_cost(provider: Provider, usage: Usage | None) -> float | None:
    """Sats for an embeddings request: input tokens at `input_rate` plus the base fee."""
    counts = TokenCounts.from_usage(usage)
    if counts.input is None:
        return None
    return round(counts.input * provider.input_rate / 1000 + provider.base_fee, SATS_PLACES)


def provider_reported_cost(usage: Usage | None) -> float | None:
    """The upstream's own figure (`usage.cost`, else `usage.total_cost`), kept separately."""
    if usage is None:
        return None
    reported = usage.cost if usage.cost is not None else usage.total_cost
    return None if reported is None else round(reported, SATS_PLACES)


def savings(
    paid: float, candidates: Sequence[Candidate], usage: Usage | None, *, chat: bool = True
) -> float | None:
    """What routing saved on this request, in sats; None when usage is unknown.

    `savings = max(0, max(cost_c(usage) for c in candidates) - paid)`: `cost_c` is the actual
    cost formula (`actual_cost`, or `actual_embedding_cost` when `chat` is false) at candidate
    `c`'s rates for the *same* usage, over the plan's eligible candidates (after the policy
    filter, the chosen one included). Rounded to 6 places like every sats figure.
    """
    cost_at = actual_cost if chat else actual_embedding_cost
    dearest: float | None = None
    for cand in candidates:
        cost = cost_at(cand.provider, usage)
        if cost is not None and (dearest is None or cost > dearest):
            dearest = cost
    if dearest is None:
        return None
    return round(max(0.0, dearest - paid), SATS_PLACES)


# Every sats figure (headers, JSON, records) has at most this many decimal places: sub-sat
# precision without float noise such as 1.3900000000000001.
SATS_PLACES = 6


def format_sats(value: float) -> str:
    """Decimal with up to 6 places, trailing zeros trimmed: `8`, `0.125`, `1.000001`."""
    text = f"{value:.6f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
