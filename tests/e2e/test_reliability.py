"""Reliability end to end: retries, cooldowns, proactive rate limits, circuits, chains."""

from __future__ import annotations

import time
from typing import Any

import httpx

from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
HEAD = """
[database]
url = "memory://"
[reliability]
backoff_s = [0.0]
circuit_open_s = 0.5
cooldown_default_s = 30
"""


def hits(url: str) -> int:
    return int(httpx.get(url.removesuffix("/v1") + "/_sim/stats", timeout=5).json()["chat_hits"])


def post(url: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body or CHAT, timeout=10)


def test_500_then_200_is_retried_on_the_same_provider(stack: StackFactory) -> None:
    s = stack(
        [SimSpec("a", SimProfile(status_script=[500]), input_rate=1), SimSpec("b")], head=HEAD
    )
    response = post(s.url)
    assert response.status_code == 200
    assert response.headers["x-arbstr-provider"] == "a"
    assert response.headers["x-arbstr-retries"] == "1/a"
    assert response.headers["x-arbstr-attempts"] == "2"
    assert hits(s.sims.urls[1]) == 0


def test_429_cools_the_provider_down_and_it_is_not_called_again(stack: StackFactory) -> None:
    limited = SimProfile(rate_limited=True, retry_after="30")
    s = stack([SimSpec("a", limited, input_rate=1), SimSpec("b", input_rate=5)], head=HEAD)
    first = post(s.url)
    assert first.headers["x-arbstr-provider"] == "b"
    assert first.headers["x-arbstr-retries"] == "1/a"
    for _ in range(3):
        again = post(s.url)
        assert again.headers["x-arbstr-provider"] == "b"
        assert "x-arbstr-retries" not in again.headers
        assert again.headers["x-arbstr-attempts"] == "1"
    assert hits(s.sims.urls[0]) == 1
    skipped = s.sink.records[-1].attempts[0]
    assert (skipped.provider, skipped.skipped) == ("a", "cooldown")
    health = httpx.get(f"{s.url}/health").json()
    assert health["status"] == "degraded"
    limits = httpx.get(f"{s.url}/v1/ratelimits").json()["ratelimits"]
    row = next(r for r in limits if r["provider"] == "a")
    assert row["status"] == "exhausted"
    assert row["cooldown_until"] > time.time() + 20


def test_all_rate_limited_is_429_with_retry_after(stack: StackFactory) -> None:
    limited = SimProfile(rate_limited=True, retry_after="7")
    s = stack([SimSpec("a", limited), SimSpec("b", limited)], head=HEAD)
    response = post(s.url)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "all_providers_rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 7
    again = post(s.url)
    assert again.status_code == 429
    assert again.headers["x-arbstr-attempts"] == "0"
    assert hits(s.sims.urls[0]) == 1


def test_remaining_zero_prevents_the_next_call(stack: StackFactory) -> None:
    quota = SimProfile(
        ratelimit_headers={
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m",
        }
    )
    s = stack([SimSpec("a", quota, input_rate=1), SimSpec("b", input_rate=5)], head=HEAD)
    assert post(s.url).headers["x-arbstr-provider"] == "a"
    assert post(s.url).headers["x-arbstr-provider"] == "b"
    assert hits(s.sims.urls[0]) == 1
    limits = httpx.get(f"{s.url}/v1/ratelimits").json()["ratelimits"]
    row = next(r for r in limits if r["provider"] == "a")
    assert row["reason"] == "remaining requests 0"
    assert row["quota"]["remaining_requests"] == 0


