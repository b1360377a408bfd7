"""Bodies a simulated provider sends: chat JSON, SSE chunks, embeddings, models, errors."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from arbstr.sim.profile import SimProfile

__all__ = [
    "RequestView",
    "chat_body",
    "embeddings_body",
    "error_body",
    "models_body",
    "prompt_tokens",
    "stream_events",
    "usage",
]

_enc = msgspec.json.Encoder()
FINGERPRINT = "arbstr-sim"


class _Part(msgspec.Struct):
    text: str | None = None


class _Message(msgspec.Struct):
    content: str | list[_Part] | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class RequestView(msgspec.Struct):
    """What the simulator reads of a request."""

    model: str = "sim-model"
    messages: list[_Message] = msgspec.field(default_factory=list)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    input: str | list[Any] | None = None


def prompt_tokens(view: RequestView) -> int:
    chars = 0
    for m in view.messages:
        if isinstance(m.content, str):
            chars += len(m.content)
        elif m.content:
            chars += sum(len(p.text) for p in m.content if p.text)
    if isinstance(view.input, str):
        chars += len(view.input)
    elif isinstance(view.input, list):
        chars += sum(len(x) for x in view.input if isinstance(x, str))
    return max(1, chars // 4)


def usage(view: RequestView, profile: SimProfile, completion: int) -> dict[str, Any]:
    prompt = prompt_tokens(view)
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": min(profile.cached_tokens, prompt)},
    }
    if profile.usage_cost is not None:
        out["cost"] = profile.usage_cost
    return out


def chat_body(view: RequestView, profile: SimProfile, seq: int) -> bytes:
    completion = profile.completion_tokens if profile.completion_tokens is not None else 10
    body: dict[str, Any] = {
        "id": f"chatcmpl-sim-{seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": view.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": f"Simulated answer from {profile.name}.",
                },
                "finish_reason": "stop",
            }
        ],
    }
    if not profile.omit_usage:
        body["usage"] = usage(view, profile, completion)
    return _enc.encode(body)


def stream_events(view: RequestView, profile: SimProfile, seq: int) -> list[bytes]:
    """Every SSE event of a stream, `data: [DONE]` last; one token per chunk by default."""
    created = int(time.time())
    n = max(1, profile.chunks)
    events: list[bytes] = []
    for i in range(n):
        delta: dict[str, Any] = {"content": f"tok{i} "}
        if i == 0:
            delta["role"] = "assistant"
        chunk = {
            "id": f"chatcmpl-sim-{seq}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": view.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": "stop" if i == n - 1 else None}
            ],
        }
        events.append(b"data: " + _enc.encode(chunk) + b"\n\n")
    wants_usage = view.stream_options is not None and view.stream_options.include_usage
    if wants_usage and not profile.omit_usage:
        completion = profile.completion_tokens if profile.completion_tokens is not None else n
        final = {
            "id": f"chatcmpl-sim-{seq}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": view.model,
            "choices": [],
            "usage": usage(view, profile, completion),
        }
        events.append(b"data: " + _enc.encode(final) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def embeddings_body(view: RequestView) -> bytes:
    inputs = view.input if isinstance(view.input, list) else [view.input or ""]
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": [round(0.125 * (k + 1) * (i + 1), 3) for k in range(8)],
        }
        for i in range(len(inputs))
    ]
    tokens = prompt_tokens(view)
    return _enc.encode(
        {
            "object": "list",
            "data": data,
            "model": view.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def models_body(profile: SimProfile) -> bytes:
    created = int(time.time())
    return _enc.encode(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": FINGERPRINT}
                for m in profile.models
            ],
        }
    )


def error_body(message: str, type_: str, code: str) -> bytes:
    return _enc.encode({"error": {"message": message, "type": type_, "param": None, "code": code}})
