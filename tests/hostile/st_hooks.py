"""Schemathesis hooks (`SCHEMATHESIS_HOOKS=tests.hostile.st_hooks`): our own check."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def openai_error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every JSON error body is the OpenAI envelope: {"error": {"message", "type", "code"}}."""
    if response.status_code < 400:
        return None
    if not response.headers.get("content-type", [""])[0].startswith("application/json"):
        return None
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not {"message", "type", "code"} <= set(error):
        raise AssertionError(f"not an OpenAI-shaped error: {str(body)[:200]}")
    return None
