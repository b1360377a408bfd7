"""The transport against TLS it must refuse, connections the upstream half-closes, and encodings
it did not ask for."""

from __future__ import annotations

import gzip
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import SimSpec, StackFactory
from tests.e2e.raw import RawUpstream
from tests.hostile.test_upstream import CHAT, HEAD, OK_BODY, json_answer, with_raw
from tests.hostile.test_upstream_matrix import sockets_to

pytestmark = pytest.mark.hostile


def tls_upstream(raw: list[RawUpstream]) -> RawUpstream:
    """An HTTPS upstream whose certificate no system trusts (its own throwaway CA)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    upstream = RawUpstream(lambda _r: [json_answer(OK_BODY)], tls=context)
    raw.append(upstream)
    return upstream


def test_a_bad_certificate_is_refused_and_the_request_falls_back(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    upstream = tls_upstream(raw)
    specs = [
        SimSpec("tls", url=upstream.url, input_rate=1, models=["m"]),
        SimSpec("steady", input_rate=50, models=["m"]),
    ]
    s = stack(specs, head=HEAD)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
    assert s.last_record().attempts[0].error == "connection error"
    assert upstream.requests == []  # no request was ever written to it


def test_verify_false_accepts_it_and_check_warns(
    stack: StackFactory, raw: list[RawUpstream], tmp_path: Path
) -> None:
    upstream = tls_upstream(raw)
    spec = SimSpec("tls", url=upstream.url, input_rate=1, models=["m"], extra="verify = false")
    s = stack([spec, SimSpec("steady", input_rate=50, models=["m"])], head=HEAD)
    with s.client() as c:
        for _ in range(3):
            answer = c.post("/v1/chat/completions", json=CHAT)
            assert answer.headers["x-arbstr-provider"] == "tls", answer.text
            assert answer.content == OK_BODY
    config = tmp_path / "arbstr.toml"
    config.write_text(
        f'[[providers]]\nname = "tls"\nurl = "{upstream.url}"\nverify = false\nmodels = ["m"]\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "arbstr", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "verify = false" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "not checked" in out.stdout + out.stderr


def test_kept_alive_connections_the_upstream_closed_are_never_a_failed_request(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    """Each answer says keep-alive, then the upstream closes (FIN) at once: the pooled connection
    is dead when the next request takes it, whatever the timing. The request never reached the
    upstream, so it goes again on a fresh connection: never a failed attempt, never a fallback."""
    s = with_raw(stack, raw, lambda _r: [json_answer(OK_BODY)])
    upstream = raw[0]
    rounds = 40
    with s.client() as c:
        for i in range(rounds):
            time.sleep((i % 8) * 0.002)  # before, during and after the FIN arrives
            answer = c.post("/v1/chat/completions", json=CHAT)
            assert answer.headers["x-arbstr-provider"] == "raw"
            assert answer.content == OK_BODY
    records = s.sink.records
    assert len(records) == rounds and all(len(r.attempts) == 1 for r in records)
    assert len(upstream.requests) == rounds
    time.sleep(0.2)
    assert sockets_to(upstream.port) == 0  # every dead pooled connection was closed


def test_an_unasked_gzip_answer_is_not_taken_as_json(
    stack: StackFactory, raw: list[RawUpstream]
) -> None:
    """We ask for identity; a gzip body cannot be read for usage, so it is a failed attempt
    (it falls back) rather than an answer with an unknown cost."""
    packed = gzip.compress(OK_BODY)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
    answer_bytes = head + b"content-length: %d\r\n\r\n" % len(packed) + packed
    s = with_raw(stack, raw, lambda _r: [answer_bytes])
    upstream = raw[0]
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
        streamed = c.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
    assert b"accept-encoding: identity" in upstream.requests[0].lower()
    assert streamed.status_code == 200 and streamed.headers["x-arbstr-provider"] == "steady"
    assert streamed.text.rstrip().endswith("data: [DONE]")
