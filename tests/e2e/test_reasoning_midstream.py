"""Reasoning normalisation (JSON and streams) and mid-stream escalation, over real sockets."""

from __future__ import annotations

import httpx
import pytest

from arbstr.sim import SimProfile
from tests.e2e.conftest import DEFAULT_HEAD, SimSpec, StackFactory
from tests.e2e.raw import RawUpstream, sse_response

CHAT = {"model": "m", "messages": [{"role": "user", "content": "think"}]}
ANSWER = (
    b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"","reasoning_content":"the thought"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
)
CHUNKS = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","reasoning":"step one"}}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"content":"done"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
)


def reasoning_upstream(request: bytes) -> list[bytes | float]:
    if b'"stream":true' in request.replace(b" ", b""):
        return sse_response(*CHUNKS)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return [head % len(ANSWER) + ANSWER]


@pytest.mark.parametrize("on", [True, False])
def test_reasoning_becomes_content_when_asked(
    stack: StackFactory, raw: list[RawUpstream], on: bool
) -> None:
    upstream = RawUpstream(reasoning_upstream)
    raw.append(upstream)
    head = DEFAULT_HEAD + f"[server]\nnormalize_reasoning = {str(on).lower()}\n"
    s = stack([SimSpec("raw", url=upstream.url)], head=head)
    answer = httpx.post(f"{s.url}/v1/chat/completions", json=CHAT, timeout=10)
    message = answer.json()["choices"][0]["message"]
    assert message["content"] == ("the thought" if on else "")
    assert message["reasoning_content"] == "the thought"  # kept either way
    if not on:
        assert answer.content == ANSWER  # off: byte for byte
    streamed = httpx.post(f"{s.url}/v1/chat/completions", json={**CHAT, "stream": True})
    deltas = [
        httpx.Response(200, content=line[6:]).json()["choices"][0]["delta"]
        for line in streamed.text.split("\n")
        if line.startswith("data: {") and '"choices"' in line
    ]
    assert deltas[0].get("content") == ("step one" if on else None)
    assert deltas[1]["content"] == "done"  # a delta with content is never touched


def test_streams_failing_mid_way_in_a_row_cool_the_provider_down(stack: StackFactory) -> None:
    head = DEFAULT_HEAD + (
        "midstream_failure_threshold = 2\nmidstream_cooldown_s = 120\n"
        "circuit_failure_threshold = 100\n"
    )
    cut = SimProfile(chunks=5, cut_after_chunks=2)
    s = stack([SimSpec("cutter", cut, input_rate=1), SimSpec("steady", input_rate=9)], head=head)
    stream = {**CHAT, "model": "gpt-4o-mini", "stream": True}
    with s.client() as client:
        for _ in range(2):  # both cut mid-way: the second reaches the threshold
            r = client.post("/v1/chat/completions", json=stream)
            assert r.headers["x-arbstr-provider"] == "cutter"
            assert "upstream_stream_error" in r.text
        limits = client.get("/v1/ratelimits").json()["ratelimits"]
        cooling = [row for row in limits if row["provider"] == "cutter"]
        assert cooling and cooling[0]["status"] == "exhausted"
        assert cooling[0]["reason"] == "midstream_failures"
        hits = s.sim("cutter").chat_hits
        after = client.post("/v1/chat/completions", json=stream)
        assert after.headers["x-arbstr-provider"] == "steady"  # the cooldown holds
        assert s.sim("cutter").chat_hits == hits
