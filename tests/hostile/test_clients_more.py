"""More hostile clients: ten thousand idle connections, 100 MB bodies, odd JSON, a reader that
never reads, more streams than a client may hold. Each: a clear answer, bounded memory."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arbstr.cluster import free_port, wait_ready
from tests.e2e.conftest import SimSpec, Stack, StackFactory
from tests.e2e.raw import RawUpstream
from tests.hostile.test_clients import connect
from tests.hostile.test_upstream_matrix import Peak, rss_mb

pytestmark = pytest.mark.hostile

HEAD = """
[database]
url = "memory://"
[reliability]
backoff_s = [0.0]
"""
CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chat_stack(stack: StackFactory, head: str = HEAD) -> Stack:
    return stack([SimSpec("a", models=["m"])], head=head)


def post_raw(s: Stack, body: bytes) -> httpx.Response:
    with s.client() as c:
        return c.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
         400, "invalid_json", None),
        (b'{"model": 5, "messages": []}', 400, "invalid_request", "model"),
        (b'{"model": "x", "model": "m", "messages": []}', 400, "invalid_request", "model"),
        (b'{"model": "m", "stream": false, "stream": true, "messages": []}',
         400, "invalid_request", "stream"),
        (b'{"model": ["m"], "messages": []}', 400, "invalid_request", "model"),
        (b'{"model": "m", "messages": {"role": "user"}}', 400, "invalid_request", "messages"),
        (b"[]", 400, "invalid_json", None),
        (b"", 400, "invalid_json", None),
        (b"\x00" * 1000, 400, "invalid_json", None),
    ],
)  # fmt: skip
def test_odd_json_gets_a_400_that_names_the_problem(
    stack: StackFactory, body: bytes, status: int, code: str, param: str | None
) -> None:
    s = chat_stack(stack)
    answer = post_raw(s, body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["param"] == param, error
    assert s.last_record().status == status


def test_a_key_named_model_inside_the_body_is_not_a_duplicate(stack: StackFactory) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"model": {"type": "string"}, "stream": {}}}}}  # fmt: skip
    body = {**CHAT, "tools": [tool], "user": "model"}
    s = chat_stack(stack)
    assert post_raw(s, json.dumps(body).encode()).status_code == 200


def test_a_huge_messages_array_is_answered_and_the_loop_stays_free(stack: StackFactory) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}] * 300_000})
    assert len(body) < 10 << 20
    s = chat_stack(stack)
    started = time.monotonic()
    answer = post_raw(s, body.encode())
    assert answer.status_code == 200 and time.monotonic() - started < 5
    with s.client() as c:
        assert c.get("/health/live").status_code == 200


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    block = b" " * size
    for _ in range(total // size):
        yield block


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_100_mb_body_is_refused_at_the_limit_with_bounded_memory(
    stack: StackFactory, declared: bool
) -> None:
    s = chat_stack(stack)
    size = 100 << 20
    peak = Peak()
    before = rss_mb()
    with httpx.Client(base_url=s.url, timeout=30) as c:
        try:
            headers = {"content-type": "application/json"}
            if declared:
                headers["content-length"] = str(size)
            answer = c.post("/v1/chat/completions", content=chunks(size), headers=headers)
            status, code = answer.status_code, answer.json()["error"]["code"]
        except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
            status, code = 413, "payload_too_large"  # answered and closed while we wrote
    top = peak.stop()
    assert (status, code) == (413, "payload_too_large")
    record = s.last_record()
    assert record.status == 413
    print(f"\n100 MB body ({'declared' if declared else 'chunked'}): peak +{top - before:.0f} MB")
    assert top - before < 64  # the 10 MiB limit plus buffers, never the 100 MB


def test_a_client_that_never_reads_its_stream_holds_bounded_memory(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    """A fast upstream stream of 256 MB, a client that reads nothing: flow control stops the
    upstream read; the gateway buffers at most about its pause threshold, not the stream."""
    event = b"data: " + json.dumps({"choices": [{"delta": {"content": "x" * 4000}}]}).encode()
    block = (event + b"\n\n") * 256  # ~1 MB

    def fast(_request: bytes) -> Iterator[bytes | float]:
        yield b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        for _ in range(256):
            yield block
            yield 0.0

    upstream = RawUpstream(fast)
    raw.append(upstream)
    s = stack([SimSpec("raw", url=upstream.url, models=["m"])], head=HEAD)
    before = rss_mb()
    peak = Peak()
    sock = connect(s.url)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({**CHAT, "stream": True}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    for _ in range(6):  # one byte a second
        time.sleep(1)
        sock.recv(1)
    grown = peak.stop() - before
    sock.close()
    record = s.last_record(timeout_s=10)
    print(f"\nnon-reading client: peak +{grown:.0f} MB while the upstream offered 256 MB")
    assert grown < 48
    assert record.stream_status == "client_disconnected"


def test_more_streams_than_a_client_may_hold_get_a_429(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    def slow(_request: bytes) -> list[bytes | float]:
        event = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        return [head, event, 1.5, b"data: [DONE]\n\n"]

    upstream = RawUpstream(slow)
    raw.append(upstream)
    head = HEAD + "[limits]\nmax_streams_per_client = 2\n"
    s = stack([SimSpec("raw", url=upstream.url, models=["m"])], head=head)
    body = {**CHAT, "stream": True}
    statuses: list[int] = []

    def one() -> None:
        with s.client() as c:
            statuses.append(c.post("/v1/chat/completions", json=body).status_code)

    first = [threading.Thread(target=one) for _ in range(2)]
    for t in first:
        t.start()
    time.sleep(0.5)  # both streams open
    with s.client() as c:
        refused = c.post("/v1/chat/completions", json=body)
        assert c.post("/v1/chat/completions", json=CHAT).status_code != 429  # JSON is not held
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    for t in first:
        t.join(10)
    assert statuses == [200, 200]
    with s.client() as c:  # their slots are back
        assert c.post("/v1/chat/completions", json=body).status_code == 200


def gateway_process(
    tmp: Path, head: str, db: str = "memory://"
) -> tuple[subprocess.Popen[bytes], str, Any]:
    """`arbstr serve` in its own process (its log in tmp/gateway.log) and a simulator."""
    sim_port, port = free_port(), free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbstr.sim", "--port", str(sim_port), "--models", "m"],
        stdout=subprocess.DEVNULL,
    )
    config = tmp / "arbstr.toml"
    config.write_text(
        f'{head}\n[server]\nlisten = "127.0.0.1:{port}"\n[database]\nurl = "{db}"\n'
        f'[[providers]]\nname = "a"\nurl = "http://127.0.0.1:{sim_port}/v1"\nmodels = ["m"]\n'
    )
    config.chmod(0o600)
    with (tmp / "gateway.log").open("w") as log:
        gw = subprocess.Popen(
            [sys.executable, "-m", "arbstr", "serve", "--config", str(config)],
            stdout=log,
            stderr=log,
            cwd=tmp,
        )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, gw, "the gateway", 30)
    return gw, url, sim


def proc_figures(pid: int) -> tuple[float, int]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.mark.slow
def test_ten_thousand_idle_connections(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 11_000:
        pytest.skip(f"the descriptor limit ({hard}) cannot hold 10,000 client sockets")
    want = 20_000 if hard == resource.RLIM_INFINITY else min(hard, 20_000)
    if soft != resource.RLIM_INFINITY and soft < want:  # this process holds the 10,000 ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    gw, url, sim = gateway_process(tmp_path, "[limits]\nheader_timeout_s = 3")
    try:
        rss0, fds0 = proc_figures(gw.pid)
        idle: list[socket.socket] = []
        for _ in range(10_000):
            try:
                idle.append(connect(url))
            except OSError:
                break  # past what the backlog takes at once: fine, the gateway is still up
        time.sleep(0.5)
        rss1, fds1 = proc_figures(gw.pid)
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=10) as c:
            assert c.get("/health/live").status_code == 200
            assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
        served_s = time.monotonic() - started
        time.sleep(4)  # the header deadline closes every silent one
        closed = 0
        for sock in idle:
            sock.settimeout(0.01)
            try:
                closed += sock.recv(1) == b""
            except (TimeoutError, BlockingIOError):
                pass
            except ConnectionResetError:
                closed += 1
        rss2, fds2 = proc_figures(gw.pid)
        for sock in idle:
            sock.close()
        print(
            f"\n{len(idle)} idle connections: gateway RSS {rss0:.0f} -> {rss1:.0f} -> {rss2:.0f} MB,"
            f" descriptors {fds0} -> {fds1} -> {fds2}; a new client served in {served_s:.2f} s;"
            f" {closed} closed by the gateway"
        )
        assert len(idle) >= 9_000
        assert served_s < 3
        assert closed >= len(idle) - 10
        assert fds2 < fds0 + 50
        assert rss1 - rss0 < 300
    finally:
        gw.terminate()
        sim.terminate()
        gw.wait(30)
        sim.wait(10)
