"""Streaming end to end: passthrough, usage and cost, failover before the first byte, failures."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory

MESSAGES: list[Any] = [{"role": "user", "content": "Stream me a short answer please"}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def stats(url: str) -> dict[str, Any]:
    return httpx.get(url.removesuffix("/v1") + "/_sim/stats", timeout=5).json()


def raw_events(response: httpx.Response) -> list[str]:
    return [
        line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")
    ]


def test_content_reassembles_and_usage_cost_are_right(stack: StackFactory) -> None:
    s = stack([SimSpec("a", SimProfile(chunks=12), input_rate=4, output_rate=8, base_fee=0.25)])
    direct = httpx.post(f"{s.sims.urls[0]}/chat/completions", json=BODY, timeout=10)
    expected = "".join(
        json.loads(e)["choices"][0]["delta"].get("content") or ""
        for e in raw_events(direct)
        if e != "[DONE]" and json.loads(e)["choices"]
    )
    stream = sdk(s.url).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    # the SDK stops at the upstream's [DONE]: it never sees arbstr's trailer, and the last
    # chunk it yields is the usage chunk
    assert all(c.id and c.model for c in chunks)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    record = s.last_record()
    assert record.streaming and record.success and record.stream_status == "completed"
    assert record.output_tokens == usage.completion_tokens
    cost = (usage.prompt_tokens * 4 + usage.completion_tokens * 8) / 1000 + 0.25
    assert record.cost_sats == pytest.approx(cost, abs=1e-6)
    assert record.ttft_ms is not None and record.stream_duration_ms is not None


def test_raw_stream_has_trailer_and_hides_unrequested_usage(stack: StackFactory) -> None:
    s = stack([SimSpec("a", SimProfile(chunks=5))])
    response = httpx.post(f"{s.url}/v1/chat/completions", json=BODY, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-arbstr-streaming"] == "true"
    assert response.headers["x-arbstr-provider"] == "a"
    assert response.headers["x-arbstr-request-id"]
    events = raw_events(response)
    # the upstream's events and its [DONE] untouched, then the trailer and a final [DONE]
    assert events[-1] == "[DONE]" and events[-3] == "[DONE]"
    assert events.count("[DONE]") == 2
    assert len(events) == 5 + 1 + 2  # five chunks (usage dropped), [DONE], trailer, [DONE]
    trailer = json.loads(events[-2])["arbstr"]
    assert trailer["request_id"] == response.headers["x-arbstr-request-id"]
    assert trailer["provider"] == "a"
    assert trailer["cost_sats"] == pytest.approx(s.sink.records[-1].cost_sats)
    assert isinstance(trailer["latency_ms"], int)
    # the client did not ask for usage: the usage-only chunk is not forwarded...
    assert all('"usage":{' not in e.replace(" ", "") for e in events[:-2])
    # ...but the upstream was asked for it, so cost is known
    assert stats(s.sims.urls[0])["last_body"]["stream_options"] == {"include_usage": True}


def test_explicit_include_usage_false_is_kept(stack: StackFactory) -> None:
    s = stack([SimSpec("a")])
    body = dict(BODY, stream_options={"include_usage": False})
    httpx.post(f"{s.url}/v1/chat/completions", json=body, timeout=10)
    assert stats(s.sims.urls[0])["last_body"]["stream_options"] == {"include_usage": False}
    assert s.sink.records[-1].cost_sats is None  # unknown usage is NULL, never 0


def test_failover_before_first_byte(stack: StackFactory) -> None:
    s = stack(
        [
            SimSpec("cheap", SimProfile(failure_rate=1.0, failure_status=502), input_rate=1),
            SimSpec("dear", input_rate=9),
        ]
    )
    with sdk(s.url).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        assert response.headers["x-arbstr-provider"] == "dear"
        assert response.headers["x-arbstr-retries"] == "3/cheap"
    assert text


def test_stream_cut_before_first_byte_fails_over(stack: StackFactory) -> None:
    s = stack(
        [SimSpec("cut", SimProfile(cut_after_chunks=0), input_rate=1), SimSpec("ok", input_rate=9)]
    )
    response = httpx.post(f"{s.url}/v1/chat/completions", json=BODY, timeout=10)
    assert response.headers["x-arbstr-provider"] == "ok"
    assert raw_events(response)[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("profile", "code"),
    [
        (SimProfile(cut_after_chunks=3), "upstream_stream_error"),
        (SimProfile(garbage_after_chunks=3), "upstream_stream_error"),
        (SimProfile(stall_after_chunks=3), "stream_idle_timeout"),
    ],
)
def test_mid_stream_failure_is_visible(stack: StackFactory, profile: SimProfile, code: str) -> None:
    head = '[database]\nurl = "memory://"\n[reliability]\nstream_idle_timeout_s = 0.5\n'
    s = stack([SimSpec("a", profile)], head=head)
    response = httpx.post(f"{s.url}/v1/chat/completions", json=BODY, timeout=10)
    events = raw_events(response)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == code
    assert error["type"] == "server_error"
    with pytest.raises(openai.APIError):
        for _ in sdk(s.url).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ):
            pass
    record = s.last_record(count=2)
    assert not record.success
    assert record.stream_status == (
        "idle_timeout" if code == "stream_idle_timeout" else "upstream_error"
    )
    health = httpx.get(f"{s.url}/health", timeout=5).json()
    assert health["providers"]["a"]["failure_count"] >= 1


def test_client_disconnect_cancels_upstream(stack: StackFactory) -> None:
    s = stack([SimSpec("slow", SimProfile(chunks=200, tokens_per_s=50))])
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{s.url}/v1/chat/completions", json=BODY) as response,
    ):
        for _ in response.iter_raw():
            break
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if stats(s.sims.urls[0])["disconnects"] >= 1 and s.sink.records:
            break
        time.sleep(0.05)
    assert stats(s.sims.urls[0])["disconnects"] == 1
    assert stats(s.sims.urls[0])["in_flight"] == 0
    assert s.sink.records[-1].stream_status == "client_disconnected"