def test_circuit_opens_after_three_failures_then_one_probe(stack: StackFactory) -> None:
    head = HEAD.replace("backoff_s = [0.0]", "backoff_s = [0.0]\nmax_retries = 0")
    s = stack(
        [
            SimSpec("a", SimProfile(status_script=[500, 500, 500]), input_rate=1),
            SimSpec("b", input_rate=5),
        ],
        head=head,
    )
    for _ in range(3):
        assert post(s.url).headers["x-arbstr-provider"] == "b"
    health = httpx.get(f"{s.url}/health").json()
    assert health["status"] == "degraded"
    assert health["providers"]["a"] == {"state": "open", "failure_count": 3}
    post(s.url)
    assert hits(s.sims.urls[0]) == 3  # open: skipped without a call
    assert s.sink.records[-1].attempts[0].skipped == "circuit_open"
    time.sleep(0.6)
    probe = post(s.url)
    assert probe.headers["x-arbstr-provider"] == "a"  # the probe succeeds and closes it
    assert hits(s.sims.urls[0]) == 4
    assert httpx.get(f"{s.url}/health").json()["providers"]["a"]["state"] == "closed"


def test_every_circuit_open_is_503_and_health_unhealthy(stack: StackFactory) -> None:
    head = HEAD.replace("circuit_open_s = 0.5", "circuit_open_s = 30")
    bad = SimProfile(failure_rate=1.0)
    s = stack([SimSpec("a", bad), SimSpec("b", bad)], head=head)
    assert post(s.url).status_code == 502
    response = post(s.url)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "all_circuits_open"
    assert 20 <= int(response.headers["retry-after"]) <= 30
    health = httpx.get(f"{s.url}/health")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"


def test_chain_walks_entries_in_order_with_their_own_models(stack: StackFactory) -> None:
    tail = """
[[chains]]
name = "free"
entries = [{ provider = "dear", model = "llama-small" }, { provider = "cheap", model = "gpt-4o-mini" }]
"""
    s = stack(
        [
            SimSpec("cheap", SimProfile(), input_rate=1),
            SimSpec("dear", SimProfile(rate_limited=True), input_rate=50),
        ],
        head=HEAD,
        tail=tail,
    )
    response = post(s.url, dict(CHAT, model="free"))
    assert response.status_code == 200
    assert response.headers["x-arbstr-provider"] == "cheap"
    assert response.headers["x-arbstr-retries"] == "1/dear"
    body = httpx.get(s.sims.urls[1].removesuffix("/v1") + "/_sim/stats").json()["last_body"]
    assert body["model"] == "llama-small"
    body = httpx.get(s.sims.urls[0].removesuffix("/v1") + "/_sim/stats").json()["last_body"]
    assert body["model"] == "gpt-4o-mini"
    record = s.sink.records[-1]
    assert (record.chain, record.upstream_model) == ("free", "gpt-4o-mini")


def test_401_from_upstream_moves_on(stack: StackFactory) -> None:
    s = stack(
        [SimSpec("a", SimProfile(status_script=[401]), input_rate=1), SimSpec("b")], head=HEAD
    )
    response = post(s.url)
    assert response.headers["x-arbstr-provider"] == "b"
    assert response.headers["x-arbstr-retries"] == "1/a"


def test_overall_deadline_is_504_with_retries_header(stack: StackFactory) -> None:
    head = """
[server]
request_timeout_s = 0.5
[database]
url = "memory://"
[reliability]
backoff_s = [0.0]
"""
    s = stack([SimSpec("a", SimProfile(hang=True))], head=head)
    started = time.monotonic()
    response = post(s.url)
    assert time.monotonic() - started < 3
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert response.headers["x-arbstr-retries"].endswith("/a")


def test_manual_rate_limits_apply_when_no_headers(stack: StackFactory) -> None:
    s = stack(
        [
            SimSpec("limited", input_rate=1, extra="rate_limits = { rpm = 2, tpm = 100000 }"),
            SimSpec("other", input_rate=5),
        ],
        head=HEAD,
    )
    providers = [post(s.url).headers["x-arbstr-provider"] for _ in range(4)]
    assert providers == ["limited", "limited", "other", "other"]
    assert hits(s.sims.urls[0]) == 2
    skipped = s.sink.records[-1].attempts[0]
    assert (skipped.provider, skipped.skipped) == ("limited", "cooldown")
