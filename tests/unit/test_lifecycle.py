"""The drain hook, per-process spill slots, readiness that times out, `${VAR}` in the
database URL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import FrameType

import pytest

from arbstr.config import ConfigError, parse_settings
from arbstr.gateway import _within
from arbstr.lifecycle import Drain
from arbstr.recording.spill import claim_spill_slot


async def test_sigterm_drains_first_and_calls_the_hosts_handler_after_the_delay() -> None:
    calls: list[int] = []

    def host(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, host)
    drain = Drain()
    try:
        drain.arm(asyncio.get_running_loop(), 0.2)
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert drain.draining and calls == []  # draining, still serving
        await asyncio.sleep(0.3)
        assert calls == [signal.SIGTERM]  # the host's shutdown, after the delay
        signal.raise_signal(signal.SIGTERM)  # a second one goes straight through
        assert calls == [signal.SIGTERM, signal.SIGTERM]
        drain.disarm()
        assert signal.getsignal(signal.SIGTERM) is host
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_default_handlers_are_left_alone() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        drain = Drain()
        drain.arm(asyncio.get_running_loop(), 1.0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        drain.disarm()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_each_process_claims_its_own_spill_slot(tmp_path: Path) -> None:
    base = tmp_path / "arbstr-spill.jsonl"
    first, second = claim_spill_slot(base), claim_spill_slot(base)
    assert first.path == base and second.path == tmp_path / "arbstr-spill.jsonl.1"
    first.release()
    assert claim_spill_slot(base).path == base  # a successor takes the freed slot (and its file)
    second.release()


def test_a_spill_directory_without_room_for_a_lock_gets_the_base_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "spill.jsonl"
    assert claim_spill_slot(missing).path == missing  # the recorder reports it unwritable


async def test_a_readiness_check_that_hangs_is_a_failed_check() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    async def raises() -> bool:
        raise OSError("connection refused")

    assert await _within(hangs(), 0.05) is False
    assert await _within(raises(), 1) is False


def test_the_database_url_takes_its_password_from_the_environment() -> None:
    text = '[database]\nurl = "postgresql://arbstr:${PGPASS}@db/arbstr"\n'
    settings = parse_settings(text, source="c.toml", env={"PGPASS": "s3cret"})
    assert settings.config.database.effective_url == "postgresql://arbstr:s3cret@db/arbstr"
    with pytest.raises(ConfigError, match=r"database.url: .*PGPASS is not set"):
        parse_settings(text, source="c.toml", env={})


def test_midstream_escalation_doubles_to_its_cap_and_a_completed_stream_resets_it() -> None:
    from arbstr.config import ReliabilityConfig
    from arbstr.reliability.health import ProviderHealth

    now = [0.0]
    cfg = ReliabilityConfig(midstream_failure_threshold=2, circuit_failure_threshold=1000)
    health = ProviderHealth(cfg, clock=lambda: now[0], wall=lambda: 1e9 + now[0])
    cooled = [health.stream_failed("p") for _ in range(12)]
    assert cooled == [
        None,
        120.0,
        None,
        240.0,
        None,
        480.0,
        None,
        960.0,
        None,
        1800.0,
        None,
        1800.0,
    ]
    assert health.cooling("p", "any-model") is not None
    health.stream_completed("p")
    assert [health.stream_failed("p") for _ in range(2)] == [None, 120.0]  # started over


def test_normalize_reasoning_fills_only_an_empty_content() -> None:
    from arbstr.schemas.reasoning import normalize_chat_body, normalize_chunk_event

    plain = b'{"choices":[{"message":{"content":"hi","reasoning_content":"x"}}]}'
    assert normalize_chat_body(plain) is plain
    empty = b'{"choices":[{"message":{"content":null,"reasoning":"because"}}]}'
    assert b'"content":"because"' in normalize_chat_body(empty)
    assert normalize_chat_body(b'not json "reasoning') == b'not json "reasoning'
    event = b'data: {"choices":[{"delta":{"reasoning_content":"r"}}]}\n\n'
    assert normalize_chunk_event(event) == (
        b'data: {"choices":[{"delta":{"reasoning_content":"r","content":"r"}}]}\n\n'
    )
    assert normalize_chunk_event(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"


async def test_queue_shutdown_answers_every_waiter_and_refuses_new_ones() -> None:
    import time

    from arbstr.pipeline.queue import QueueShutdown, WaitQueues

    queues = WaitQueues(max_size=10, max_wait_s=30)
    waiters = [asyncio.create_task(queues.wait("m", time.monotonic(), 60)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert queues.snapshot()[0]["depth"] == 3
    queues.close()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, QueueShutdown) for r in results)
    with pytest.raises(QueueShutdown):
        await queues.wait("m", time.monotonic(), 1)
    assert queues.snapshot() == [] and queues.refused["queue_shutdown"] == 4


async def test_the_queue_wakes_at_the_earliest_cooldown_end_reported() -> None:
    import time

    from arbstr.pipeline.queue import WaitQueues

    queues = WaitQueues(max_size=10, max_wait_s=30)
    t0 = time.monotonic()
    slow = asyncio.create_task(queues.wait("m", t0, 5.0))
    await asyncio.sleep(0.01)
    fast = asyncio.create_task(queues.wait("m", t0 + 0.001, 0.1))  # an earlier end: both wake
    await asyncio.wait_for(asyncio.gather(slow, fast), 1.0)
    assert time.monotonic() - t0 < 0.5
