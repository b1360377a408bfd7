"""Prometheus metrics from request records, with bounded label cardinality; one registry per app."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from arbstr.recording.record import RecordSink, RequestRecord

__all__ = ["Metrics", "MetricsSink"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
_CIRCUIT = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_LEVELS = {"queue_depth"}  # recorder figures that are levels; the others are running totals
log = logging.getLogger(__name__)


def multiprocess_dir() -> str | None:
    """Where the workers of `arbstr serve --workers N` keep their metric values (one mmap file
    per worker and kind); None in a single process, where values live in memory."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Live(Collector):
    """Gauges read at scrape time: circuit states and recorder figures."""

    def __init__(
        self,
        circuits: Callable[[], dict[str, str]],
        recorder: Callable[[], dict[str, float]] | None,
        queues: Callable[[], list[dict[str, Any]]] | None = None,
        cache: Callable[[], dict[str, float]] | None = None,
        export: Callable[[], dict[str, float]] | None = None,
        loop: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.circuits, self.recorder, self.queues = circuits, recorder, queues
        self.cache, self.export, self.loop = cache, export, loop

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "arbstr_circuit_state",
            "Circuit per provider: 0 closed, 1 half-open, 2 open",
            labels=["provider"],
        )
        for name, state in self.circuits().items():
            family.add_metric([name], _CIRCUIT.get(state, 0.0))
        yield family
        if self.recorder is not None:
            for key, value in self.recorder().items():
                yield GaugeMetricFamily(f"arbstr_recorder_{key}", f"Recorder: {key}", value=value)
        if self.loop is not None:  # watchdog.py: blocked-loop count, longest hold, tasks
            for key, value in self.loop().items():
                yield GaugeMetricFamily(f"arbstr_loop_{key}", f"Event loop: {key}", value=value)
        if self.export is not None:
            for key, value in self.export().items():
                name, text = f"arbstr_export_{key}", f"Export: {key}"
                yield GaugeMetricFamily(name, text, value=value)
        if self.cache is not None:
            for key, value in self.cache().items():
                yield GaugeMetricFamily(
                    f"arbstr_cache_{key}", f"Response cache: {key}", value=value
                )
        if self.queues is not None:
            lines = self.queues()
            depth = GaugeMetricFamily(
                "arbstr_queue_depth", "Requests waiting for a cooldown to end", labels=["model"]
            )
            oldest = GaugeMetricFamily(
                "arbstr_queue_oldest_wait_seconds", "The oldest waiter's wait", labels=["model"]
            )
            for line in lines:
                depth.add_metric([line["model"]], line["depth"])
                oldest.add_metric([line["model"]], line["oldest_wait_s"])
            yield depth
            yield oldest


@dataclass(slots=True, frozen=True)
class _Series:
    """The labelled children one record updates."""

    requests: Counter
    latency: Histogram
    overhead: Histogram
    input_tokens: Counter
    output_tokens: Counter
    cost: Counter


