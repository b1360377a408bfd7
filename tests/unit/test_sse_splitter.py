"""The SSE splitter and observer: framing rules, and any chunking gives the same events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from arbstr.upstream.sse import EventAction, SseEvent, SseSplitter, StreamObserver


def split(chunks: list[bytes], **kw: int) -> list[SseEvent]:
    splitter = SseSplitter(**kw)
    events: list[SseEvent] = []
    for chunk in chunks:
        events += splitter.feed(chunk)
    return events + splitter.flush()


def fields(events: list[SseEvent]) -> list[tuple[bytes | None, str | None, str | None]]:
    return [(e.data, e.event, e.id) for e in events if e.complete]


def test_line_endings_and_fields() -> None:
    stream = (
        b'data: {"a":1}\n\n'
        b": a comment\r\nevent: delta\r\nid: 42\r\nretry: 100\r\ndata:no-space\r\ndata: two\r\n\r\n"
        b"data: cr-only\r\r"
        b"data: [DONE]\n\n"
    )
    events = split([stream])
    assert fields(events) == [
        (b'{"a":1}', None, None),
        (b"no-space\ntwo", "delta", "42"),
        (b"cr-only", None, None),
        (b"[DONE]", None, None),
    ]
    assert events[-1].is_done
    assert b"".join(e.raw for e in events) == stream


def test_crlf_split_across_chunks() -> None:
    events = split([b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"])
    assert fields(events) == [(b"x", None, None), (b"y", None, None)]


def test_incomplete_tail_is_flushed_as_passthrough() -> None:
    events = split([b"data: whole\n\ndata: cut"])
    assert fields(events) == [(b"whole", None, None)]
    assert events[-1].raw == b"data: cut"
    assert not events[-1].complete


def test_an_oversized_event_stops_the_splitter_with_a_bounded_buffer() -> None:
    splitter = SseSplitter(max_event_bytes=64)
    out = splitter.feed(b"data: ok\n\n" + b"data: " + b"x" * 100)
    assert [e.data for e in out] == [b"ok"]
    assert splitter.oversized
    assert len(splitter._buf) == 0
    assert splitter.feed(b"y" * 100 + b"\n\ndata: more\n\n") == []
    assert splitter.flush() == []
    # many short lines with no blank line are an oversized event too (not a long line)
    lines = SseSplitter(max_event_bytes=1000)
    assert lines.feed(b"data: x\n" * 200) == [] and lines.oversized


def test_usage_event_over_a_mebibyte_is_still_parsed() -> None:
    big = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2},"pad":"'
    big += b"p" * (1 << 21) + b'"}\n\n'
    events = split([big[i : i + 65536] for i in range(0, len(big), 65536)])
    assert len(events) == 1 and events[0].complete
    hide = StreamObserver(forward_usage_chunk=False)
    assert hide.observe(events[0]) is EventAction.DROP
    assert hide.usage is not None and hide.usage.completion_tokens == 2


def test_observer_usage_done_drop_and_errors() -> None:
    usage_chunk = (
        b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'
    )
    content = b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
    events = split([content, usage_chunk, b"data: [DONE]\n\n"])
    keep = StreamObserver(forward_usage_chunk=True)
    assert [keep.observe(e) for e in events] == [
        EventAction.FORWARD,
        EventAction.FORWARD,
        EventAction.DONE,
    ]
    hide = StreamObserver(forward_usage_chunk=False)
    assert [hide.observe(e) for e in events] == [
        EventAction.FORWARD,
        EventAction.DROP,
        EventAction.DONE,
    ]
    assert hide.usage is not None
    assert (hide.usage.prompt_tokens, hide.usage.completion_tokens) == (3, 4)
    assert hide.done_seen
    assert not hide.garbage

    bad = StreamObserver()
    assert bad.observe(split([b"data: {not json\n\n"])[0]) is EventAction.DROP
    assert bad.garbage
    err = StreamObserver()
    err.observe(split([b'data: {"error":{"message":"overloaded","code":"x"}}\n\n'])[0])
    assert err.upstream_error == "overloaded"


texts = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40
)
event_st = st.tuples(
    st.lists(texts, min_size=1, max_size=3),
    st.none() | texts.filter(bool),
    st.none() | texts.filter(bool),
)


def serialise(events: list[tuple[list[str], str | None, str | None]], eol: bytes) -> bytes:
    out = b""
    for data, name, ident in events:
        if name is not None:
            out += b"event: " + name.encode() + eol
        if ident is not None:
            out += b"id: " + ident.encode() + eol
        for line in data:
            out += b"data: " + line.encode() + eol
        out += eol
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(event_st, min_size=1, max_size=8), st.sampled_from([b"\n", b"\r\n", b"\r"]), st.data()
)
def test_any_split_yields_the_same_events(
    events: list[tuple[list[str], str | None, str | None]], eol: bytes, data: st.DataObject
) -> None:
    stream = serialise(events, eol)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = split([stream])
    parts = split(chunks)
    assert fields(parts) == fields(whole)
    assert b"".join(e.raw for e in parts) == stream
    expected = [("\n".join(d).encode(), n.strip() if n else n, i) for d, n, i in events]
    got = [(d, n.strip() if n else n, i) for d, n, i in fields(whole)]
    assert [g[0] for g in got] == [e[0] for e in expected]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_never_lose_a_byte(blob: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(blob))), max_size=10)))
    chunks = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
    assert b"".join(e.raw for e in split(chunks)) == blob
    # with a small cap: everything, or a prefix and the splitter says it stopped
    splitter = SseSplitter(max_event_bytes=32)
    out = b"".join(e.raw for c in chunks for e in splitter.feed(c))
    out += b"".join(e.raw for e in splitter.flush())
    assert out == blob or (splitter.oversized and blob.startswith(out))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.data())
def test_splitting_matches_a_reference_reader(blob: bytes, data: st.DataObject) -> None:
    """The resumable scan finds the same event ends as reading the whole input at once."""
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(blob))), max_size=10)))
    chunks = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
    whole = [(e.raw, e.complete) for e in split([blob])]
    parts = [(e.raw, e.complete) for e in split(chunks)]
    assert parts == whole
