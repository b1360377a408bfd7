"""The core, pinned by fast unit tests: the attempt loop, StateSync and finish, with a fake
`send`, an injected clock and in-memory stores (no sockets)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from arbstr.config import parse_settings
from arbstr.errors import AllCircuitsOpen, AllProvidersFailed, AllRateLimited, UpstreamTimeout
from arbstr.pipeline.admit import CHAT_STEPS
from arbstr.pipeline.attempts import run_attempts
from arbstr.pipeline.context import RequestContext, RequestMeta, Shared
from arbstr.pipeline.finish import json_answer, refused
from arbstr.recording.record import MemorySink
from arbstr.reliability.health import ProviderHealth
from arbstr.reliability.sync import StateSync
from arbstr.routing.resolve import Candidate
from arbstr.schemas.usage import read_usage
from arbstr.stores.state import MemoryStateStore
from arbstr.upstream.client import Upstream

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
OK = (
    b'{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}],'
    b'"usage":{"prompt_tokens":1000,"completion_tokens":1000,"total_tokens":2000}}'
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shared_for(extra: str = "", clock: Clock | None = None) -> tuple[Shared, MemorySink]:
    text = f"""
[server]
request_timeout_s = 30
[reliability]
backoff_s = [0.0]
max_retries = 2
circuit_failure_threshold = 2
circuit_open_s = 10
{extra}
[[providers]]
name = "a"
url = "http://a.invalid/v1"
input_rate = 1
output_rate = 2
[[providers]]
name = "b"
url = "http://b.invalid/v1"
input_rate = 10
output_rate = 20
"""
    settings = parse_settings(text, env={})
    clock = clock or Clock()
    health = ProviderHealth(settings.config.reliability, settings.providers, clock=clock)
    sink = MemorySink()
    upstream = Upstream(connect_timeout_s=1, read_timeout_s=1)
    return Shared(settings, upstream, sink, health), sink


def context(shared: Shared) -> RequestContext:
    meta = RequestMeta("req-1", shared.health.clock())
    ctx = RequestContext.start(BODY, meta, "chat")
    for step in CHAT_STEPS:  # no step waits here (no virtual keys)
        assert step(shared, ctx) is None
    return ctx


class FakeSend:
    """Answers per provider from a script of statuses (the last one repeats); counts calls."""

    def __init__(self, **scripts: list[int | str]) -> None:
        self.scripts = scripts
        self.calls: list[str] = []

    async def __call__(self, cand: Candidate, timeout_s: float) -> tuple[httpx.Response, bytes]:
        name = cand.provider.name
        self.calls.append(name)
        script = self.scripts[name]
        step = script.pop(0) if len(script) > 1 else script[0]
        if step == "hang":
            await asyncio.sleep(3600)
        if step == "reset":
            raise httpx.ConnectError("connection refused")
        status = int(step)
        headers = {"retry-after": "30"} if status == 429 else {}
        body = OK if status == 200 else b'{"error":{"message":"no"}}'
        return httpx.Response(status, headers=headers, content=body), body


async def test_retry_the_same_provider_then_answer() -> None:
    shared, _ = shared_for()
    ctx = context(shared)
    send = FakeSend(a=[500, 200], b=[200])
    result = await run_attempts(shared, ctx, send)
    assert result.success and result.candidate.provider.name == "a"
    assert [(r.provider, r.status) for r in ctx.record.attempts] == [("a", 500), ("a", 200)]
    assert ctx.retries is not None and ctx.retries.header() == "1/a"


async def test_fall_back_after_the_retries() -> None:
    shared, _ = shared_for()
    ctx = context(shared)
    send = FakeSend(a=["reset"], b=[200])
    result = await run_attempts(shared, ctx, send)
    assert result.candidate.provider.name == "b"
    # two failures open a's circuit (threshold 2): its last retry is not admitted, b answers
    assert send.calls == ["a", "a", "b"]
    assert [r.error for r in ctx.record.attempts][:2] == ["connection error"] * 2


async def test_a_cooling_provider_is_skipped_without_a_call() -> None:
    shared, _ = shared_for()
    send = FakeSend(a=[429], b=[200])
    await run_attempts(shared, context(shared), send)
    assert send.calls == ["a", "b"]
    ctx = context(shared)
    await run_attempts(shared, ctx, send)
    assert send.calls == ["a", "b", "b"]
    assert ctx.record.attempts[0].skipped == "cooldown"


async def test_all_rate_limited_and_all_failed() -> None:
    shared, _ = shared_for()
    with pytest.raises(AllRateLimited) as limited:
        await run_attempts(shared, context(shared), FakeSend(a=[429], b=[429]))
    assert limited.value.retry_after == pytest.approx(30, abs=1)
    shared, _ = shared_for()
    with pytest.raises(AllProvidersFailed):
        await run_attempts(shared, context(shared), FakeSend(a=[502], b=[503]))


async def test_circuit_opens_then_admits_one_probe_after_the_open_period() -> None:
    clock = Clock()
    shared, _ = shared_for(clock=clock)
    send = FakeSend(a=[500], b=[500])
    with pytest.raises(AllProvidersFailed):
        await run_attempts(shared, context(shared), send)  # 2 failures each: both open
    calls = len(send.calls)
    with pytest.raises(AllCircuitsOpen) as opened:
        await run_attempts(shared, context(shared), send)
    assert len(send.calls) == calls  # nobody was called
    assert opened.value.retry_after == pytest.approx(10, abs=0.1)
    clock.now += 11
    send.scripts = {"a": [200], "b": [200]}
    result = await run_attempts(shared, context(shared), send)
    assert result.success and send.calls[calls:] == ["a"]  # the probe, once
    assert shared.health.circuit_states(["a", "b"])["a"] == "closed"


async def test_the_deadline_is_a_504() -> None:
    shared, _ = shared_for(clock=time.monotonic)  # type: ignore[arg-type]
    shared.request_timeout_s = 0.05
    ctx = context(shared)
    with pytest.raises(UpstreamTimeout):
        await run_attempts(shared, ctx, FakeSend(a=["hang"], b=["hang"]))
    assert ctx.record.attempts[0].error == "timeout"


async def test_finish_json_headers_and_record() -> None:
    shared, sink = shared_for()
    ctx = context(shared)
    result = await run_attempts(shared, ctx, FakeSend(a=[200], b=[200]))
    answer = json_answer(shared, ctx, result, read_usage(result.extra))
    headers = dict(answer.headers)
    assert answer.body == OK and answer.status == 200
    assert headers[b"x-arbstr-provider"] == b"a"
    assert headers[b"x-arbstr-cost-sats"] == b"3"  # (1000*1 + 1000*2)/1000
    assert headers[b"x-arbstr-attempts"] == b"1"
    assert b"x-arbstr-retries" not in headers
    (record,) = sink.records
    assert record.success and record.cost_sats == 3.0
    assert record.savings_sats == pytest.approx(27.0)  # b would have cost 30
    assert record.overhead_ms is not None and record.latency_ms is not None


async def test_finish_refused_records_the_attempts_once() -> None:
    shared, sink = shared_for()
    ctx = context(shared)
    with pytest.raises(AllRateLimited) as limited:
        await run_attempts(shared, ctx, FakeSend(a=[429], b=[429]))
    answer = refused(shared, ctx, limited.value)
    headers = dict(answer.headers)
    assert answer.status == 429 and int(headers[b"retry-after"]) >= 29
    assert headers[b"x-arbstr-retries"] == b"1/a, 1/b"
    (record,) = sink.records
    assert record.error_code == "all_providers_rate_limited" and len(record.attempts) == 2


async def test_state_sync_shares_circuits_and_cooldowns_between_replicas() -> None:
    store = MemoryStateStore()
    one, _ = shared_for()
    two, _ = shared_for()
    sync_one = StateSync(store, one.health)
    sync_two = StateSync(store, two.health)
    one.health.record_failure("a")
    one.health.record_failure("a")  # threshold 2: open
    one.health.cool_down(("b", "m"), 30, "429")
    await sync_one.sync_once()
    await sync_two.sync_once()
    assert two.health.circuit_states(["a"])["a"] == "open"
    assert two.health.cooling("b", "m") is not None
    # nothing changed since: nothing is published again
    assert one.health.take_changes() == ([], [])


async def test_a_cancelled_probe_is_released() -> None:
    clock = Clock()
    shared, _ = shared_for(clock=clock)
    with pytest.raises(AllProvidersFailed):
        await run_attempts(shared, context(shared), FakeSend(a=[500], b=[500]))
    clock.now += 11  # both half-open: the next call of `a` is its one probe

    async def cancelled(cand: Candidate, timeout_s: float) -> tuple[httpx.Response, bytes]:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_attempts(shared, context(shared), cancelled)
    # the probe was given back (a released probe counts as a failed one: `a` is open again
    # for its open period), so after that period `a` is probed again, not stuck half-open
    clock.now += 11
    result = await run_attempts(shared, context(shared), FakeSend(a=[200], b=[200]))
    assert result.candidate.provider.name == "a"


async def test_a_failed_publish_is_sent_again() -> None:
    class Flaky(MemoryStateStore):
        down = True

        async def publish(self, rows: Any) -> None:
            if self.down:
                raise ConnectionError("database unavailable")
            await super().publish(rows)

    store = Flaky()
    one, _ = shared_for()
    sync = StateSync(store, one.health)
    one.health.record_failure("a")
    one.health.record_failure("a")
    with pytest.raises(ConnectionError):
        await sync.sync_once()
    store.down = False
    await sync.sync_once()
    assert any(row.provider == "a" and row.kind == "circuit" for row in store.rows.values())
