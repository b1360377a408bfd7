"""Stream framing against a raw upstream: how `[DONE]` arrives must never matter to a client."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from .conftest import SimSpec, StackFactory
from .raw import RawUpstream, sse_response

CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",' \
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'  # fmt: skip
USAGE = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],' \
    b'"usage":{"prompt_tokens":12.0,"completion_tokens":5.0,"total_tokens":17.0}}\n\n'  # fmt: skip
BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "x"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


def gateway(stack: StackFactory, raw: list[RawUpstream], *parts: bytes) -> tuple[str, Any]:
    upstream = RawUpstream(lambda _request: sse_response(*parts))
    raw.append(upstream)
    s = stack([SimSpec("raw", url=upstream.url, input_rate=1000, output_rate=2000)])
    return s.url, s


def data_lines(text: str) -> list[str]:
    return [x[6:] for x in text.replace("\r\n", "\n").split("\n") if x.startswith("data: ")]


@pytest.mark.parametrize(
    "done",
    [
        (b"data: [DO", b"NE]\n\n"),  # split across two network reads
        (b"data: [DONE]\n\n", b"data: [DONE]\n\n"),  # two of them
        (b"data: [DONE]\r\n\r\n",),  # CRLF line ends
        (b"data: [DONE]\r\n", b"\r\n"),  # CRLF with the blank line in the next read
    ],
    ids=["split", "twice", "crlf", "crlf-split"],
)
def test_done_variants_end_cleanly(
    stack: StackFactory, raw: list[RawUpstream], done: tuple[bytes, ...]
) -> None:
    url, s = gateway(stack, raw, CHUNK, USAGE, *done)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    chunks = list(client.chat.completions.create(**BODY))
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["hi"]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 12
    text = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=10).text
    events = data_lines(text)
    # the upstream's first [DONE] goes through, then the trailer and one final [DONE]
    assert events.count("[DONE]") == 2 and events[-1] == "[DONE]"
    assert json.loads(events[-2])["arbstr"]["provider"] == "raw"
    record = s.last_record(2)
    assert record.success and record.stream_status == "completed"
    # float token counts (`12.0`) are counted, priced and never end a healthy stream
    assert (record.input_tokens, record.output_tokens) == (12, 5)
    assert record.cost_sats == pytest.approx((12 * 1000 + 5 * 2000) / 1000)


def test_no_done_ends_with_a_visible_error(stack: StackFactory, raw: list[RawUpstream]) -> None:
    url, s = gateway(stack, raw, CHUNK)
    text = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=10).text
    events = data_lines(text)
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    assert json.loads(events[-2])["error"]["code"] == "upstream_stream_error"
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(**BODY))
    record = s.last_record(2)
    assert not record.success and record.stream_status == "upstream_error"


def test_float_usage_in_a_json_answer_is_priced(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    body = b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,' \
        b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],' \
        b'"usage":{"prompt_tokens":12.0,"completion_tokens":"5","total_tokens":17}}'  # fmt: skip
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    upstream = RawUpstream(lambda _request: [head % len(body) + body])
    raw.append(upstream)
    s = stack([SimSpec("raw", url=upstream.url, input_rate=1000, output_rate=2000)])
    response = httpx.post(
        f"{s.url}/v1/chat/completions", json={**BODY, "stream": False}, timeout=10
    )
    assert response.content == body  # byte for byte
    assert response.headers["x-arbstr-cost-sats"] == "22"
    record = s.last_record()
    assert (record.input_tokens, record.output_tokens, record.cost_sats) == (12, 5, 22.0)


def test_negative_usage_is_unknown_not_a_crash(stack: StackFactory, raw: list[RawUpstream]) -> None:
    bad = USAGE.replace(b"12.0", b"-12")
    url, s = gateway(stack, raw, CHUNK, bad, b"data: [DONE]\n\n")
    text = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=10).text
    assert data_lines(text)[-3] == "[DONE]"
    record = s.last_record()
    assert record.success and record.input_tokens is None and record.cost_sats is None
