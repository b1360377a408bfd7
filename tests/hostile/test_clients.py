"""A cheap client trick must never exhaust the gateway: header, body, idle and connection caps."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import SimSpec, Stack, StackFactory

pytestmark = pytest.mark.hostile

HEAD = """
[database]
url = "memory://"
[limits]
header_timeout_s = 1
body_timeout_s = 1
keepalive_timeout_s = 1
max_request_header_bytes = 16384
max_request_headers = 50
max_connections = 40
"""
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


def gateway(stack: StackFactory) -> Stack:
    return stack([SimSpec("sim")], head=HEAD)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_all(sock: socket.socket, limit_s: float = 5.0) -> bytes:
    sock.settimeout(limit_s)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_oversized_headers_get_431_in_the_openai_shape(stack: StackFactory) -> None:
    s = gateway(stack)
    with connect(s.url) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        for _ in range(100):  # 100 x 1 KiB: far past 16 KiB, never the whole flood
            try:
                sock.sendall(b"x-pad: " + b"p" * 1024 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = read_all(sock)
    assert status_of(answer) == 431
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_header_fields_too_large"


def test_too_many_headers_get_431(stack: StackFactory) -> None:
    s = gateway(stack)
    headers = {f"x-h{i}": "1" for i in range(60)}
    answer = httpx.post(f"{s.url}/v1/chat/completions", content=BODY, headers=headers)
    assert answer.status_code == 431
    assert answer.json()["error"]["code"] == "request_header_fields_too_large"


def test_slowloris_headers_are_cut_off(stack: StackFactory) -> None:
    s = gateway(stack)
    t0 = time.monotonic()
    with connect(s.url) as sock:
        request = b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: " + b"s" * 100
        answer = b""
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 3:
                break
        answer = read_all(sock, 2)
    assert status_of(answer) == 408
    assert time.monotonic() - t0 < 4


def test_idle_and_silent_connections_are_closed(stack: StackFactory) -> None:
    s = gateway(stack)
    with connect(s.url) as silent:  # never sends a byte
        t0 = time.monotonic()
        assert read_all(silent, 3) == b""
        assert 0.8 < time.monotonic() - t0 < 2.5
    with connect(s.url) as kept:  # one request, then idle on keep-alive
        kept.sendall(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        t0 = time.monotonic()
        answer = read_all(kept, 3)
        assert status_of(answer) == 200 and 0.8 < time.monotonic() - t0 < 2.5


def test_a_stalled_body_gets_408_and_no_upstream_call(stack: StackFactory) -> None:
    s = gateway(stack)
    with connect(s.url) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(BODY) + BODY[:20]
        )
        answer = read_all(sock, 3)
    assert status_of(answer) == 408
    assert s.sim("sim").stats()["chat_hits"] == 0
    record = s.last_record()
    assert record.status == 408 and record.error_code == "request_timeout"


def test_a_short_body_then_disconnect_is_an_abort(stack: StackFactory) -> None:
    s = gateway(stack)
    with connect(s.url) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % (len(BODY) + 100) + BODY
        )
        time.sleep(0.1)
    record = s.last_record()
    assert record.status == 499 and record.error_code == "client_disconnected"
    assert s.sim("sim").stats()["chat_hits"] == 0


def test_idle_connections_past_the_cap_cannot_starve_health(stack: StackFactory) -> None:
    s = gateway(stack)
    hogs = [connect(s.url) for _ in range(80)]  # twice the cap, all silent
    try:
        time.sleep(1.6)  # the header deadline closes the silent ones under the cap
        with httpx.Client(timeout=5) as c:
            assert c.get(f"{s.url}/health/live").status_code == 200
    finally:
        for sock in hogs:
            sock.close()


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"page": "1e23"}, "page"),
        ({"page": str(2**63 - 1)}, "page"),
        ({"per_page": "9" * 40}, "per_page"),
    ],
)
def test_absurd_page_numbers_are_400(
    stack: StackFactory, params: dict[str, str], param: str
) -> None:
    s = gateway(stack)
    answer = httpx.get(f"{s.url}/v1/requests", params=params)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


def test_deep_nesting_is_a_400_not_a_crash(stack: StackFactory) -> None:
    s = gateway(stack)
    deep = b'{"model":"gpt-4o-mini","messages":[],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = httpx.post(f"{s.url}/v1/chat/completions", content=deep)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"
    nested: Any = {"model": "gpt-4o-mini", "messages": [[[["x"]]]]}
    answer = httpx.post(f"{s.url}/v1/chat/completions", json=nested)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "messages[0]" and "Expected `object`" in error["message"]


def test_headers_then_no_body_at_all_is_a_408(stack: StackFactory) -> None:
    s = gateway(stack)
    with connect(s.url) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 10\r\n\r\n"
        )
        answer = read_all(sock, 4)
    assert status_of(answer) == 408
    assert s.sim("sim").stats()["chat_hits"] == 0


def test_pipelined_requests_get_their_answers_and_nothing_else(stack: StackFactory) -> None:
    s = gateway(stack)
    one = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(BODY) + BODY
    )
    with connect(s.url) as sock:
        sock.sendall(one * 3 + b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        answer = read_all(sock, 4)
    # a body runs straight into the next status line: count status lines, not lines
    assert answer.count(b"HTTP/1.1 ") == 4 and answer.count(b"HTTP/1.1 200 ") == 4


def test_an_early_413_is_the_only_answer(stack: StackFactory) -> None:
    s = stack(
        [SimSpec("sim")], head=HEAD.replace("[limits]", "[server]\nmax_body_bytes = 1000\n[limits]")
    )
    body = b"x" * 50_000  # far past max_body_bytes and past the header cap once counted wrongly
    with connect(s.url) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n"
            % len(body)
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)
        answer = read_all(sock, 3)
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 413")
