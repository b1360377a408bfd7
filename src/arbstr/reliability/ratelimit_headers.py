"""Parse rate-limit headers: OpenAI/Groq, OpenRouter, Cerebras, and Retry-After."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import msgspec

__all__ = ["Quota", "parse_duration", "parse_quota", "parse_retry_after"]

_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds from `6m23.456s`, `1.5s`, `500ms`, `2h30m0s`, or a plain number of seconds."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date (clamped at 0)."""
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_wall)


class Quota(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The last quota an upstream reported."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    limit_requests: int | None = None
    limit_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    def exhausted_for(self) -> float | None:
        """Seconds until usable again when a remaining count is 0; None if not exhausted."""
        waits = []
        if self.remaining_requests == 0 and self.reset_requests_s is not None:
            waits.append(self.reset_requests_s)
        if self.remaining_tokens == 0 and self.reset_tokens_s is not None:
            waits.append(self.reset_tokens_s)
        return max(waits) if waits else None

    @property
    def exhausted(self) -> bool:
        return self.remaining_requests == 0 or self.remaining_tokens == 0


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None


def parse_quota(
    headers: Mapping[str, str], now_wall: float, dialect: str | None = None
) -> Quota | None:
    """A `Quota` from whichever dialect of rate-limit headers is present, else None; with a
    `dialect` (the provider's preset: openai, cerebras, openrouter) only that one is read, so
    a provider's unrelated headers are never taken for another family's."""
    get = headers.get
    if dialect in (None, "openai") and (
        get("x-ratelimit-remaining-requests") is not None
        or get("x-ratelimit-remaining-tokens") is not None
    ):
        return Quota(
            remaining_requests=_int(get("x-ratelimit-remaining-requests")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
            limit_requests=_int(get("x-ratelimit-limit-requests")),
            limit_tokens=_int(get("x-ratelimit-limit-tokens")),
            reset_requests_s=parse_duration(get("x-ratelimit-reset-requests")),
            reset_tokens_s=parse_duration(get("x-ratelimit-reset-tokens")),
        )
    if dialect in (None, "cerebras") and (
        get("x-ratelimit-remaining-requests-day") is not None
        or get("x-ratelimit-remaining-tokens-minute") is not None
    ):
        return Quota(  # Cerebras: resets in seconds
            remaining_requests=_int(get("x-ratelimit-remaining-requests-day")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens-minute")),
            limit_requests=_int(get("x-ratelimit-limit-requests-day")),
            limit_tokens=_int(get("x-ratelimit-limit-tokens-minute")),
            reset_requests_s=parse_duration(get("x-ratelimit-reset-requests-day")),
            reset_tokens_s=parse_duration(get("x-ratelimit-reset-tokens-minute")),
        )
    if dialect in (None, "openrouter") and get("x-ratelimit-remaining") is not None:
        reset = _int(get("x-ratelimit-reset"))  # OpenRouter: unix milliseconds
        reset_s = max(0.0, reset / 1000 - now_wall) if reset is not None else None
        return Quota(
            remaining_requests=_int(get("x-ratelimit-remaining")),
            limit_requests=_int(get("x-ratelimit-limit")),
            reset_requests_s=reset_s,
        )
    return None
