"""Export (`[export]`, DESIGN §12): each finished request as OpenTelemetry spans with the GenAI
semantic conventions (one span per request, one per attempt) to an OTLP/HTTP endpoint, and/or
as a line of JSON in a file.

Off the request path: `submit` only puts the record in a bounded queue (`queue_size`); a full
queue drops it and counts it (`arbstr_export_dropped`), it never waits. One thread turns records
into spans and lines; the OpenTelemetry SDK's batch processor sends spans from its own thread
with its own bounded queue, so a dead collector costs dropped spans, never a slower request.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from arbstr.recording.record import RequestRecord

__all__ = ["Exporter"]

log = logging.getLogger(__name__)
_STOP = object()
_encoder = msgspec.json.Encoder()


class Exporter:
    """A `RecordSink` that exports; `close()` flushes what is queued."""

    def __init__(
        self,
        *,
        otlp_endpoint: str | None,
        jsonl_path: str | None,
        queue_size: int = 4096,
        service_name: str = "arbstr",
        otlp_timeout_s: float = 1.0,
    ) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.exported = 0
        self._file: IO[bytes] | None = None
        if jsonl_path:
            Path(jsonl_path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(jsonl_path, "ab", buffering=64 << 10)  # noqa: SIM115 (kept open)
        self._tracer: Any = None
        self._provider: Any = None
        self._guard: _Guard | None = None
        if otlp_endpoint:
            self._guard = _Guard()
            self._tracer, self._provider = _tracer(
                otlp_endpoint, service_name, otlp_timeout_s, self._guard
            )
        self._thread = threading.Thread(target=self._run, name="arbstr-export", daemon=True)
        self._thread.start()

    def submit(self, record: RequestRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def figures(self) -> dict[str, float]:
        return {"dropped": self.dropped, "exported": self.exported, "queued": self._queue.qsize()}

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 1024:
                    batch.append(self._queue.get_nowait())
            for item in batch:
                if item is _STOP:
                    if self._file is not None:
                        self._file.flush()
                    return
                try:
                    self._export(item)
                except Exception:  # one bad record costs its export, never the thread
                    log.exception("export of request %s failed", getattr(item, "id", "?"))
            if self._file is not None:
                self._file.flush()
            time.sleep(0.05)  # a batch at a time: a few wake-ups a second, not one per request

    def _export(self, record: RequestRecord) -> None:
        if self._file is not None:
            self._file.write(_encoder.encode(record) + b"\n")
        if self._tracer is not None:
            if self._guard is not None and self._guard.down():
                self.dropped += 1  # the collector is failing: no spans are built for it
                return
            _spans(self._tracer, record)
        self.exported += 1

    def close(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)
        if self._file is not None:
            self._file.flush()
            self._file.close()
        if self._provider is not None:
            self._provider.force_flush(int(timeout_s * 1000))
            self._provider.shutdown()


class _Guard:
    """A collector that fails is left alone for a while (15 s, doubling to 2 min): building spans
    nobody can receive would cost every request CPU for nothing."""

    def __init__(self) -> None:
        self.until = 0.0
        self.backoff = 15.0
        self.failures = 0

    def down(self) -> bool:
        return time.monotonic() < self.until

    def failed(self) -> None:
        self.failures += 1
        self.until = time.monotonic() + self.backoff
        if self.failures == 1:
            log.warning("export: the OTLP collector fails; spans are dropped while it does")
        self.backoff = min(120.0, self.backoff * 2)

    def worked(self) -> None:
        if self.failures:
            log.warning("export: the OTLP collector answers again")
        self.failures, self.backoff = 0, 15.0


def _tracer(endpoint: str, service_name: str, timeout_s: float, guard: _Guard) -> tuple[Any, Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

    class Guarded(OTLPSpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            result = super().export(spans)
            if result is SpanExportResult.SUCCESS:
                guard.worked()
            else:
                guard.failed()
            return result

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    # its retries are logged per batch; the guard says it once
    logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").setLevel(
        logging.ERROR
    )
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = Guarded(endpoint=url, timeout=timeout_s)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=4096, schedule_delay_millis=250)
    )
    return provider.get_tracer("arbstr"), provider


def _spans(tracer: Any, r: RequestRecord) -> None:
    """One span per request (`gen_ai.*` attributes), a child per attempt."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    start = int(r.timestamp * 1e9)
    end = start + int((r.latency_ms or 0.0) * 1e6)
    operation = "chat" if r.endpoint == "chat" else "embeddings"
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": r.model or "",
        "arbstr.request_id": r.id,
        "arbstr.attempts": len(r.attempts),
        "http.response.status_code": r.status,
        "arbstr.streaming": r.streaming,
    }
    optional = {
        "gen_ai.response.model": r.upstream_model,
        "gen_ai.provider.name": r.provider,
        "gen_ai.usage.input_tokens": r.input_tokens,
        "gen_ai.usage.output_tokens": r.output_tokens,
        "arbstr.cost_sats": r.cost_sats,
        "arbstr.chain": r.chain,
        "arbstr.key_id": r.key_id,
        "arbstr.project_id": r.project_id,
        "error.type": r.error_code,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    span = tracer.start_span(f"{operation} {r.model or ''}".strip(), start_time=start,
                             attributes=attributes, kind=trace.SpanKind.CLIENT)  # fmt: skip
    if not r.success:
        span.set_status(Status(StatusCode.ERROR, r.error_code or "error"))
    context = trace.set_span_in_context(span)
    at = start
    for i, attempt in enumerate(r.attempts, 1):
        took = int((attempt.latency_ms or 0.0) * 1e6)
        child = tracer.start_span(
            f"attempt {attempt.provider}",
            context=context,
            start_time=at,
            attributes={
                "arbstr.attempt": i,
                "gen_ai.provider.name": attempt.provider,
                "gen_ai.request.model": attempt.upstream_model,
                **({"http.response.status_code": attempt.status} if attempt.status else {}),
                **({"arbstr.skipped": attempt.skipped} if attempt.skipped else {}),
                **({"error.type": attempt.error} if attempt.error else {}),
            },
            kind=trace.SpanKind.CLIENT,
        )
        child.end(end_time=at + took)
        at += took
    span.end(end_time=max(end, at))
