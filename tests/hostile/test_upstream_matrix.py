"""Every hostile upstream answer, one table: the client gets a correct answer or an OpenAI-shaped
error, the request is recorded with the right status, the next request succeeds, and no task or
socket is left behind. Counts and peaks are printed (`-s`) for docs/reliability.md."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack, StackFactory
from tests.e2e.raw import RawUpstream
from tests.hostile.test_upstream import CHAT, OK_BODY, json_answer, with_raw

pytestmark = pytest.mark.hostile

Script = Callable[[bytes], Any]


def ok_head(extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def gigabyte(_request: bytes) -> Iterator[bytes | float]:
    """A declared 1 GiB answer, written as fast as the gateway reads it (it stops at its cap)."""
    yield ok_head(b"content-length: %d\r\n\r\n" % (1 << 30)) + b'{"pad":"'
    block = b"x" * (1 << 20)
    for _ in range(1024):
        yield block
        yield 0.0  # drain: the writer waits for the gateway to read


def trickle(_request: bytes) -> Iterator[bytes | float]:
    yield ok_head(b"content-length: %d\r\n\r\n" % len(OK_BODY))
    for byte in OK_BODY:
        yield bytes([byte])
        yield 1.0


@dataclass
class Case:
    name: str
    script: Script
    outcome: str  # "raw": the hostile upstream's answer is correct and used; "fallback"
    error: str = ""  # a part of the failed attempt's error
    extra: str = ""  # more provider config for the hostile upstream


CASES = [
    Case(
        "headers over the byte limit",
        lambda _r: [ok_head(b"x-big: " + b"a" * (100 << 10) + b"\r\n\r\n")],
        "fallback",
        "headers over the limit",
    ),
    Case(
        "endless header lines",
        lambda _r: [ok_head(b"x-h: v\r\n" * 100_000)],
        "fallback",
        "headers over the limit",
    ),
    Case("a status line of garbage", lambda _r: [b"GARBAGE\r\n\r\n"], "fallback", "protocol error"),
    Case("a status code of 999", lambda _r: [b"HTTP/1.1 999 X\r\n\r\n"], "fallback"),
    Case(
        "content-length and chunked both",
        lambda _r: [
            ok_head(b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n") + chunked(OK_BODY)
        ],
        "fallback",
        "protocol error",
    ),
    Case(
        "a negative chunk size",
        lambda _r: [ok_head(b"transfer-encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n")],
        "fallback",
        "protocol error",
    ),
    Case(
        "an overflowing chunk size",
        lambda _r: [ok_head(b"transfer-encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\nx\r\n")],
        "fallback",
        "protocol error",
    ),
    Case(
        "a body shorter than its content-length",
        lambda _r: [ok_head(b"content-length: %d\r\n\r\n" % (len(OK_BODY) + 50)) + OK_BODY],
        "fallback",
        "protocol error",
    ),
    Case(
        "a body longer than its content-length",
        lambda _r: [json_answer(OK_BODY, extra=b"HTTP/1.1 200 OK\r\n\r\n{}")],
        "raw",
    ),
    Case("a 1 GiB body", gigabyte, "fallback", "answer over max_response_bytes"),
    Case(
        "a CR injected in a header value",
        lambda _r: [
            ok_head(b"x-ratelimit-remaining-requests: 5\rset-cookie: evil=1\r\n")
            + b"content-length: %d\r\n\r\n" % len(OK_BODY)
            + OK_BODY
        ],
        "fallback",
        "protocol error",
    ),
    Case(
        "a bare LF between header lines",
        lambda _r: [
            ok_head(b"set-cookie: evil=1\nx-y: z\r\n")
            + b"content-length: %d\r\n\r\n" % len(OK_BODY)
            + OK_BODY
        ],
        "fallback",
        "protocol error",
    ),
    Case(
        "a NUL in a header value",
        lambda _r: [
            ok_head(b"x-ratelimit-remaining-requests: 5\x00\r\n")
            + b"content-length: %d\r\n\r\n" % len(OK_BODY)
            + OK_BODY
        ],
        "fallback",
        "protocol error",
    ),
    Case(
        "an answer that never ends",
        lambda _r: [ok_head(b"content-length: 1000\r\n\r\n{"), 60.0],
        "fallback",
        "",
        "timeout_s = 1.0",
    ),
    Case("a byte a second", trickle, "fallback", "timeout", "timeout_s = 1.5"),
    Case("a silent upstream", lambda _r: [60.0], "fallback", "timeout", "timeout_s = 1.0"),
    Case(
        "HTTP/1.0, delimited by the close",
        lambda _r: [b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n" + OK_BODY],
        "raw",
    ),
    Case(
        "connection: close with a length",
        lambda _r: [json_answer(OK_BODY).replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)],
        "raw",
    ),
    Case(
        "a valid chunked answer in one-byte chunks",
        lambda _r: [
            ok_head(b"transfer-encoding: chunked\r\n\r\n")
            + b"".join(b"1\r\n%c\r\n" % b for b in OK_BODY)
            + b"0\r\n\r\n"
        ],
        "raw",
    ),
    Case(
        "an interim 100 then the answer",
        lambda _r: [b"HTTP/1.1 100 Continue\r\n\r\n" + json_answer(OK_BODY)],
        "raw",
    ),
    Case("closed before any byte", lambda _r: [], "fallback", "protocol error"),
]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def sockets_to(port: int) -> int:
    """Client sockets to `port` still open on our side: established, or closed by the peer and
    not yet by us (CLOSE_WAIT, the signature of a leak). A socket we closed is not counted."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if int(remote.split(":")[1], 16) == port and state in ("01", "08"):
                count += 1
    return count


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """The highest RSS of this process (gateway, sims and test share it) while running."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def settle(stack: Stack, tasks: int, port: int, timeout_s: float = 5.0) -> tuple[int, int]:
    """Wait for the gateway's tasks and its sockets to the hostile upstream to come back down
    (one kept-alive connection may stay)."""
    assert stack.gateway is not None
    deadline = time.monotonic() + timeout_s
    while True:
        now = stack.gateway.tasks(), sockets_to(port)
        if (now[0] <= tasks and now[1] <= 1) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def start(stack: StackFactory, raw: list[RawUpstream], case: Case, fallback: bool) -> Stack:
    return with_raw(stack, raw, case.script, fallback=fallback, extra=case.extra)


def assert_openai_error(answer: httpx.Response) -> None:
    error = answer.json()["error"]
    assert set(error) >= {"message", "type", "code"}, error
    assert isinstance(error["message"], str) and error["message"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_answer_is_bounded_recorded_and_leaves_nothing_behind(
    stack: StackFactory, raw: list[RawUpstream], case: Case
) -> None:
    s = start(stack, raw, case, fallback=True)
    assert s.gateway is not None
    with s.client() as c:  # warm: the steady provider's pooled connection exists before counting
        c.get("/health/live")
    tasks = s.gateway.tasks()
    start_rss = rss_mb()
    peak = Peak()
    rounds = 3
    with s.client() as c:
        for i in range(rounds):
            answer = c.post("/v1/chat/completions", json=CHAT)
            record = s.last_record(i + 1)
            assert answer.status_code == 200, answer.text
            assert "set-cookie" not in answer.headers
            provider = answer.headers["x-arbstr-provider"]
            if case.outcome == "raw":
                assert provider == "raw" and answer.content == OK_BODY
            elif case.outcome == "fallback":
                assert provider == "steady"
                failed = record.attempts[0]
                assert failed.provider == "raw" and failed.error, record.attempts
                assert case.error in failed.error, failed.error
            assert record.status == 200 and record.success and record.provider == provider
            if provider == "raw":
                assert answer.content == OK_BODY
    top = peak.stop()
    after = settle(s, tasks, raw[0].port)
    grown = top - start_rss
    print(f"\n{case.name}: {rounds} requests, peak RSS +{grown:.0f} MB, tasks {tasks}->{after[0]}")
    assert len(s.sink.records) == rounds
    assert after[0] <= tasks, f"tasks {tasks} -> {after[0]}"
    assert after[1] <= 1, f"{after[1]} sockets to the hostile upstream left open"
    assert grown < 200, f"peak RSS +{grown:.0f} MB"  # a 1 GiB answer is cut at 32 MiB


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.outcome == "fallback"], ids=lambda c: c.name
)
def test_without_a_fallback_the_client_gets_an_openai_error_and_a_row(
    stack: StackFactory, raw: list[RawUpstream], case: Case
) -> None:
    s = start(stack, raw, case, fallback=False)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code in (502, 504), answer.text
    assert_openai_error(answer)
    record = s.last_record()
    assert record.status == answer.status_code and not record.success
    assert record.error_code == answer.json()["error"]["code"]
