"""A misbehaving upstream must never take the gateway down: every answer below is bounded."""

from __future__ import annotations

import gc
import json
import threading
import time
from typing import Any

import httpx
import pytest

from arbstr.sim import SimProfile
from arbstr.upstream._conn import _Conn
from tests.e2e.conftest import SimSpec, Stack, StackFactory
from tests.e2e.raw import RawUpstream, sse_response

pytestmark = pytest.mark.hostile

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
HEAD = """
[database]
url = "memory://"
[reliability]
backoff_s = [0.0]
max_retries = 0
"""
OK_BODY = (
    b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
)


def json_answer(body: bytes, status: int = 200, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % (status, len(body)) + body + extra


def with_raw(
    stack: StackFactory,
    raw: list[RawUpstream],
    script: Any,
    head: str = HEAD,
    fallback: bool = True,
    extra: str = "",
) -> Stack:
    """The raw upstream `script` as the cheapest provider, the steady simulator as fallback."""
    upstream = RawUpstream(script)
    raw.append(upstream)
    specs = [SimSpec("raw", url=upstream.url, input_rate=1, models=["m"], extra=extra)]
    if fallback:
        specs.append(SimSpec("steady", input_rate=50, models=["m"]))
    return stack(specs, head=head)


def live_while(url: str, busy: threading.Thread) -> float:
    """The slowest `/health/live` answer while `busy` runs (the event loop must stay free)."""
    worst = 0.0
    with httpx.Client(timeout=5) as c:
        while busy.is_alive():
            t0 = time.monotonic()
            assert c.get(f"{url}/health/live").status_code == 200
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.05)
    return worst


