"""OpenAI wire views: the request views routing decodes and the usage view pricing reads."""

from __future__ import annotations

__all__: list[str] = []
