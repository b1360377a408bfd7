"""View Structs of OpenAI `usage` objects, decoded from response bodies and stream chunks."""

from __future__ import annotations

import msgspec

__all__ = ["CompletionDetails", "PromptDetails", "ResponseUsageView", "Usage", "usage_decoder"]


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
# a usage object that fails to decode would otherwise be recorded as unknown.
usage_decoder = msgspec.json.Decoder(ResponseUsageView, strict=False)