def test_endless_header_lines_fail_the_attempt_and_free_the_connection(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    lines = [b"HTTP/1.1 200 OK\r\n"] + [
        b"x-junk-%d: %s\r\n" % (i, b"v" * 200) for i in range(30_000)
    ]
    s = with_raw(stack, raw, lambda _r: [b"".join(lines)])  # ~6.5 MB of header lines
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
        record = s.last_record()
        assert record.attempts[0].error == "headers over the limit"
        # the failed connection is gone: no _Conn still holds the megabytes it was sent
        gc.collect()
        held = [o for o in gc.get_objects() if isinstance(o, _Conn) and o.head_bytes > 1 << 20]
        assert held == []
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_too_many_header_lines(stack: StackFactory, raw: list[RawUpstream]) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: 1\r\n" % i for i in range(300))
    body = b"content-length: %d\r\n\r\n%s" % (len(OK_BODY), OK_BODY)
    s = with_raw(stack, raw, lambda _r: [head + body], fallback=False)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 502
    assert "headers over the limit" in answer.json()["error"]["message"]


def test_a_huge_answer_fails_the_attempt_with_a_clear_error(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    size = 200 << 20  # declared; the gateway stops reading at 1 MiB
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    chunk = b" " * (1 << 20)
    script = [head % size, b'{"pad":"'] + [chunk] * 8  # sends 8 MiB at most, then closes
    tail = "max_response_bytes = 1048576\n"
    s = with_raw(stack, raw, lambda _r: script, head=HEAD + "[limits]\n" + tail)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
    assert s.last_record().attempts[0].error == "answer over max_response_bytes"


def test_a_body_longer_than_its_length_is_cut_and_the_connection_dropped(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    second = json_answer(b'{"smuggled":true}')
    s = with_raw(stack, raw, lambda _r: [json_answer(OK_BODY, extra=b"garbage" + second)])
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
        assert answer.content == OK_BODY  # exactly content-length bytes, nothing after
        again = c.post("/v1/chat/completions", json=CHAT)
        assert again.content == OK_BODY
    upstream = raw[0]
    assert len(upstream.requests) == 2  # the second went on a new connection, answered whole


def test_an_echoed_key_is_scrubbed_on_the_error_path(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    def echo(request: bytes) -> list[bytes | float]:
        auth = next(
            line for line in request.split(b"\r\n") if line.lower().startswith(b"authorization")
        )
        body = b'{"error":{"message":"bad request, you sent ' + auth.replace(b'"', b"'") + b'"}}'
        return [json_answer(body, status=400)]

    upstream = RawUpstream(echo)
    raw.append(upstream)
    key = "sk-live-0123456789abcdefSECRET"
    s = stack([SimSpec("raw", url=upstream.url, api_key=key)], head=HEAD)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
        stream = c.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert answer.status_code == 400 and stream.status_code == 400
    for text in (answer.text, stream.text, s.last_record(2).error_message or ""):
        assert key not in text and "[REDACTED]" in text


def test_negative_usage_keeps_the_real_record(stack: StackFactory, raw: list[RawUpstream]) -> None:
    body = OK_BODY.replace(b'"prompt_tokens":3', b'"prompt_tokens":-3')
    s = with_raw(stack, raw, lambda _r: [json_answer(body)], fallback=False)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200 and answer.content == body
        metrics = c.get("/metrics").text
    record = s.last_record()
    assert record.provider == "raw" and record.success and record.input_tokens is None
    # the counter saw it too: neither side failed the other
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("arbstr_requests_total{") and 'provider="raw"' in line
    ]
    assert len(counted) == 1 and 'status="2xx"' in counted[0] and counted[0].endswith(" 1.0")


def test_a_hung_cheapest_provider_leaves_time_for_the_fallback(stack: StackFactory) -> None:
    head = HEAD.replace("[database]", "[server]\nrequest_timeout_s = 4\n[database]")
    s = stack(
        [
            SimSpec("hung", SimProfile(hang=True), input_rate=1, models=["m"]),
            SimSpec("steady", input_rate=50, models=["m"]),
        ],
        head=head,
    )
    t0 = time.monotonic()
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    took = time.monotonic() - t0
    assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
    assert 1.8 < took < 3.5  # half the deadline for the hung one, then the fallback answered
    assert s.last_record().attempts[0].error == "timeout"


def test_quadratic_sse_input_never_freezes_the_loop(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    first = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    lines = b"data: x\n" * (1 << 20)  # 8 MiB of short lines, no blank line
    parts = sse_response(first) + [lines[i : i + 65536] for i in range(0, len(lines), 65536)]
    s = with_raw(stack, raw, lambda _r: parts, fallback=False)
    result: dict[str, Any] = {}

    def call() -> None:
        t0 = time.monotonic()
        result["text"] = httpx.post(
            f"{s.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30
        ).text
        result["took"] = time.monotonic() - t0

    busy = threading.Thread(target=call)
    busy.start()
    worst = live_while(s.url, busy)
    busy.join()
    assert worst < 0.5 and result["took"] < 10
    events = [x[6:] for x in result["text"].split("\n") if x.startswith("data: ")]
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_stream_error" and "larger than" in error["message"]
    assert s.last_record().stream_status == "upstream_error"


def test_a_stream_that_only_pings_ends_at_max_stream_s(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    first = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    pings: list[bytes | float] = []
    for _ in range(100):
        pings += [b": ping\n\n", 0.1]
    head = HEAD + "max_stream_s = 1\nstream_idle_timeout_s = 5\n"
    s = with_raw(stack, raw, lambda _r: sse_response(first) + pings, head=head, fallback=False)
    t0 = time.monotonic()
    text = httpx.post(
        f"{s.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=20
    ).text
    assert time.monotonic() - t0 < 4
    events = [x[6:] for x in text.split("\n") if x.startswith("data: ")]
    assert json.loads(events[-2])["error"]["code"] == "stream_max_duration"
    assert s.last_record().stream_status == "too_long"


def test_retries_of_a_hung_provider_stay_inside_its_share(stack: StackFactory) -> None:
    head = """
[server]
request_timeout_s = 4
[database]
url = "memory://"
[reliability]
backoff_s = [0.1]
max_retries = 2
"""
    s = stack(
        [
            SimSpec("hung", SimProfile(hang=True), input_rate=1, models=["m"]),
            SimSpec("steady", input_rate=50, models=["m"]),
        ],
        head=head,
    )
    t0 = time.monotonic()
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
    assert time.monotonic() - t0 < 3.5


def test_an_answer_nested_past_the_decoder_is_still_a_recorded_answer(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    deep = b'{"choices":[],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    s = with_raw(stack, raw, lambda _r: [json_answer(deep)], fallback=False)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200 and answer.content == deep
    record = s.last_record()
    assert record.provider == "raw" and record.success and record.cost_sats is None


def test_a_stream_event_nested_past_the_decoder_ends_visibly(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    deep = b'data: {"usage":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n\n"
    s = with_raw(stack, raw, lambda _r: sse_response(deep, b"data: [DONE]\n\n"), fallback=False)
    text = httpx.post(
        f"{s.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
    ).text
    events = [x[6:] for x in text.split("\n") if x.startswith("data: ")]
    assert (
        events[-1] == "[DONE]"
        and json.loads(events[-2])["error"]["code"] == "upstream_stream_error"
    )
    assert s.last_record().stream_status == "upstream_error"
