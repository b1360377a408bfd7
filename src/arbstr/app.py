"""`create_app(settings)`: the one composition point; a lazy module-level `app` for ASGI hosts."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar

from arbstr.api.admin import ADMIN_ROUTES
from arbstr.api.config_admin import CONFIG_ROUTES
from arbstr.api.deps import dependencies
from arbstr.api.errors import exception_handlers
from arbstr.api.front import ArbstrApp
from arbstr.api.health import health, live, metrics_route, ratelimits, ready
from arbstr.api.openai import (
    chat_completions,
    cost_estimate,
    embeddings,
    list_models,
    list_providers,
)
from arbstr.api.openapi import document_proxy_routes, openapi_config
from arbstr.api.stats import get_request, list_requests, stats, timeseries
from arbstr.api.ui import Sessions, ui_handlers, ui_templates
from arbstr.cache import open_cache
from arbstr.config import ConfigError, Settings, load_settings
from arbstr.export import Exporter
from arbstr.gateway import Gateway
from arbstr.keys.admin import KeyAdmin
from arbstr.keys.crypto import Cipher
from arbstr.keys.runtime import KeyService
from arbstr.lifecycle import DRAIN
from arbstr.live import LiveConfig
from arbstr.pipeline.cached import CacheState
from arbstr.recording.record import RecordSink
from arbstr.recording.spill import claim_spill_slot
from arbstr.recording.writer import Recorder
from arbstr.reliability.health import ProviderHealth
from arbstr.reliability.sync import StateSync
from arbstr.routing.resolve import list_models as configured_models
from arbstr.stores.keys import KeyStore, open_key_store
from arbstr.stores.requestlog import RequestLog, open_request_log
from arbstr.stores.state import StateStore, open_state_store
from arbstr.stores.urls import sqlite_path
from arbstr.telemetry import Metrics, MetricsSink
from arbstr.upstream.client import Upstream
from arbstr.views import Views
from arbstr.watchdog import LoopWatch

__all__ = ["create_app", "spill_path", "tune_gc"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    sink: RecordSink | None = None,
    state_store: StateStore | None = None,
    request_log: RequestLog | None = None,
    key_store: KeyStore | None = None,
) -> ArbstrApp:
    """Build the ASGI app; the shared client, stores, recorder and gateway live in the lifespan.

    `sink` (tests) receives every record too, beside the recorder.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        server = settings.config.server
        limits = settings.config.limits
        upstream = Upstream(
            connect_timeout_s=server.connect_timeout_s,
            read_timeout_s=server.request_timeout_s,
            transport=server.upstream_transport,
            max_headers=limits.max_response_headers,
            max_head_bytes=limits.max_response_header_bytes,
        )
        health_state = ProviderHealth(settings.config.reliability, settings.providers)
        names = [p.name for p in settings.providers]
        models = configured_models(settings.providers, settings.config.chains)
        metrics = Metrics(names, [m for m, _ in models])
        db = settings.config.database
        log_store = request_log or open_request_log(db.effective_url)
        if db.migrate_on_start:
            await log_store.migrate()
        slot = claim_spill_slot(spill_path(settings))  # one file per process (spill.py)
        recorder = Recorder(log_store, spill_path=slot.path)
        await recorder.start()
        app.state.request_log = log_store
        app.state.metrics = metrics
        sinks: list[RecordSink] = [recorder] if sink is None else [recorder, sink]
        exporter = _exporter(settings)
        if exporter is not None:
            sinks.append(exporter)
        gateway = Gateway(settings, upstream, MetricsSink(metrics, sinks), health_state)
        gateway.shared.cache = cache = _open_cache(settings)
        block_s = server.loop_block_warn_s
        watch = LoopWatch(block_s) if block_s > 0 else None
        if watch is not None:
            watch.start()
        metrics.attach(
            lambda: health_state.circuit_states(names),
            recorder.figures,
            gateway.queue.snapshot if gateway.queue is not None else None,
            cache.figures if cache is not None else None,
            exporter.figures if exporter is not None else None,
            watch.figures if watch is not None else None,
        )
        gateway.ready_checks["request_log"] = log_store.ping

        async def recorder_ready() -> bool:
            return recorder.ready

        gateway.ready_checks["recorder"] = recorder_ready
        app.state.gateway = gateway
        app.state.views = views = Views(gateway.shared)
        app.state.live = live = LiveConfig(gateway, views, metrics)
        keys_db = key_store or open_key_store(db.effective_url)
        if db.migrate_on_start:
            await keys_db.migrate()
        gateway.ready_checks["key_store"] = keys_db.ping
        keys = await _start_keys(settings, keys_db, log_store, gateway)
        app.state.key_service = keys
        app.state.key_admin = KeyAdmin(
            keys_db,
            log_store,
            {p.name for p in settings.providers},
            keys.cipher if keys is not None else Cipher.from_env(),
            changed=keys.refresh if keys is not None else None,  # honoured here at once
        )
        sync: StateSync | None = None
        if settings.config.state.backend == "database":
            store = state_store or open_state_store(settings.config.database.effective_url)
            sync = StateSync(store, health_state, settings.config.state.sync_interval_s)
            await sync.start()
            gateway.ready_checks["state"] = store.ping
        # httpx logs every upstream request at INFO: per-request work on the hot path
        for name in ("httpx", "httpx2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        for warning in settings.warnings:
            log.warning("%s", warning)
        refresher = asyncio.create_task(_refresh(metrics)) if metrics.multiproc else None
        tune_gc(server.gc_gen0_threshold)
        DRAIN.arm(asyncio.get_running_loop(), drain_delay_s(server.drain_delay_s))
        if gateway.queue is not None:  # queued requests get queue_shutdown when the host stops
            DRAIN.on_stop.append(gateway.queue.close)
        hup = _watch_sighup(live)
        try:
            yield
        finally:
            DRAIN.disarm()
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if gateway.queue is not None:
                gateway.queue.close()
            if sync is not None:
                await sync.aclose()
            await upstream.aclose()
            if cache is not None:
                await asyncio.gather(*cache.pending, return_exceptions=True)
                await cache.backend.aclose()
            if exporter is not None:
                await asyncio.to_thread(exporter.close)
            await recorder.drain_and_close(settings.config.server.shutdown_grace_s)
            slot.release()
            if keys is not None:
                await keys.aclose()
            await keys_db.aclose()
            await log_store.aclose()
            if refresher is not None:
                refresher.cancel()
            metrics.close()
            if watch is not None:
                await watch.aclose()

    app = ArbstrApp(
        route_handlers=[
            chat_completions,
            embeddings,
            list_models,
            cost_estimate,
            list_providers,
            health,
            live,
            ready,
            ratelimits,
            metrics_route,
            stats,
            timeseries,
            list_requests,
            get_request,
            *ADMIN_ROUTES,
            *CONFIG_ROUTES,
            *ui_handlers(),
        ],
        template_config=ui_templates(),
        dependencies=dependencies,
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        lifespan=[lifespan],
        openapi_config=openapi_config(),
        debug=False,
    )
    document_proxy_routes(app)
    token = settings.admin_token.reveal() if settings.admin_token is not None else None
    app.state.ui_sessions = Sessions(token)  # signed by the admin token: a new token logs out
    return app


async def _start_keys(
    settings: Settings, store: KeyStore, log_store: RequestLog, gateway: Gateway
) -> KeyService | None:
    """Virtual keys when `[auth] enabled`: the mirror loaded, the meters seeded."""
    auth = settings.config.auth
    if not auth.enabled:
        return None
    shared_usage = settings.config.state.backend == "database" or (
        int(os.environ.get("ARBSTR_WORKERS", "1") or 1) > 1
    )
    keys = KeyService(
        store,
        log_store,
        settings.admin_token,
        shared_usage=shared_usage,
        failure_burst=auth.failure_burst,
        failure_window_s=auth.failure_window_s,
        refresh_interval_s=auth.refresh_interval_s,
        cipher=Cipher.from_env(),
    )
    keys.on_secret = gateway.shared.scrubber.add
    await keys.start()
    gateway.shared.keys = keys
    return keys


def _exporter(settings: Settings) -> Exporter | None:
    cfg = settings.config.export
    if not cfg.otlp_endpoint and not cfg.jsonl_path:
        return None
    return Exporter(
        otlp_endpoint=cfg.otlp_endpoint,
        jsonl_path=cfg.jsonl_path,
        queue_size=cfg.queue_size,
        service_name=cfg.service_name,
    )


def _open_cache(settings: Settings) -> CacheState | None:
    cfg = settings.config.cache
    if not cfg.enabled:
        return None
    backend = open_cache(
        cfg.backend,
        redis_url=cfg.redis_url,
        database_url=settings.config.database.effective_url,
        max_entries=cfg.max_entries,
        max_bytes=cfg.max_bytes,
    )
    return CacheState(backend, cfg.ttl_s, cfg.default_max_age_s, cfg.max_entry_bytes)


def _watch_sighup(live: LiveConfig) -> bool:
    """SIGHUP re-reads the config file (an invalid one is logged and changes nothing)."""
    if not live.source or not os.path.exists(live.source):
        return False

    def reload() -> None:
        try:
            live.reload()
        except ConfigError as exc:
            log.error("SIGHUP: config not reloaded: Configuration error: %s", exc)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        return False
    return True


async def _refresh(metrics: Metrics, every_s: float = 1.0) -> None:
    """Several workers: keep this worker's gauges fresh for scrapes served by the others."""
    while True:
        await asyncio.sleep(every_s)
        metrics.refresh()


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what startup built and run the young-generation collector less often.

    Every request allocates a few hundred container objects; with CPython's default threshold
    (700) that is a collection every couple of requests, and each full collection walks the
    whole framework. Frozen startup objects are never scanned again; a larger young threshold
    lets most request garbage die by reference count before a collection runs. `0` leaves the
    interpreter's defaults alone.
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def drain_delay_s(configured: float) -> float:
    """`arbstr serve --drain-delay` (through the environment, for every worker) or the config."""
    value = os.environ.get("ARBSTR_DRAIN_DELAY_S")
    return float(value) if value else configured


def spill_path(settings: Settings) -> str:
    """Where records go when the database cannot keep up: beside the SQLite file, or ./."""
    db = settings.config.database
    if db.spill_path:
        return db.spill_path
    url = db.effective_url
    if url.startswith("sqlite://") and (path := sqlite_path(url)) != ":memory:":
        return path + ".spill.jsonl"
    return "arbstr-spill.jsonl"


def __getattr__(name: str) -> Any:
    # Built on first access so `litestar --app arbstr.app:app`, uvicorn and granian can import
    # this module without side effects at import time.
    if name == "app":
        application = create_app(load_settings())
        globals()["app"] = application
        return application
    raise AttributeError(name)
