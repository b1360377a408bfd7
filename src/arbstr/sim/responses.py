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


class _Function(msgspec.Struct):
    name: str = "tool"


class _Tool(msgspec.Struct):
    function: _Function = msgspec.field(default_factory=_Function)


class _ResponseFormat(msgspec.Struct):
    type: str = "text"


class RequestView(msgspec.Struct):
    """The few request fields the simulator reads (chat and embeddings)."""

    model: str = "sim-model"
    messages: list[_Message] = msgspec.field(default_factory=list)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    input: str | list[str | int | list[int]] | None = None
    n: int = 1
    tools: list[_Tool] | None = None
    response_format: _ResponseFormat | None = None

    @property
    def choices(self) -> int:
        """How many choices to answer with (`n`, kept between 1 and 8)."""
        return min(8, max(1, self.n))

    @property
    def tool_name(self) -> str | None:
        """The first tool's name: the simulator always calls it when tools are offered."""
        return self.tools[0].function.name if self.tools else None

    @property
    def wants_json(self) -> bool:
        return self.response_format is not None and self.response_format.type != "text"


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


TOOL_ARGUMENTS = '{"query": "arbstr-sim", "limit": 3}'


def _text_answer(view: RequestView, profile: SimProfile, index: int) -> str:
    text = f"Simulated answer {index} from {profile.name} (arbstr-sim)."
    if view.wants_json:
        return _enc.encode({"answer": text, "index": index}).decode()
    return text


def _tool_call_id(id_: str, index: int) -> str:
    return f"call_{id_[-12:]}_{index}"


def _message(view: RequestView, profile: SimProfile, id_: str, index: int) -> bytes:
    tool = view.tool_name
    if tool is None:
        content = _enc.encode(_text_answer(view, profile, index))
        message = b'{"role":"assistant","content":%b}' % content
        return b'{"index":%d,"message":%b,"finish_reason":"stop"}' % (index, message)
    call = {
        "id": _tool_call_id(id_, index),
        "type": "function",
        "function": {"name": tool, "arguments": TOOL_ARGUMENTS},
    }
    body = _enc.encode({"role": "assistant", "content": None, "tool_calls": [call]})
    return b'{"index":%d,"message":%b,"finish_reason":"tool_calls"}' % (index, body)


def chat_body(view: RequestView, profile: SimProfile, id_: str) -> bytes:
    """A whole `chat.completion` answer: `n` choices, a tool call when tools are offered."""
    choices = b",".join(_message(view, profile, id_, i) for i in range(view.choices))
    out = _envelope(id_, b"chat.completion", view.model) + b',"choices":[' + choices + b"]"
    if not profile.omit_usage:
        completion = completion_tokens(profile) * view.choices
        out += b',"usage":' + usage_body(view, profile, completion)
    return out + b"}"


def _tool_deltas(view: RequestView, id_: str, index: int, n: int) -> list[bytes]:
    """A tool call as OpenAI streams it: id and name first, then argument fragments."""
    assert view.tool_name is not None
    step = max(1, -(-len(TOOL_ARGUMENTS) // max(1, n - 1)))
    parts = [TOOL_ARGUMENTS[i : i + step] for i in range(0, len(TOOL_ARGUMENTS), step)]
    head = {
        "index": 0,
        "id": _tool_call_id(id_, index),
        "type": "function",
        "function": {"name": view.tool_name, "arguments": ""},
    }
    deltas = [_enc.encode({"role": "assistant", "content": None, "tool_calls": [head]})]
    for part in parts:
        deltas.append(_enc.encode({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
    return deltas


def _special_events(view: RequestView, profile: SimProfile, id_: str) -> list[bytes]:
    """Events of a stream with `n > 1` choices, tool calls or JSON content (not the hot path)."""
    head = b"data: " + _envelope(id_, b"chat.completion.chunk", view.model) + b',"choices":['
    events = []
    for index in range(view.choices):
        if view.tool_name is not None:
            deltas = _tool_deltas(view, id_, index, profile.chunks)
            finish = b'"tool_calls"'
        else:
            text = _text_answer(view, profile, index)
            step = max(1, -(-len(text) // profile.chunks))
            pieces = [text[i : i + step] for i in range(0, len(text), step)]
            deltas = [_enc.encode({"role": "assistant", "content": pieces[0]})]
            deltas += [_enc.encode({"content": piece}) for piece in pieces[1:]]
            finish = b'"stop"'
        for k, delta in enumerate(deltas):
            end = finish if k == len(deltas) - 1 else b"null"
            events.append(
                head + b'{"index":%d,"delta":%b,"finish_reason":%b}]}\n\n' % (index, delta, end)
            )
    return events


def stream_events(view: RequestView, profile: SimProfile, id_: str) -> list[bytes]:
    """Every SSE event of a healthy stream, `data: [DONE]` last; each ends with a blank line."""
    n = profile.chunks
    if view.choices > 1 or view.tool_name is not None or view.wants_json:
        events = _special_events(view, profile, id_)
        n = max(n, len(events) // view.choices)
    else:
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
        usage = usage_body(view, profile, completion_tokens(profile, n) * view.choices)
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
