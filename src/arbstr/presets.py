"""Provider presets (`type = ...`): the default URL, the rate-limit header dialect, the extra
headers and the request quirks of each provider family (DESIGN §12). Pure data."""

from __future__ import annotations

import difflib

import msgspec

__all__ = ["PRESETS", "Preset", "preset_for"]


class Preset(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    url: str | None  # None: the config must give one
    dialect: str | None = None  # which x-ratelimit-* family it sends (None: any it sends)
    quirks: tuple[str, ...] = ()  # names in upstream/quirks.py, applied in this order
    headers: tuple[tuple[str, str], ...] = ()  # sent on every request (after the config's)
    reads_usage_cost: bool = False  # its `usage.cost` is the provider's own price


PRESETS: dict[str, Preset] = {
    p.type: p
    for p in (
        Preset(type="generic", url=None),
        Preset(type="openai", url="https://api.openai.com/v1", dialect="openai"),
        Preset(
            type="openrouter",
            url="https://openrouter.ai/api/v1",
            dialect="openrouter",
            headers=(("http-referer", "https://github.com/arbstr/arbstr"), ("x-title", "arbstr")),
            reads_usage_cost=True,
        ),
        Preset(type="groq", url="https://api.groq.com/openai/v1", dialect="openai"),
        Preset(
            type="cerebras",
            url="https://api.cerebras.ai/v1",
            dialect="cerebras",
            quirks=("drop_penalties",),
        ),
        Preset(
            type="google",
            url="https://generativelanguage.googleapis.com/v1beta/openai",
            quirks=("google_non_gemini", "merge_system"),
        ),
        Preset(type="deepseek", url="https://api.deepseek.com/v1"),
        Preset(type="together", url="https://api.together.xyz/v1", dialect="openai"),
        Preset(type="mistral", url="https://api.mistral.ai/v1"),
    )
}


def preset_for(type_: str) -> Preset:
    """The preset of `type_`; `KeyError` whose message names the nearest known type."""
    found = PRESETS.get(type_)
    if found is not None:
        return found
    near = difflib.get_close_matches(type_, list(PRESETS), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise KeyError(f"unknown provider type '{type_}'{hint}; one of: {', '.join(PRESETS)}")
