"""SSE splitter and observer: re-frame on event boundaries, pass raw bytes, read usage."""

from __future__ import annotations

import enum

import msgspec

from arbstr.schemas.usage import Usage, valid_usage

__all__ = ["DEFAULT_MAX_EVENT", "EventAction", "SseEvent", "SseSplitter", "StreamObserver"]

# The largest event buffered (its lines included). Real chat events are a few hundred bytes; a
# usage chunk or a big tool-call delta stays far below this. Past it the stream ends visibly.
DEFAULT_MAX_EVENT = 4 << 20


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
    """Feed network chunks, get complete events; the concatenated `raw` equals the input.

    Linear in the bytes fed: each byte is scanned once for line ends, however the stream is cut
    into reads (the scan resumes where it stopped; the next CR is searched once, not per line).
    A pending event larger than `max_event_bytes` (which bounds its lines too) is not buffered
    further: `oversized` is set, nothing more is returned, and the caller ends the stream.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT) -> None:
        self.max_event_bytes = max_event_bytes
        self.oversized = False
        self._buf = bytearray()
        self._line = 0  # where the current, incomplete line of the pending event starts
        self._cr = -1  # the next CR at or after `_line` (-1: none up to the buffer's end)
        self._cr_checked = 0  # how far the CR search has looked
        self._lf_checked = 0  # how far the current line was searched for an LF

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self.oversized:
            return []
        if self._buf:
            self._buf += chunk
            events = self._drain(self._buf, final=False)
        else:
            # nothing pending (the common case: whole events per read): scan the chunk itself,
            # no copy into the buffer, and keep only what is left of it
            events = self._drain(chunk, final=False)
        if len(self._buf) > self.max_event_bytes:
            self.oversized = True
            self._buf = bytearray()
        return events

    def flush(self) -> list[SseEvent]:
        """End of stream: complete events still buffered (a trailing CR ends a line now), then
        whatever is left, passed through as an incomplete event."""
        if self.oversized:
            return []
        events = self._drain(self._buf, final=True)
        if self._buf:
            events.append(SseEvent(bytes(self._buf), complete=False))
        self._buf = bytearray()
        self._line = self._cr_checked = self._lf_checked = 0
        self._cr = -1
        return events

    def _drain(self, buf: bytes | bytearray, final: bool) -> list[SseEvent]:
        """Complete events at the front of `buf` (the pending buffer, or a fresh chunk when
        nothing was pending); what remains becomes the pending buffer."""
        events: list[SseEvent] = []
        start = 0
        pending = buf is self._buf
        while True:
            end = self._boundary(buf, start, final)
            if end < 0:
                break
            if pending:
                with memoryview(buf) as view:  # one copy per event, released before `del`
                    raw = bytes(view[start:end])
            else:
                raw = buf[start:end]  # type: ignore[assignment]
            events.append(_parse(raw))
            start = end
            self._line = end
        if not pending:
            if start < len(buf):
                self._buf = bytearray(buf[start:])
                self._shift(start)
            else:
                self._line, self._cr, self._cr_checked, self._lf_checked = 0, -1, 0, 0
        elif start:
            del self._buf[:start]
            self._shift(start)
        return events

    def _shift(self, start: int) -> None:
        """Scan positions after the first `start` bytes were consumed."""
        self._line -= start
        self._lf_checked = max(0, self._lf_checked - start)
        if self._cr >= start:
            self._cr -= start
            self._cr_checked -= start
        elif self._cr >= 0:  # a CR already consumed: nothing is known past it
            self._cr, self._cr_checked = -1, 0
        else:
            self._cr_checked = max(0, self._cr_checked - start)

    def _next_cr(self, buf: bytes | bytearray, pos: int) -> int:
        if self._cr >= pos:
            return self._cr
        if self._cr < 0 and self._cr_checked > pos:
            pos = self._cr_checked  # nothing before this point: search only the new bytes
        self._cr = buf.find(b"\r", pos)
        self._cr_checked = len(buf)
        return self._cr

    def _boundary(self, buf: bytes | bytearray, start: int, final: bool) -> int:
        """Index just past the blank line ending the event that starts at `start`, or -1 (need
        more bytes); `self._line` is where the scan resumes, at a line start."""
        n = len(buf)
        pos = max(self._line, start)
        while True:
            cr = self._next_cr(buf, pos)
            limit = cr if cr >= 0 else n
            # [pos, limit) holds no CR: LF framing there, one search for a blank line
            if pos < limit and buf[pos] == 0x0A:
                return pos + 1  # an empty line at the line start
            # [pos, _lf_checked) is a line already searched without an LF: a long line read
            # in many small pieces is scanned once, not once a read
            start = max(pos, self._lf_checked) if self._lf_checked <= limit else pos
            i = buf.find(b"\n\n", start, limit)
            if i >= 0:
                return i + 2
            last = buf.rfind(b"\n", start, limit)
            if last >= 0:
                pos = last + 1  # the start of the last line before `limit`
            if cr < 0:
                self._line = pos
                self._lf_checked = n
                return -1
            if cr + 1 >= n and not final:
                self._line = pos
                return -1  # a CR at the end: wait to see whether an LF follows
            end = cr + 2 if cr + 1 < n and buf[cr + 1] == 0x0A else cr + 1
            if cr == pos:
                return end  # an empty line ends the event
            pos = end


class EventAction(enum.Enum):
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
_syntax = msgspec.json.Decoder(msgspec.Raw)  # parses to find the end: a syntax check only


class StreamObserver:
    """Watches events for usage, `[DONE]`, upstream errors and unparseable data.

    Data that is not `[DONE]` must be a JSON object: its syntax is checked (nothing is built)
    and it is only decoded when it could hold usage or an error (a substring test first).
    Anything else is garbage for an OpenAI chat stream: it is dropped and the gateway ends the
    stream with an error event.
    """

    __slots__ = ("done_seen", "events", "forward_usage_chunk", "garbage", "upstream_error", "usage")

    def __init__(self, forward_usage_chunk: bool = True) -> None:
        self.forward_usage_chunk = forward_usage_chunk
        self.usage: Usage | None = None
        self.done_seen = False
        self.upstream_error: str | None = None
        self.garbage = False
        self.events = 0

    def observe(self, ev: SseEvent) -> EventAction:
        self.events += 1
        data = ev.data
        if data is None:
            return EventAction.FORWARD
        if data == b"[DONE]":
            self.done_seen = True
            return EventAction.DONE
        if not data.startswith(b"{"):
            self.garbage = True
            return EventAction.DROP  # never hand a client something its SDK cannot parse
        if b'"usage"' not in data and b'"error"' not in data:
            try:  # its syntax checked, nothing built (half a microsecond for a chunk)
                _syntax.decode(data)
            except (msgspec.DecodeError, RecursionError):
                self.garbage = True
                return EventAction.DROP
            return EventAction.FORWARD
        try:
            view = _chunk.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            self.garbage = True
            return EventAction.DROP
        if view.error is not None:
            err = view.error
            self.upstream_error = err if isinstance(err, str) else (err.message or "upstream error")
            return EventAction.FORWARD
        if view.usage is not None:
            self.usage = valid_usage(view.usage)
            if not view.choices and not self.forward_usage_chunk:
                return EventAction.DROP
        return EventAction.FORWARD
