"""View Structs of OpenAI `usage` objects, decoded from response bodies and stream chunks."""

from __future__ import annotations

import msgspec

__all__ = [
    "MAX_TOKENS",
    "CompletionDetails",
    "PromptDetails",
    "ResponseUsageView",
    "Usage",
    "read_usage",
    "usage_decoder",
    "valid_usage",
]

# A count above this is not a real request (the largest context windows are ~10M tokens).
MAX_TOKENS = 1_000_000_000


class PromptDetails(msgspec.Struct, gc=False):
    """`usage.prompt_tokens_details`: how many prompt tokens were served from a cache."""

    cached_tokens: int | None = None


class CompletionDetails(msgspec.Struct, gc=False):
    """`usage.completion_tokens_details`: reasoning tokens (already inside completion_tokens)."""

    reasoning_tokens: int | None = None


class Usage(msgspec.Struct, gc=False):
    """OpenAI usage; `cost`/`total_cost` are what some upstreams (OpenRouter) report."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    cost: float | None = None
    total_cost: float | None = None


class ResponseUsageView(msgspec.Struct, gc=False):
    """A response body viewed only for its usage (choices are skipped by the decoder)."""

    usage: Usage | None = None


# Lax (`strict=False`): upstreams that send `12.0` or `"12"` for a count still get priced;
# a usage object that fails to decode would otherwise be recorded as unknown. Every path that
# reads usage (JSON answers here, stream chunks in `upstream/sse.py`) decodes it laxly.
usage_decoder = msgspec.json.Decoder(ResponseUsageView, strict=False)


def _bad(value: int | None) -> bool:
    return value is not None and not 0 <= value <= MAX_TOKENS


def valid_usage(usage: Usage | None) -> Usage | None:
    """`usage` when its counts are plausible, else None (unknown usage, never a wrong cost)."""
    if usage is None:
        return None
    if _bad(usage.prompt_tokens) or _bad(usage.completion_tokens) or _bad(usage.total_tokens):
        return None
    details = usage.prompt_tokens_details
    if details is not None and _bad(details.cached_tokens):
        return None
    out_details = usage.completion_tokens_details
    if out_details is not None and _bad(out_details.reasoning_tokens):
        return None
    return usage


def read_usage(body: bytes) -> Usage | None:
    """The plausible `usage` of a whole JSON answer, or None when absent or undecodable."""
    try:
        return valid_usage(usage_decoder.decode(body).usage)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # RecursionError: an upstream body nested past the decoder's depth