class Metrics:
    """Counters and histograms of requests; the `model` label is bounded: configured models
    plus the first 50 others that succeeded, then `other`."""

    def __init__(self, providers: Iterable[str], known_models: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # several workers: prometheus_client's multiprocess mode (each worker writes its own
        # values, a scrape of any worker sums them); decided when prometheus_client is imported
        self.multiproc = bool(getattr(values.ValueClass, "_multiprocess", False))
        if multiprocess_dir() and not self.multiproc:
            log.error("PROMETHEUS_MULTIPROC_DIR was set too late: /metrics shows one worker")
        self._circuits: Callable[[], dict[str, str]] | None = None
        self._recorder: Callable[[], dict[str, float]] | None = None
        self._gauges: dict[str, Gauge] = {}
        self.providers = frozenset(providers)
        self.models = set(known_models)
        self.max_models = len(self.models) + 50
        labels = ["provider", "model"]
        self.requests = Counter(
            "arbstr_requests",
            "Requests by outcome",
            [*labels, "status", "streaming"],
            registry=self.registry,
        )
        self.errors = Counter(
            "arbstr_errors", "Failed requests by error code", ["code"], registry=self.registry
        )
        self.latency = Histogram(
            "arbstr_request_latency_seconds",
            "Whole-request latency",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.overhead = Histogram(
            "arbstr_gateway_overhead_seconds",
            "Gateway time excluding upstream",
            ["provider"],
            buckets=_OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "arbstr_tokens", "Tokens by kind", [*labels, "kind"], registry=self.registry
        )
        self.cost = Counter("arbstr_cost_sats", "Cost in sats", labels, registry=self.registry)
        self._series: dict[tuple[str, str, str, bool], _Series] = {}

    def attach(
        self,
        circuits: Callable[[], dict[str, str]],
        recorder: Callable[[], dict[str, float]] | None = None,
        queues: Callable[[], list[dict[str, Any]]] | None = None,
        cache: Callable[[], dict[str, float]] | None = None,
        export: Callable[[], dict[str, float]] | None = None,
        loop: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        if not self.multiproc:
            self.registry.register(_Live(circuits, recorder, queues, cache, export, loop))
            return
        # custom collectors only see their own process: as gauges, every worker's value counts
        self._circuits, self._recorder = circuits, recorder
        self._gauges["circuit"] = Gauge(
            "arbstr_circuit_state",
            "Circuit per provider: 0 closed, 1 half-open, 2 open (worst worker)",
            ["provider"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )

    def refresh(self) -> None:
        """Multiprocess mode: copy this worker's live figures into its gauge files."""
        if self._circuits is None:
            return
        circuit = self._gauges["circuit"]
        for name, state in self._circuits().items():
            circuit.labels(name).set(_CIRCUIT.get(state, 0.0))
        for key, value in (self._recorder() if self._recorder else {}).items():
            gauge = self._gauges.get(key)
            if gauge is None:
                mode = "livesum" if key in _LEVELS else "sum"
                gauge = Gauge(
                    f"arbstr_recorder_{key}",
                    f"Recorder: {key}",
                    multiprocess_mode=mode,  # type: ignore[arg-type]
                    registry=self.registry,
                )
                self._gauges[key] = gauge
            gauge.set(value)

    def close(self) -> None:
        """A worker that stops: its last figures stay, its live gauges leave the sum."""
        if self.multiproc:
            self.refresh()
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def observe(self, r: RequestRecord) -> None:
        provider = r.provider if r.provider in self.providers else "none"
        model = r.model or "none"
        if model not in self.models:
            # a client can send any model name: label the first few, then fold into "other"
            if r.success and len(self.models) < self.max_models:
                self.models.add(model)
            else:
                model = "other"
        status = str(r.status // 100) + "xx" if r.status else "0"
        series = self._series.get((provider, model, status, r.streaming))
        if series is None:
            series = self._bind(provider, model, status, r.streaming)
        series.requests.inc()
        if not r.success:
            self.errors.labels(r.error_code or "unknown").inc()
        if r.latency_ms is not None:
            series.latency.observe(r.latency_ms / 1000)
        if r.overhead_ms is not None:
            series.overhead.observe(r.overhead_ms / 1000)
        if r.input_tokens:
            series.input_tokens.inc(r.input_tokens)
        if r.output_tokens:
            series.output_tokens.inc(r.output_tokens)
        if r.cost_sats:
            series.cost.inc(r.cost_sats)

    def _bind(self, provider: str, model: str, status: str, streaming: bool) -> _Series:
        # `labels()` validates and locks on every call; bind each label set once (the sets are
        # bounded: providers x bounded models x status classes x streaming)
        series = _Series(
            requests=self.requests.labels(
                provider, model, status, "true" if streaming else "false"
            ),
            latency=self.latency.labels(provider, model),
            overhead=self.overhead.labels(provider),
            input_tokens=self.tokens.labels(provider, model, "input"),
            output_tokens=self.tokens.labels(provider, model, "output"),
            cost=self.cost.labels(provider, model),
        )
        self._series[(provider, model, status, streaming)] = series
        return series

    def render(self) -> bytes:
        path = multiprocess_dir()
        if not self.multiproc or path is None:
            return generate_latest(self.registry)
        self.refresh()
        _sweep_dead(path)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


def _sweep_dead(path: str) -> None:
    """Forget the live gauges of workers that died without `close()` (SIGKILL, crash)."""
    for file in Path(path).glob("gauge_live*_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                mark_process_dead(int(pid), path)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass


class MetricsSink:
    """A `RecordSink` that counts each record, then hands it on."""

    def __init__(self, metrics: Metrics, inner: list[RecordSink]) -> None:
        self.metrics, self.inner = metrics, inner
        self._failed = False  # logged once: a bad value repeats on every request

    def submit(self, record: RequestRecord) -> None:
        # the record first: metrics and recording must never fail each other
        for sink in self.inner:
            sink.submit(record)
        try:
            self.metrics.observe(record)
        except Exception:  # a value a counter refuses costs a data point, never the row
            if not self._failed:
                log.exception("metrics could not count request %s", record.id)
            self._failed = True
