"""Export over real sockets: OTLP/HTTP spans with the GenAI attributes to an in-process
receiver, a JSONL line per request, and a dead collector that never slows a request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from arbstr.cluster import free_port
from arbstr.export import Exporter
from arbstr.recording.record import RequestRecord
from arbstr.sim import SimProfile
from tests.e2e.conftest import DEFAULT_HEAD, SimSpec, StackFactory

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class Receiver:
    """An OTLP/HTTP trace receiver on loopback: every span it was sent, by name."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_spans_carry_the_genai_attributes_and_a_jsonl_line_each(
    stack: StackFactory, receiver: Receiver, tmp_path: Path
) -> None:
    jsonl = tmp_path / "events.jsonl"
    head = DEFAULT_HEAD + (
        f'max_retries = 0\n[export]\notlp_endpoint = "{receiver.url}"\njsonl_path = "{jsonl}"\n'
    )
    bad = SimProfile(failure_rate=1.0, failure_status=500)
    s = stack([SimSpec("flaky", bad, input_rate=1), SimSpec("steady", input_rate=5)], head=head)
    answer = httpx.post(f"{s.url}/v1/chat/completions", json=CHAT, timeout=10)
    assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
    request_id = answer.headers["x-arbstr-request-id"]
    deadline = time.monotonic() + 10
    while len(receiver.spans) < 3:
        assert time.monotonic() < deadline, receiver.spans
        time.sleep(0.1)
    (top,) = [sp for sp in receiver.spans if not sp.parent_span_id]
    attrs = attributes(top)
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.provider.name"] == "steady"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["arbstr.cost_sats"] == float(answer.headers["x-arbstr-cost-sats"])
    assert attrs["arbstr.request_id"] == request_id
    attempts = sorted((sp for sp in receiver.spans if sp.parent_span_id),
                      key=lambda sp: attributes(sp)["arbstr.attempt"])  # fmt: skip
    assert [attributes(sp)["gen_ai.provider.name"] for sp in attempts] == ["flaky", "steady"]
    assert [attributes(sp)["arbstr.attempt"] for sp in attempts] == [1, 2]
    assert all(sp.parent_span_id == top.span_id and sp.trace_id == top.trace_id for sp in attempts)
    deadline = time.monotonic() + 5
    while not jsonl.exists() or request_id.encode() not in jsonl.read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = msgspec.json.decode(jsonl.read_bytes().splitlines()[-1])
    assert line["id"] == request_id and line["provider"] == "steady"


def test_a_dead_collector_never_slows_or_fails_a_request(stack: StackFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    s = stack([SimSpec("steady")], head=DEFAULT_HEAD + f'[export]\notlp_endpoint = "{dead}"\n')
    with httpx.Client(base_url=s.url, timeout=10) as client:
        started = time.monotonic()
        codes = [client.post("/v1/chat/completions", json=CHAT).status_code for _ in range(50)]
        took = time.monotonic() - started
    assert codes == [200] * 50 and took < 10
    assert "arbstr_export_exported" in httpx.get(f"{s.url}/metrics").text


def test_a_full_export_queue_drops_and_counts() -> None:
    exporter = Exporter(otlp_endpoint=None, jsonl_path=None, queue_size=3)
    exporter.close()  # its thread has stopped: nothing drains the queue now
    for i in range(10):
        exporter.submit(RequestRecord(id=str(i), timestamp=0.0, model="m"))
    assert exporter.figures()["dropped"] == 7 and exporter.figures()["queued"] == 3
