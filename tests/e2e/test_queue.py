"""Queue when exhausted: requests wait for a cooldown to end instead of a 429, in order of
arrival, within their deadline; full, timed out and disconnected waiters get their answers."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tests.e2e.conftest import DEFAULT_HEAD, SimSpec, StackFactory
from tests.e2e.raw import RawUpstream

ANSWER = (
    b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
)
LIMITED = b'{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}}'
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Limited:
    """429 with `retry-after` for `window_s` after its first call, then answers; every call
    logged with its time and the gateway's request id (the Idempotency-Key)."""

    def __init__(self, window_s: float, retry_after: str = "2") -> None:
        self.window_s, self.retry_after = window_s, retry_after
        self.first: float | None = None
        self.calls: list[tuple[float, str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, request: bytes) -> list[bytes | float]:
        now = time.monotonic()
        key = next(
            (line.split(b":", 1)[1].strip().decode() for line in request.split(b"\r\n")
             if line.lower().startswith(b"idempotency-key:")), "?",
        )  # fmt: skip
        with self.lock:
            self.first = self.first if self.first is not None else now
            limited = now - self.first < self.window_s
            self.calls.append((now, key, 429 if limited else 200))
        if limited:
            head = (
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: %s\r\n" % self.retry_after.encode()
            )
            return [head + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
                    % len(LIMITED) + LIMITED]  # fmt: skip
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        return [head % len(ANSWER) + ANSWER]


def queue_head(max_size: int = 100, max_wait_s: float = 10) -> str:
    return (
        DEFAULT_HEAD
        + f"[queue]\nenabled = true\nmax_size = {max_size}\nmax_wait_s = {max_wait_s}\n"
    )


async def burst(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=n)) as c:

        async def one(i: int) -> httpx.Response:
            await asyncio.sleep(i * 0.002)  # a known order of arrival
            return await c.post(f"{url}/v1/chat/completions", json=CHAT)

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.slow
def test_a_burst_waits_for_the_cooldown_and_is_answered_in_order(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    a, b = Limited(2.0), Limited(2.0)
    ua, ub = RawUpstream(a), RawUpstream(b)
    raw += [ua, ub]
    s = stack([SimSpec("a", url=ua.url, input_rate=1), SimSpec("b", url=ub.url, input_rate=2)],
              head=queue_head())  # fmt: skip
    started = time.monotonic()
    answers = asyncio.run(burst(s.url, 50))
    took = time.monotonic() - started
    statuses = [r.status_code for r in answers]
    assert statuses == [200] * 50, {r.status_code: r.text for r in answers if r.status_code != 200}
    waited = [float(r.headers["x-arbstr-latency-ms"]) / 1000 for r in answers]
    assert max(waited) < 10  # none past its deadline (max_wait_s)
    for upstream in (a, b):  # no call while the gateway knew it was cooling down
        assert upstream.first is not None
        late = [round(t - upstream.first, 3) for t, _, status in upstream.calls if status == 429]
        assert max(late) < 0.3, late  # only calls already on their way in the arrival burst
    # answered in order of arrival: the upstream saw the queued requests in request-id order
    # (UUIDv7: time-ordered), whichever provider took them
    served = sorted((t, key) for up in (a, b) for t, key, status in up.calls if status == 200)
    order = [key for _, key in served]
    assert order == sorted(order)
    print(f"\nqueue: 50 requests answered 200 in {took:.2f} s; {len(a.calls)}+{len(b.calls)} calls")


def test_a_full_queue_and_a_long_wait_are_503s(stack: StackFactory, raw: list[RawUpstream]) -> None:
    limited = Limited(60.0, retry_after="30")
    upstream = RawUpstream(limited)
    raw.append(upstream)
    s = stack([SimSpec("a", url=upstream.url)], head=queue_head(max_size=3, max_wait_s=1))
    answers = asyncio.run(burst(s.url, 6))
    codes = sorted(r.json()["error"]["code"] for r in answers)
    assert [r.status_code for r in answers] == [503] * 6
    assert codes == ["queue_full"] * 3 + ["queue_timeout"] * 3
    assert limited.first is not None  # only calls on their way before the first 429 came back
    assert all(t - limited.first < 0.3 for t, _, _ in limited.calls)
    records = [r for r in s.sink.records if r.error_code and r.error_code.startswith("queue")]
    assert len(records) == 6
    assert "arbstr_queue_depth" in httpx.get(f"{s.url}/metrics").text


def test_a_queued_client_that_leaves_leaves_the_queue(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    upstream = RawUpstream(Limited(60.0, retry_after="30"))
    raw.append(upstream)
    s = stack([SimSpec("a", url=upstream.url)], head=queue_head(max_wait_s=20))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{s.url}/v1/chat/completions", json=CHAT, timeout=0.5)
    deadline = time.monotonic() + 2
    while True:
        queues = httpx.get(f"{s.url}/v1/ratelimits").json()["queues"]
        if not queues:
            break
        assert time.monotonic() < deadline, queues
        time.sleep(0.05)
    record = s.last_record()
    assert record.error_code == "client_disconnected"
