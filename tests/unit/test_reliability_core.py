"""Reliability state machines with an injected clock: no sleeping."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from arbstr.config import RateLimits, ReliabilityConfig
from arbstr.errors import AllCircuitsOpen, AllProvidersFailed, AllRateLimited
from arbstr.recording.record import AttemptRow
from arbstr.reliability.circuit import Admission, BreakerRegistry, CircuitBreaker, State
from arbstr.reliability.cooldown import CooldownTracker, ManualLimiter
from arbstr.reliability.ratelimit_headers import (
    Quota,
    parse_duration,
    parse_quota,
    parse_retry_after,
)
from arbstr.reliability.retry import (
    Outcome,
    RetryHeader,
    backoff,
    classify,
    cooldown_for,
    counts_against_circuit,
    exhaustion_error,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_probes_once() -> None:
    clock = Clock()
    b = CircuitBreaker(3, 30, clock)
    for _ in range(2):
        assert b.try_acquire() is Admission.ALLOWED
        b.record_failure()
    assert b.current() is State.CLOSED
    b.record_failure()
    assert b.current() is State.OPEN
    assert b.try_acquire() is Admission.REJECTED
    clock.now += 29.9
    assert b.try_acquire() is Admission.REJECTED
    clock.now += 0.2
    assert b.current() is State.HALF_OPEN
    assert b.try_acquire() is Admission.PROBE
    assert b.try_acquire() is Admission.REJECTED  # concurrent callers skip during the probe
    b.record_success()
    assert b.current() is State.CLOSED
    assert b.failure_count == 0
    assert b.trip_count == 1


def test_probe_failure_reopens_with_fresh_timer_and_release_counts_as_failure() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 10, clock)
    b.record_failure()
    clock.now += 10
    assert b.try_acquire() is Admission.PROBE
    b.record_failure()
    assert b.current() is State.OPEN
    assert b.open_until == clock.now + 10
    clock.now += 10
    assert b.try_acquire() is Admission.PROBE
    b.release_probe()
    assert b.current() is State.OPEN
    assert b.trip_count == 3


def test_success_resets_consecutive_count() -> None:
    b = CircuitBreaker(3, 30, Clock())
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.current() is State.CLOSED


def test_registry_snapshot_and_remote_state() -> None:
    clock = Clock()
    reg = BreakerRegistry(ReliabilityConfig(), clock)
    reg.get("a")
    reg.apply_remote("b", "open", clock.now + 5, 3)
    snap = reg.snapshot()
    assert snap["a"].state == "closed"
    assert snap["b"].state == "open"
    assert reg.get("b").try_acquire() is Admission.REJECTED
    reg.apply_remote("b", "closed", None, 0)  # a closed remote never re-closes a local open
    assert reg.get("b").current() is State.OPEN


@pytest.mark.parametrize(
    ("status", "kind", "action"),
    [
        (200, None, Outcome.SUCCESS),
        (None, "connect", Outcome.RETRY_SAME),
        (None, "timeout", Outcome.RETRY_SAME),
        (None, "read", Outcome.NEXT),
        (500, None, Outcome.RETRY_SAME),
        (502, None, Outcome.RETRY_SAME),
        (503, None, Outcome.RETRY_SAME),
        (504, None, Outcome.RETRY_SAME),
        (501, None, Outcome.NEXT),
        (429, None, Outcome.NEXT_COOLDOWN),
        (402, None, Outcome.NEXT_COOLDOWN),
        (401, None, Outcome.NEXT_KEY_PROBLEM),
        (403, None, Outcome.NEXT_KEY_PROBLEM),
        (400, None, Outcome.RETURN_TO_CLIENT),
        (404, None, Outcome.RETURN_TO_CLIENT),
        (413, None, Outcome.RETURN_TO_CLIENT),
        (422, None, Outcome.RETURN_TO_CLIENT),
    ],
)
def test_classify(status: int | None, kind: str | None, action: Outcome) -> None:
    assert classify(status, kind) is action
    assert counts_against_circuit(action, status) == (action in (Outcome.RETRY_SAME, Outcome.NEXT))


def test_backoff_and_deadline() -> None:
    cfg = ReliabilityConfig(backoff_s=[1.0, 2.0])
    assert backoff(0, cfg, None, 30) == 1.0
    assert backoff(1, cfg, None, 30) == 2.0
    assert backoff(5, cfg, None, 30) == 2.0
    assert backoff(0, cfg, 0.25, 30) == 0.25  # honour a shorter Retry-After
    assert backoff(1, cfg, None, 1.5) is None  # would pass the deadline


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m23.456s", 383.456),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("2h30m0s", 9000.0),
        ("0s", 0.0),
        ("7", 7.0),
        ("garbage", None),
        ("", None),
        ("1x", None),
        ("-3", None),
        ("nan", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    result = parse_duration(text)
    assert result == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(formatdate(now + 20, usegmt=True), now) == pytest.approx(20, abs=1)
    assert parse_retry_after(formatdate(now - 20, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None


def test_parse_quota_dialects() -> None:
    now = 1_700_000_000.0
    openai = parse_quota(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-remaining-tokens": "100",
            "x-ratelimit-limit-tokens": "nan",
        },
        now,
    )
    assert openai == Quota(remaining_requests=0, remaining_tokens=100, reset_requests_s=360.0)
    assert openai.exhausted_for() == 360.0
    router = parse_quota(
        {
            "x-ratelimit-remaining": "0",
            "x-ratelimit-limit": "20",
            "x-ratelimit-reset": str(int((now + 12) * 1000)),
        },
        now,
    )
    assert router is not None
    assert router.exhausted_for() == pytest.approx(12)
    cerebras = parse_quota(
        {
            "x-ratelimit-remaining-requests-day": "5",
            "x-ratelimit-remaining-tokens-minute": "0",
            "x-ratelimit-reset-tokens-minute": "33.5",
        },
        now,
    )
    assert cerebras is not None
    assert cerebras.exhausted_for() == 33.5
    assert parse_quota({"content-type": "application/json"}, now) is None


def test_cooldowns_model_and_provider_wide() -> None:
    clock = Clock()
    cd = CooldownTracker(clock)
    cd.set(("a", "m1"), 10, "429 retry-after")
    assert cd.active("a", "m1") is not None
    assert cd.active("a", "m2") is None
    cd.set(("a", None), 5, "402 payment required")
    assert cd.active("a", "m2") is not None
    clock.now += 6
    assert cd.active("a", "m2") is None
    assert cd.active("a", "m1") is not None
    clock.now += 5
    assert cd.active("a", "m1") is None


def test_proactive_quota_exhaustion() -> None:
    clock = Clock()
    cd = CooldownTracker(clock)
    cd.record_quota(("a", "m"), Quota(remaining_requests=0, reset_requests_s=42))
    cooling = cd.active("a", "m")
    assert cooling is not None
    assert cooling.reason == "remaining requests 0"
    assert cooling.until == clock.now + 42
    rows = cd.snapshot(wall=lambda: 5000.0)
    assert rows[0]["status"] == "exhausted"
    assert rows[0]["cooldown_until"] == pytest.approx(5042.0)
    cd.record_quota(("b", "m"), Quota(remaining_requests=9))
    assert next(r for r in cd.snapshot() if r["provider"] == "b")["status"] == "tracking"


def test_manual_windows_rpm_tpm_rpd_and_rollover() -> None:
    clock = Clock()
    lim = ManualLimiter(clock)
    lim.configure("a", None, RateLimits(rpm=2, tpm=100, rpd=4))
    lim.record("a", "m", 10)
    lim.record("a", "m", 10)
    blocked = lim.admit("a", "m")
    assert blocked is not None
    assert blocked.reason == "manual limit: RPM exceeded"
    assert blocked.until == pytest.approx(clock.now + 60)
    clock.now += 61
    assert lim.admit("a", "m") is None
    lim.record("a", "m", 200)
    tpm = lim.admit("a", "m")
    assert tpm is not None
    assert tpm.reason == "manual limit: TPM exceeded"
    clock.now += 61
    lim.record("a", "m", 1)
    rpd = lim.admit("a", "m")
    assert rpd is not None
    assert rpd.reason == "manual limit: daily request limit exceeded"
    assert lim.admit("other", "m") is None


def test_cooldown_for() -> None:
    cfg = ReliabilityConfig(cooldown_default_s=60, cooldown_402_s=300)
    assert cooldown_for(402, {}, cfg, 0) == (300, "402 payment required")
    assert cooldown_for(429, {"retry-after": "7"}, cfg, 0) == (7.0, "429 retry-after")
    assert cooldown_for(429, {"x-ratelimit-reset-requests": "1m"}, cfg, 0)[0] == 60.0
    assert cooldown_for(429, {}, cfg, 0) == (60, "429 (default cooldown)")


def test_retries_header() -> None:
    r = RetryHeader()
    assert r.header() is None
    for name in ("alpha", "alpha", "beta", "alpha"):
        r.add(name)
    assert r.header() == "3/alpha, 1/beta"


def test_exhaustion_rules() -> None:
    clock = Clock()
    cd = CooldownTracker(clock)
    cd.set(("a", "m"), 12, "429")
    limited = [
        AttemptRow(provider="a", upstream_model="m", skipped="cooldown"),
        AttemptRow(provider="b", upstream_model="m", status=429),
    ]
    err = exhaustion_error(limited, cd, 0)
    assert isinstance(err, AllRateLimited)
    assert err.retry_after == pytest.approx(12)
    opened = [AttemptRow(provider="a", upstream_model="m", skipped="circuit_open")]
    err = exhaustion_error(opened, cd, 0, circuit_wait=9)
    assert isinstance(err, AllCircuitsOpen)
    assert err.retry_after == 9
    mixed = [
        AttemptRow(provider="a", upstream_model="m", status=500, error="HTTP 500"),
        AttemptRow(provider="b", upstream_model="m", skipped="cooldown"),
    ]
    err = exhaustion_error(mixed, cd, 0)
    assert isinstance(err, AllProvidersFailed)
    assert err.message == "all providers failed: a: HTTP 500, b: skipped (cooldown)"
