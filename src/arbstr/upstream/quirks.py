"""Request quirks of provider families: each rewrites only what it must in the top level of a
body (`dict[str, msgspec.Raw]`: values stay the client's bytes) and says whether it did."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

__all__ = ["QUIRKS", "Quirk", "apply_quirks"]

Top = dict[str, msgspec.Raw]
Quirk = Callable[[Top, str], bool]

_encoder = msgspec.json.Encoder()


def drop_penalties(top: Top, model: str) -> bool:
    """Cerebras refuses `presence_penalty` and `frequency_penalty`."""
    dropped = [top.pop(k) for k in ("presence_penalty", "frequency_penalty") if k in top]
    return bool(dropped)


def google_non_gemini(top: Top, model: str) -> bool:
    """Google's OpenAI endpoint takes no `response_format` or tools for non-Gemini models."""
    if model.split("/")[-1].startswith("gemini"):
        return False
    dropped = [top.pop(k) for k in ("response_format", "tools", "tool_choice") if k in top]
    return bool(dropped)


def merge_system(top: Top, model: str) -> bool:
    """Google's endpoint takes one system message, first: every system message's text is
    merged into one, in order, at the start; other messages keep their order and bytes."""
    raw = top.get("messages")
    if raw is None:
        return False
    messages = msgspec.json.decode(raw, type=list[dict[str, msgspec.Raw]])
    systems = [i for i, m in enumerate(messages) if _role(m) == "system"]
    if systems in ([], [0]):  # none, or one already first
        return False
    texts = [_text(messages[i]) for i in systems]
    content = msgspec.Raw(_encoder.encode("\n\n".join(texts)))
    merged = {"role": msgspec.Raw(b'"system"'), "content": content}
    skip = set(systems)
    rest = [m for i, m in enumerate(messages) if i not in skip]
    top["messages"] = msgspec.Raw(_encoder.encode([merged, *rest]))
    return True


def _role(message: dict[str, msgspec.Raw]) -> str | None:
    raw = message.get("role")
    return msgspec.json.decode(raw) if raw is not None else None


def _text(message: dict[str, msgspec.Raw]) -> str:
    raw = message.get("content")
    content = msgspec.json.decode(raw) if raw is not None else ""
    if isinstance(content, list):  # content parts: the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


QUIRKS: dict[str, Quirk] = {
    "drop_penalties": drop_penalties,
    "google_non_gemini": google_non_gemini,
    "merge_system": merge_system,
}


def apply_quirks(top: Top, model: str, names: tuple[str, ...]) -> bool:
    """Apply the named quirks in order; whether any changed the body."""
    changed = False
    for name in names:
        changed = QUIRKS[name](top, model) or changed
    return changed
