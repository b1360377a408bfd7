"""The core gateway end to end: simulated providers, the gateway, the official openai SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from arbstr.sim import SimProfile

from .conftest import DEFAULT_HEAD, SimSpec, StackFactory


def sim_stats(url: str) -> dict[str, Any]:
    base = url.removesuffix("/v1")
    return httpx.get(f"{base}/_sim/stats", timeout=5).json()


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="client-key-not-forwarded", max_retries=0)


MESSAGES: list[Any] = [{"role": "user", "content": "Say hello to the gateway please"}]


def expected_cost(usage: Any, input_rate: float, output_rate: float, fee: float) -> float:
    return (usage.prompt_tokens * input_rate + usage.completion_tokens * output_rate) / 1000 + fee


def three(stack: StackFactory, cheap: SimProfile | None = None, **kw: Any) -> Any:
    return stack(
        [
            SimSpec("mid", input_rate=5, output_rate=15, base_fee=0.5),
            SimSpec("cheap", cheap or SimProfile(), input_rate=2, output_rate=6, base_fee=0.1),
            SimSpec("dear", input_rate=10, output_rate=30, base_fee=1),
        ],
        **kw,
    )


def test_cheapest_provider_answers_and_cost_header_matches(stack: StackFactory) -> None:
    s = three(stack)
    raw = sdk(s.url).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    completion = raw.parse()
    assert raw.headers["x-arbstr-provider"] == "cheap"
    assert completion.choices[0].message.content
    usage = completion.usage
    assert usage is not None
    cost = float(raw.headers["x-arbstr-cost-sats"])
    assert cost == pytest.approx(expected_cost(usage, 2, 6, 0.1), abs=1e-6)
    assert raw.headers["x-arbstr-attempts"] == "1"
    assert "x-arbstr-retries" not in raw.headers
    assert float(raw.headers["x-arbstr-overhead-ms"]) >= 0
    assert raw.headers["x-arbstr-request-id"]
    assert sim_stats(s.sims.urls[1])["chat_hits"] == 1
    assert sim_stats(s.sims.urls[0])["chat_hits"] == 0
    assert sim_stats(s.sims.urls[2])["chat_hits"] == 0
    record = s.sink.records[-1]
    assert record.id == raw.headers["x-arbstr-request-id"]
    assert record.provider == "cheap"
    assert record.cost_sats == pytest.approx(cost, abs=1e-6)
    assert record.success


def test_upstream_body_returns_byte_for_byte(stack: StackFactory) -> None:
    s = three(stack)
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "x_custom": [1, 2],
    }
    gw = httpx.post(f"{s.url}/v1/chat/completions", json=body, timeout=10)
    assert gw.status_code == 200
    seen = sim_stats(s.sims.urls[1])
    assert seen["last_body"]["x_custom"] == [1, 2]
    assert seen["last_body"]["tools"][0]["function"]["name"] == "f"
    assert seen["last_headers"]["idempotency-key"] == gw.headers["x-arbstr-request-id"]
    assert "client-key" not in str(seen["last_headers"])
    direct = httpx.post(f"{s.sims.urls[1]}/chat/completions", json=body, timeout=10)
    assert gw.headers["content-type"] == direct.headers["content-type"]
    assert gw.headers["content-length"] == str(len(gw.content))  # sized, not chunked
    assert "transfer-encoding" not in gw.headers
    # same shape (ids and timestamps differ per call)
    assert gw.json().keys() == direct.json().keys()


def test_policy_header_narrows_the_choice(stack: StackFactory) -> None:
    tail = """
