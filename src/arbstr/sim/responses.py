"""Bodies a simulated provider sends: chat JSON, SSE events, embeddings, models, errors."""

from __future__ import annotations

import time
import zlib

import msgspec

from arbstr.sim.profile import SimProfile

__all__ = [
    "FINGERPRINT",
    "RequestView",
    "chat_body",
    "completion_tokens",
    "embeddings_body",
    "error_body",
    "models_body",
    "prompt_tokens",
    "stream_events",
    "usage_body",
]

FINGERPRINT = "arbstr-sim"
_enc = msgspec.json.Encoder()
_DONE = b"data: [DONE]\n\n"
_TOKENS = [b'"tok%d "' % i for i in range(1024)]


class _Part(msgspec.Struct):
    text: str | None = None


class _Message(msgspec.Struct):
    content: str | list[_Part] | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class RequestView(msgspec.Struct):
    """The few request fields the simulator reads (chat and embeddings)."""

    model: str = "sim-model"
    messages: list[_Message] = msgspec.field(default_factory=list)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    input: str | list[str | int | list[int]] | None = None


class _Details(msgspec.Struct):
    cached_tokens: int


class _Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: _Details
    cost: float | None = None


def prompt_tokens(view: RequestView) -> int:
    """`max(1, chars // 4)` over every message's text (string contents and text parts) or input."""
    chars = 0
    for m in view.messages:
        if isinstance(m.content, str):
            chars += len(m.content)
        elif m.content:
            chars += sum(len(p.text) for p in m.content if p.text)
    inp = view.input
    if isinstance(inp, str):
        chars += len(inp)
    elif inp:
        for item in inp:  # token arrays count four characters a token
            chars += (
                len(item)
                if isinstance(item, str)
                else 4 * (len(item) if isinstance(item, list) else 1)
            )
    return max(1, chars // 4)


def completion_tokens(profile: SimProfile, chunks: int | None = None) -> int:
    """The profile's figure; else one a chunk when streaming, else 10."""
    if profile.completion_tokens is not None:
        return profile.completion_tokens
    return 10 if chunks is None else chunks


def usage_body(view: RequestView, profile: SimProfile, completion: int) -> bytes:
    """The `usage` object, encoded."""
    prompt = prompt_tokens(view)
    return _enc.encode(
        _Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=_Details(cached_tokens=min(profile.cached_tokens, prompt)),
            cost=profile.usage_cost,
        )
    )


def _envelope(id_: str, kind: bytes, model: str) -> bytes:
    return b'{"id":"%b","object":"%b","created":%d,"model":%b,"system_fingerprint":"%b"' % (
        id_.encode(),
        kind,
        int(time.time()),
        _enc.encode(model),
        FINGERPRINT.encode(),
    )


def chat_body(view: RequestView, profile: SimProfile, id_: str) -> bytes:
    """A whole `chat.completion` answer."""
    content = _enc.encode(f"Simulated answer from {profile.name} (arbstr-sim).")
    out = (
        _envelope(id_, b"chat.completion", view.model)
        + b',"choices":[{"index":0,"message":{"role":"assistant","content":%b},'
        b'"finish_reason":"stop"}]' % content
    )
    if not profile.omit_usage:
        out += b',"usage":' + usage_body(view, profile, completion_tokens(profile))
    return out + b"}"


def stream_events(view: RequestView, profile: SimProfile, id_: str) -> list[bytes]:
    """Every SSE event of a healthy stream, `data: [DONE]` last; each ends with a blank line."""
    n = profile.chunks
    prefix = b"data: " + _envelope(id_, b"chat.completion.chunk", view.model)
    prefix += b',"choices":[{"index":0,"delta":{'
    events = []
    for i in range(n):
        token = _TOKENS[i] if i < len(_TOKENS) else b'"tok%d "' % i
        role = b'"role":"assistant",' if i == 0 else b""
        finish = b'"stop"' if i == n - 1 else b"null"
        events.append(
            prefix + role + b'"content":' + token + b'},"finish_reason":' + finish + b"}]}\n\n"
        )
    wants_usage = view.stream_options is not None and view.stream_options.include_usage
    if wants_usage and not profile.omit_usage:
        usage = usage_body(view, profile, completion_tokens(profile, n))
        head = _envelope(id_, b"chat.completion.chunk", view.model)
        events.append(b"data: " + head + b',"choices":[],"usage":' + usage + b"}\n\n")
    events.append(_DONE)
    return events


def _vector(text: str) -> list[float]:
    """Eight deterministic floats in [0, 1) derived from the text."""
    h = zlib.crc32(text.encode())
    return [((h >> (4 * k)) & 0xF) / 16 for k in range(8)]


def embeddings_body(view: RequestView) -> bytes:
    """A `list` of one 8-float embedding per input."""
    inp = view.input
    items: list[object] = [inp] if isinstance(inp, str) or inp is None else list(inp)
    if items and isinstance(items[0], int):  # one token array, not a list of inputs
        items = [items]
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(str(item or ""))}
        for i, item in enumerate(items)
    ]
    tokens = prompt_tokens(view)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _enc.encode({"object": "list", "data": data, "model": view.model, "usage": usage})


def models_body(profile: SimProfile) -> bytes:
    """The `GET /models` list, every model owned by `arbstr-sim`."""
    created = int(time.time())
    data = [
        {"id": m, "object": "model", "created": created, "owned_by": FINGERPRINT}
        for m in profile.models
    ]
    return _enc.encode({"object": "list", "data": data})


def error_body(message: str, type_: str, code: str | None) -> bytes:
    """An OpenAI-shaped error envelope."""
    return _enc.encode({"error": {"message": message, "type": type_, "param": None, "code": code}})
