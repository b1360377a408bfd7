"""SSE splitter and observer: re-frame on event boundaries, pass raw bytes, read usage."""

from __future__ import annotations

import enum

import msgspec

from arbstr.schemas.usage import Usage, valid_usage

__all__ = ["Action", "SseEvent", "SseSplitter", "StreamObserver"]

DEFAULT_MAX_LINE = 1 << 20


class SseEvent:
    """One event's raw bytes (forwarded untouched) and its parsed fields."""

    __slots__ = ("complete", "data", "event", "id", "raw")

    def __init__(
        self,
        raw: bytes,
        data: bytes | None = None,
        event: str | None = None,
        id: str | None = None,
        complete: bool = True,
    ) -> None:
        self.raw, self.data, self.event, self.id, self.complete = raw, data, event, id, complete

    @property
    def is_done(self) -> bool:
        return self.data == b"[DONE]"

    def __repr__(self) -> str:
        return f"SseEvent(data={self.data!r}, event={self.event!r}, complete={self.complete})"


def _parse(block: bytes) -> SseEvent:
    """Parse one complete event (its lines, terminator included in `block`)."""
    if block.startswith(b"data: ") and block.count(b"\n") <= 2 and b"\r" not in block:
        # the common case: a single `data: ...\n\n` line
        return SseEvent(block, block[6:].rstrip(b"\n"))
    data: list[bytes] = []
    event = ident = None
    for line in block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id":
            ident = value.decode("utf-8", "replace")
    return SseEvent(block, b"\n".join(data) if data else None, event, ident)


class SseSplitter:
    """Feed network chunks, get complete events; the concatenated `raw` always equals the input."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._skipping = False  # inside an oversized event: pass bytes through unparsed

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buf = self._buf + chunk if self._buf else chunk
        events: list[SseEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            end = self._boundary(buf, start)
            if end < 0:
                break
            if self._skipping:
                events.append(SseEvent(buf[start:end], complete=False))
                self._skipping = False
            else:
                events.append(_parse(buf[start:end]))
            start = end
        rest = buf[start:]
        if self._skipping and rest:
            events.append(SseEvent(rest, complete=False))
            rest = b""
        elif len(rest) > self.max_line_bytes and self._longest_line(rest) > self.max_line_bytes:
            events.append(SseEvent(rest, complete=False))
            self._skipping = True
            rest = b""
        self._buf = rest
        return events

    def flush(self) -> list[SseEvent]:
        """End of stream: complete events still buffered (a trailing CR ends a line now), then
        whatever is left, passed through as an incomplete event."""
        rest, self._buf = self._buf, b""
        events: list[SseEvent] = []
        start = 0
        while not self._skipping and start < len(rest):
            end = self._boundary(rest, start, final=True)
            if end < 0:
                break
            events.append(_parse(rest[start:end]))
            start = end
        self._skipping = False
        if start < len(rest):
            events.append(SseEvent(rest[start:], complete=False))
        return events

    @staticmethod
    def _longest_line(buf: bytes) -> int:
        last = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        return len(buf) - last - 1

    @staticmethod
    def _boundary(buf: bytes, start: int, final: bool = False) -> int:
        """Index just past the first blank line at or after `start`, or -1 (need more bytes)."""
        first = buf[start : start + 1]
        if first not in (b"\n", b"\r"):
            i = buf.find(b"\n\n", start)
            if i >= 0 and b"\r" not in buf[start : i + 2]:
                return i + 2  # fast path: LF-only framing
        n = len(buf)
        pos = start
        while True:
            lf = buf.find(b"\n", pos)
            cr = buf.find(b"\r", pos)
            if lf < 0 and cr < 0:
                return -1
            if cr >= 0 and (lf < 0 or cr < lf):
                if cr + 1 >= n and not final:
                    return -1  # a CR at the end: wait to see whether an LF follows
                eol, end = cr, cr + 2 if cr + 1 < n and buf[cr + 1] == 0x0A else cr + 1
            else:
                eol, end = lf, lf + 1
            if eol == pos:
                return end  # an empty line ends the event
            pos = end


class Action(enum.Enum):
    FORWARD = "forward"
    DROP = "drop"
    DONE = "done"


class _Error(msgspec.Struct):
    message: str | None = None
    code: str | int | None = None


class _ChunkView(msgspec.Struct):
    choices: list[msgspec.Raw] | None = None
    usage: Usage | None = None
    error: _Error | str | None = None


# lax like every usage decoder: `12.0` tokens must not end a healthy stream
_chunk = msgspec.json.Decoder(_ChunkView, strict=False)


class StreamObserver:
    """Watches events for usage, `[DONE]`, upstream errors and unparseable data.

    Data that is not `[DONE]` must look like a JSON object (`{...}`); it is only decoded when it
    could hold usage or an error (a cheap substring test first). Anything else is garbage for an
    OpenAI chat stream: it is dropped and the gateway ends the stream with an error event.
    """

    __slots__ = ("done_seen", "events", "forward_usage_chunk", "garbage", "upstream_error", "usage")

    def __init__(self, forward_usage_chunk: bool = True) -> None:
        self.forward_usage_chunk = forward_usage_chunk
        self.usage: Usage | None = None
        self.done_seen = False
        self.upstream_error: str | None = None
        self.garbage = False
        self.events = 0

    def observe(self, ev: SseEvent) -> Action:
        self.events += 1
        data = ev.data
        if data is None:
            return Action.FORWARD
        if data == b"[DONE]":
            self.done_seen = True
            return Action.DONE
        if not data.startswith(b"{") or not data.endswith(b"}"):
            self.garbage = True
            return Action.DROP  # never hand a client something its SDK cannot parse
        if b'"usage"' not in data and b'"error"' not in data:
            return Action.FORWARD
        try:
            view = _chunk.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.garbage = True
            return Action.DROP
        if view.error is not None:
            err = view.error
            self.upstream_error = err if isinstance(err, str) else (err.message or "upstream error")
            return Action.FORWARD
        if view.usage is not None:
            self.usage = valid_usage(view.usage)
            if not view.choices and not self.forward_usage_chunk:
                return Action.DROP
        return Action.FORWARD