[[policies.rules]]
name = "thrifty-output"
max_sats_per_1k_output = 20
[[policies.rules]]
name = "only-4o"
allowed_models = ["gpt-4o"]
"""
    s = stack(
        [
            SimSpec("input-cheap", input_rate=1, output_rate=40),
            SimSpec("output-cheap", input_rate=20, output_rate=10),
        ],
        tail=tail,
    )
    long = [{"role": "user", "content": "x" * 4000}]
    client = sdk(s.url)
    plain = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=long, max_tokens=1
    )
    assert plain.headers["x-arbstr-provider"] == "input-cheap"
    narrowed = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=long,
        max_tokens=1,
        extra_headers={"X-Arbstr-Policy": "thrifty-output"},
    )
    assert narrowed.headers["x-arbstr-provider"] == "output-cheap"
    assert s.sink.records[-1].policy == "thrifty-output"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=long, extra_headers={"X-Arbstr-Policy": "only-4o"}
        )
    assert info.value.code == "model_not_allowed"


def test_failing_cheapest_falls_back_with_retries_header(stack: StackFactory) -> None:
    s = three(stack, cheap=SimProfile(failure_rate=1.0, failure_status=500))
    raw = sdk(s.url).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.headers["x-arbstr-provider"] == "mid"
    assert raw.headers["x-arbstr-retries"] == "3/cheap"
    assert raw.headers["x-arbstr-attempts"] == "4"
    assert sim_stats(s.sims.urls[1])["chat_hits"] == 3
    rows = s.sink.records[-1].attempts
    assert [(r.provider, r.status) for r in rows] == [("cheap", 500)] * 3 + [("mid", 200)]


def test_all_providers_failing_is_502(stack: StackFactory) -> None:
    bad = SimProfile(failure_rate=1.0, failure_status=503)
    s = stack([SimSpec("a", bad), SimSpec("b", bad)], head=DEFAULT_HEAD_NO_RETRY)
    response = httpx.post(
        f"{s.url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=10
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "all_providers_failed"
    assert "a" in error["message"] and "b" in error["message"]
    assert response.headers["x-arbstr-request-id"]
    assert response.headers["x-arbstr-attempts"] == "2"


DEFAULT_HEAD_NO_RETRY = """
[database]
url = "memory://"
[reliability]
max_retries = 0
backoff_s = [0.0]
"""


def test_upstream_400_is_returned_unchanged(stack: StackFactory) -> None:
    s = stack([SimSpec("a", SimProfile(status_script=[400])), SimSpec("b")])
    response = httpx.post(
        f"{s.url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=10
    )
    assert response.status_code == 400
    assert response.headers["x-arbstr-provider"] == "a"
    assert sim_stats(s.sims.urls[1])["chat_hits"] == 0
    assert "error" in response.json()


def test_embeddings_routed_and_priced_on_input(stack: StackFactory) -> None:
    s = stack(
        [SimSpec("dear", input_rate=9, base_fee=1), SimSpec("cheap", input_rate=3, base_fee=1)]
    )
    raw = sdk(s.url).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="hello world"
    )
    result = raw.parse()
    assert raw.headers["x-arbstr-provider"] == "cheap"
    expected = result.usage.prompt_tokens * 3 / 1000 + 1
    assert float(raw.headers["x-arbstr-cost-sats"]) == pytest.approx(expected, abs=1e-6)


def test_models_cost_providers_health(stack: StackFactory) -> None:
    tail = '[[chains]]\nname = "free"\nentries = [{ provider = "a", model = "gpt-4o-mini" }]\n'
    s = stack(
        [
            SimSpec("a", models=["gpt-4o-mini"], api_key="sk-test-abcdefghijklmnop"),
            SimSpec("b", models=["gpt-4o"]),
        ],
        tail=tail,
    )
    with s.client() as c:
        models = c.get("/v1/models").json()
        assert models["object"] == "list"
        ids = [m["id"] for m in models["data"]]
        assert set(ids) == {"gpt-4o-mini", "gpt-4o", "free"}
        assert all(m["object"] == "model" for m in models["data"])
        cost = c.post("/v1/cost", json={"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 100})
        assert cost.status_code == 200
        body = cost.json()
        assert body["provider"] == "b"
        assert body["estimated_output_tokens"] == 100
        assert body["estimated_cost_sats"] == pytest.approx(
            (body["estimated_input_tokens"] * 10 + 100 * 30) / 1000
        )
        providers = c.get("/providers").json()["providers"]
        assert providers[0]["api_key"] == "sk-tes...***"
        assert providers[1]["api_key"] is None
        health = c.get("/health").json()
        assert health["status"] == "ok"
        assert health["providers"]["a"]["state"] == "closed"
        assert c.get("/health/live").status_code == 200
    assert sim_stats(s.sims.urls[1])["chat_hits"] == 0  # /v1/cost never calls upstream


def test_metrics_endpoint(stack: StackFactory) -> None:
    s = three(stack)
    sdk(s.url).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    httpx.post(f"{s.url}/v1/chat/completions", json={"model": "no-such"}, timeout=5)
    text = httpx.get(f"{s.url}/metrics", timeout=5).text
    assert (
        'arbstr_requests_total{model="other",provider="none",status="4xx",streaming="false"} 1.0'
        in text
    )
    assert (
        'arbstr_requests_total{model="gpt-4o-mini",provider="cheap",status="2xx",streaming="false"} 1.0'
        in text
    )
    assert 'arbstr_errors_total{code="invalid_request"} 1.0' in text
    assert 'arbstr_circuit_state{provider="cheap"} 0.0' in text
    assert "arbstr_gateway_overhead_seconds_bucket" in text
    assert 'arbstr_cost_sats_total{model="gpt-4o-mini",provider="cheap"}' in text


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
def test_both_upstream_transports_proxy_json_and_streams(
    stack: StackFactory, transport: str
) -> None:
    head = DEFAULT_HEAD + f'[server]\nupstream_transport = "{transport}"\n'
    s = stack(
        [SimSpec("down", SimProfile(failure_rate=1.0, failure_status=503)), SimSpec("up")],
        head=head,
    )
    client = sdk(s.url)
    for _ in range(3):  # reused keep-alive connections, a failover each time
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert raw.headers["x-arbstr-provider"] == "up"
        assert raw.parse().choices[0].message.content
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert s.last_record(count=4).stream_status == "completed"
