"""A corpus of malformed upstream streams: through the splitter and observer (Hypothesis mixes
and cuts them), and through the gateway end to end (each one as a raw upstream)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbstr.upstream.sse import SseSplitter, StreamObserver
from tests.e2e.conftest import SimSpec, StackFactory
from tests.e2e.raw import RawUpstream

pytestmark = pytest.mark.hostile

OK = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
DONE = b"data: [DONE]\n\n"

CORPUS: dict[str, bytes] = {
    "no blank line between events": OK + b"\n" + OK + b"\n\n" + DONE,
    "CR line endings": OK + b"\r\r" + DONE.replace(b"\n", b"\r"),
    "mixed CRLF and LF": OK + b"\r\n\n" + OK + b"\n\r\n" + DONE,
    "data without a space": OK.replace(b"data: ", b"data:") + b"\n\n" + DONE,
    "a byte-order mark first": b"\xef\xbb\xbf" + OK + b"\n\n" + DONE,
    "not JSON": b"data: hello world\n\n" + DONE,
    "truncated JSON": b'data: {"choices":[{"delta":\n\n' + DONE,
    "NUL bytes in data": OK[:-2] + b"\x00\x00" + b"}]}\n\n" + DONE,
    "invalid UTF-8 in data (SDKs decode it with replacement)": b'data: {"choices":[{"delta":{"content":"\xff\xfe"}}]}\n\n'
    + DONE,
    "a megabyte of comment": b": " + b"p" * (1 << 20) + b"\n\n" + OK + b"\n\n" + DONE,
    "id and retry fields": b"id: 7\nretry: 10\n" + OK + b"\n\n" + DONE,
    "an error event": b'event: error\ndata: {"error":{"message":"boom","code":500}}\n\n',
    "an error as a string": b'data: {"error":"boom"}\n\n' + DONE,
    "negative usage": USAGE.replace(b'"completion_tokens":2', b'"completion_tokens":-2')
    + b"\n\n"
    + DONE,
    "usage as a string": b'data: {"choices":[],"usage":"lots"}\n\n' + DONE,
    "duplicated usage keys": USAGE[:-1] + b',"usage":{"prompt_tokens":9}}\n\n' + DONE,
    "never [DONE]": OK + b"\n\n" + OK + b"\n\n",
    "events after [DONE]": OK + b"\n\n" + DONE + OK + b"\n\n",
    "[DONE] without its blank line": OK + b"\n\n" + b"data: [DONE]",
    "an empty object": b"data: {}\n\n" + DONE,
    "only blank lines": b"\n\n\n\n\n\n",
    "a field with no colon": b"data\n\n" + OK + b"\n\n" + DONE,
    "ten thousand tiny events": b"data: {}\n\n" * 10_000 + DONE,
    "nesting past the decoder": b'data: {"usage":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}\n\n"
    + DONE,
    "an event over the 4 MiB cap": b"data: {" + b" " * (5 << 20) + b"}\n\n" + DONE,
    "nothing at all": b"",
}


def run_through(stream: bytes, cuts: list[int]) -> tuple[bytes, StreamObserver, SseSplitter]:
    splitter = SseSplitter()
    observer = StreamObserver(forward_usage_chunk=False)
    out = bytearray()
    last = 0
    seen = 0  # events handed to the observer
    for cut in [*sorted(cuts), len(stream)]:
        for ev in splitter.feed(stream[last:cut]):
            out += ev.raw
            observer.observe(ev)
            seen += 1
        last = max(last, cut)
    for ev in splitter.flush():
        out += ev.raw
        observer.observe(ev)
        seen += 1
    assert observer.events == seen  # the observer counted each event once
    return bytes(out), observer, splitter


SMALL = [v for v in CORPUS.values() if len(v) < 1 << 16]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(SMALL), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=12),
)
def test_any_mix_of_the_corpus_cut_anywhere_splits_losslessly(
    parts: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(parts)
    out, observer, splitter = run_through(stream, [c % (len(stream) + 1) for c in cuts])
    assert not splitter.oversized
    assert out == stream  # every byte is in exactly one event, in order
    assert not observer.done_seen or b"[DONE]" in stream  # [DONE] only when it was sent


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_observer_never_raises_on_a_corpus_stream(name: str) -> None:
    stream = CORPUS[name]
    out, observer, splitter = run_through(stream, [1, 7, 4096])
    assert splitter.oversized or out == stream
    if observer.done_seen:
        assert b"[DONE]" in stream


def relay(name: str) -> list[bytes | float]:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    body = CORPUS[name]
    return [head, *(body[i : i + 65536] for i in range(0, len(body), 65536))]


@pytest.mark.parametrize("name", list(CORPUS))
def test_a_corpus_stream_through_the_gateway_ends_visibly_and_is_recorded(
    stack: StackFactory, raw: list[RawUpstream], name: str
) -> None:
    upstream = RawUpstream(lambda _r: relay(name))
    raw.append(upstream)
    head = '[database]\nurl = "memory://"\n[reliability]\nbackoff_s = [0.0]\nmax_retries = 0\n'
    s = stack([SimSpec("raw", url=upstream.url, models=["m"])], head=head)
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=s.url, timeout=30) as c:
        answer = c.post("/v1/chat/completions", json={**body, "stream": True})
        record = s.last_record()
        again = c.get("/health/live")
    assert again.status_code == 200
    assert answer.status_code in (200, 502), answer.text[:300]
    if answer.status_code == 502:  # nothing usable before the end: an OpenAI-shaped error
        assert set(answer.json()["error"]) >= {"message", "type", "code"}
        assert record.status == 502
        return
    text = answer.content
    assert text.endswith(b"data: [DONE]\n\n"), text[-200:]
    lines = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    data = [ln[6:] for ln in lines if ln.startswith(b"data: ")]
    for payload in data:  # what a client's SDK parses: JSON objects or [DONE], nothing else
        if payload != b"[DONE]" and payload.startswith(b"{") and len(payload) < 1 << 20:
            json.loads(payload.decode("utf-8", "replace"))  # as the SDKs decode their lines
    assert record.stream_status is not None
    if record.stream_status != "completed":
        assert b'"error"' in text  # the client was told
