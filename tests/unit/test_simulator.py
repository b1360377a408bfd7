"""The simulated provider over a real socket: JSON, SSE, faults, counters."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from arbstr.sim import SimCluster, SimProfile, run_in_thread

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 40}]}


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with run_in_thread([SimProfile()]) as cluster:
        yield cluster


def base(cluster: SimCluster) -> str:
    return cluster.urls[0].removesuffix("/v1")


def set_profile(cluster: SimCluster, **fields: object) -> None:
    httpx.post(f"{base(cluster)}/_sim/profile", json=fields, timeout=5).raise_for_status()


def events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def test_chat_json_and_deterministic_usage(sim: SimCluster) -> None:
    client = openai.OpenAI(base_url=sim.urls[0], api_key="k", max_retries=0)
    done = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])  # type: ignore[arg-type]
    assert done.system_fingerprint == "arbstr-sim"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (10, 10)
    set_profile(sim, completion_tokens=3, cached_tokens=4, usage_cost=0.5)
    body = httpx.post(f"{sim.urls[0]}/chat/completions", json=CHAT).json()
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    assert body["usage"]["cost"] == 0.5


def test_streaming_with_and_without_usage_chunk(sim: SimCluster) -> None:
    plain = httpx.post(f"{sim.urls[0]}/chat/completions", json=dict(CHAT, stream=True))
    assert plain.headers["content-type"] == "text/event-stream"
    evs = events(plain.text)
    assert evs[-1] == "[DONE]"
    assert len(evs) == 11
    with_usage = httpx.post(
        f"{sim.urls[0]}/chat/completions",
        json=dict(CHAT, stream=True, stream_options={"include_usage": True}),
    )
    usage_chunk = json.loads(events(with_usage.text)[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 10
    client = openai.OpenAI(base_url=sim.urls[0], api_key="k", max_retries=0)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="m", messages=CHAT["messages"], stream=True)
        if c.choices
    )  # type: ignore[arg-type]
    assert text.startswith("tok0 ")


def test_status_script_rate_limit_and_headers(sim: SimCluster) -> None:
    set_profile(
        sim,
        status_script=[500, 429, 200],
        retry_after="7",
        ratelimit_headers={"x-ratelimit-remaining-requests": "5"},
    )
    first = httpx.post(f"{sim.urls[0]}/chat/completions", json=CHAT)
    assert first.status_code == 500
    assert first.json()["error"]["type"] == "server_error"
    limited = httpx.post(f"{sim.urls[0]}/chat/completions", json=CHAT)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    ok = httpx.post(f"{sim.urls[0]}/chat/completions", json=CHAT)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-remaining-requests"] == "5"
    stats = httpx.get(f"{base(sim)}/_sim/stats").json()
    assert stats["chat_hits"] == 3


def test_faults(sim: SimCluster) -> None:
    set_profile(sim, malformed=True)
    assert not httpx.post(f"{sim.urls[0]}/chat/completions", json=CHAT).text.startswith("{")
    set_profile(sim, garbage_after_chunks=2)
    garbled = httpx.post(f"{sim.urls[0]}/chat/completions", json=dict(CHAT, stream=True))
    assert "data: {not json" in garbled.text
    set_profile(sim, cut_after_chunks=2)
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{sim.urls[0]}/chat/completions", json=dict(CHAT, stream=True))
    set_profile(sim, stall_after_chunks=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sim.urls[0]}/chat/completions", json=dict(CHAT, stream=True), timeout=0.3)
    set_profile(sim, hang=True)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sim.urls[0]}/chat/completions", json=CHAT, timeout=0.3)


def test_embeddings_models_404_405_keepalive(sim: SimCluster) -> None:
    with httpx.Client(base_url=sim.urls[0]) as c:
        emb = c.post("/embeddings", json={"model": "e", "input": ["a", "bb"]}).json()
        assert len(emb["data"]) == 2
        assert emb["usage"]["prompt_tokens"] >= 1
        assert c.get("/models").json()["data"][0]["owned_by"] == "arbstr-sim"
        assert c.get("/nothing").status_code == 404
        assert c.get("/chat/completions").status_code == 405
        for _ in range(200):  # one keep-alive connection carries them all
            assert c.post("/chat/completions", json=CHAT).status_code == 200
    assert httpx.get(f"{base(sim)}/_sim/stats").json()["chat_hits"] == 200
