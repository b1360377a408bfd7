"""The simulated provider over a real loopback socket: wire format, behaviours, counters."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import arbstr.sim
from arbstr.sim import SimProfile, SimServer, builtin_profile, run_in_thread
from arbstr.sim.__main__ import _parser, parse_profile

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "x" * 21},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "y" * 10},
            {"type": "image_url", "image_url": {"url": "data:,"}},
        ],
    },
    {"role": "assistant", "content": None},
    {"role": "user", "content": "z" * 13},
]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
STREAM = {**CHAT, "stream": True}
PROMPT_TOKENS = (21 + 10 + 13) // 4  # every message's text, four characters a token


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=5) as c:
        yield c


async def read_stream(client: httpx.AsyncClient, seen: list[str]) -> None:
    """Read a streamed chat answer line by line into `seen`."""
    async with client.stream("POST", "/chat/completions", json=STREAM) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            seen.append(line)


def sse(raw: str) -> list[str]:
    """The data of each event, checking every event ends with a blank line."""
    assert raw.endswith("\n\n")
    events = raw.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events), events
    return [e[6:] for e in events]


def test_public_api() -> None:
    assert sorted(arbstr.sim.__all__) == [
        "BUILTIN_PROFILES",
        "SimCluster",
        "SimProfile",
        "SimServer",
        "builtin_profile",
        "run_in_thread",
    ]
    assert set(arbstr.sim.BUILTIN_PROFILES) == {"healthy", "flaky", "ratelimited", "slow"}


async def test_chat_json_usage_formula_with_the_openai_sdk(sim: SimServer) -> None:
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="k", max_retries=0) as sdk:
        done = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert done.id.startswith("chatcmpl-sim-")
    assert (done.object, done.model, done.system_fingerprint) == (
        "chat.completion",
        "gpt-4o",
        "arbstr-sim",
    )
    assert abs(done.created - time.time()) < 5
    assert "arbstr-sim" in (done.choices[0].message.content or "")
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (PROMPT_TOKENS, 10)
    assert done.usage.total_tokens == PROMPT_TOKENS + 10
    assert done.usage.prompt_tokens_details is not None
    assert done.usage.prompt_tokens_details.cached_tokens == 0


async def test_usage_knobs(sim: SimServer, client: httpx.AsyncClient) -> None:
    tiny = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert (await client.post("/chat/completions", json=tiny)).json()["usage"]["prompt_tokens"] == 1
    sim.profile = SimProfile(completion_tokens=3, cached_tokens=99, usage_cost=0.25)
    usage = (await client.post("/chat/completions", json=CHAT)).json()["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["prompt_tokens_details"]["cached_tokens"] == PROMPT_TOKENS  # capped
    assert usage["cost"] == 0.25
    sim.profile = SimProfile(omit_usage=True)
    assert "usage" not in (await client.post("/chat/completions", json=CHAT)).json()
    bare = (
        await client.post(
            "/chat/completions", json=STREAM | {"stream_options": {"include_usage": True}}
        )
    ).text
    assert all('"usage"' not in e for e in sse(bare))


async def test_stream_framing_with_and_without_the_usage_chunk(client: httpx.AsyncClient) -> None:
    plain = await client.post("/chat/completions", json=STREAM)
    assert plain.headers["content-type"] == "text/event-stream"
    assert plain.headers["transfer-encoding"] == "chunked"
    assert plain.headers["server"] == "arbstr-sim"
    events = sse(plain.text)
    assert len(events) == 11 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "tok0 "}
    assert "role" not in chunks[1]["choices"][0]["delta"]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 9 + ["stop"]
    assert all("usage" not in c for c in chunks)

    with_usage = STREAM | {"stream_options": {"include_usage": True}}
    events = sse((await client.post("/chat/completions", json=with_usage)).text)
    assert len(events) == 12 and events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert last["usage"]["completion_tokens"] == 10  # one a chunk


async def test_stream_with_the_openai_sdk(sim: SimServer) -> None:
    sim.profile = SimProfile(chunks=4)
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="k", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "tok0 tok1 tok2 tok3 "
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


async def test_status_script_then_429_headers(sim: SimServer, client: httpx.AsyncClient) -> None:
    await client.post("/chat/completions", json=CHAT)  # the script starts with the profile
    profile = {"status_script": [500, 429, 200, 503], "retry_after": "7"}
    await client.post(sim.url.removesuffix("/v1") + "/_sim/profile", json=profile)
    answers = [await client.post("/chat/completions", json=CHAT) for _ in range(5)]
    assert [r.status_code for r in answers] == [500, 429, 200, 503, 200]
    error = answers[0].json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("server_error", None)
    assert answers[1].json()["error"]["type"] == "rate_limit_error"
    assert answers[1].headers["retry-after"] == "7"
    assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert "retry-after" not in answers[2].headers


async def test_rate_limited_and_ratelimit_headers(
    sim: SimServer, client: httpx.AsyncClient
) -> None:
    quota = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    sim.profile = SimProfile(ratelimit_headers=quota)
    ok = await client.post("/chat/completions", json=CHAT)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-reset-requests"] == "6m0s"
    streamed = await client.post("/chat/completions", json=STREAM)
    assert streamed.headers["x-ratelimit-remaining-requests"] == "0"
    sim.profile = SimProfile(rate_limited=True, retry_after=None)
    for _ in range(3):
        limited = await client.post("/chat/completions", json=CHAT)
        assert limited.status_code == 429
        assert "retry-after" not in limited.headers
    assert builtin_profile("ratelimited").rate_limited


async def test_failure_rate_is_seeded(sim: SimServer, client: httpx.AsyncClient) -> None:
    async def run() -> list[int]:
        sim.profile = SimProfile(failure_rate=0.5, failure_status=502, seed=3)
        return [(await client.post("/chat/completions", json=CHAT)).status_code for _ in range(20)]

    first = await run()
    assert set(first) == {200, 502}
    assert await run() == first


async def test_malformed_and_garbage(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.profile = SimProfile(malformed=True)
    bad = await client.post("/chat/completions", json=CHAT)
    assert bad.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        bad.json()
    sim.profile = SimProfile(garbage_after_chunks=2)
    garbled = await client.post("/chat/completions", json=STREAM)  # a complete HTTP body
    events = sse(garbled.text)
    assert len(events) == 3 and events[-1] == "{not json"


async def test_cut_stream_is_a_broken_body(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.profile = SimProfile(cut_after_chunks=3)
    seen: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        await read_stream(client, seen)
    assert len([x for x in seen if x.startswith("data: ")]) == 3
    sim.profile = SimProfile(cut_after_chunks=2, tokens_per_s=1000)  # the paced path too
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/chat/completions", json=STREAM)
    assert sim.disconnects == 0  # we cut it: not a client disconnect


async def test_stall_times_out_and_the_disconnect_is_counted(sim: SimServer) -> None:
    sim.profile = SimProfile(stall_after_chunks=1)
    async with httpx.AsyncClient(base_url=sim.url, timeout=0.2) as c:
        seen: list[str] = []
        with pytest.raises(httpx.ReadTimeout):
            await read_stream(c, seen)
        assert seen[0].startswith("data: ")
    await wait_for(lambda: sim.disconnects == 1 and sim.in_flight == 0)


async def test_hang_and_latency(sim: SimServer) -> None:
    sim.profile = SimProfile(hang=True)
    async with httpx.AsyncClient(base_url=sim.url, timeout=0.15) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post("/chat/completions", json=CHAT)
        await wait_for(lambda: sim.disconnects == 1 and sim.in_flight == 0)
        sim.profile = SimProfile(latency_ms=60)
        start = time.perf_counter()
        assert (await c.post("/chat/completions", json=CHAT)).status_code == 200
        assert time.perf_counter() - start >= 0.06


async def test_client_leaving_mid_stream_cancels_the_pacing(sim: SimServer) -> None:
    sim.profile = SimProfile(chunks=500, tokens_per_s=100)
    async with (
        httpx.AsyncClient(base_url=sim.url, timeout=5) as c,
        c.stream("POST", "/chat/completions", json=STREAM) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break
        assert sim.in_flight == 1
    await wait_for(lambda: sim.disconnects == 1 and sim.in_flight == 0)


async def test_embeddings_and_models(sim: SimServer, client: httpx.AsyncClient) -> None:
    one = (await client.post("/embeddings", json={"model": "e", "input": "abcdefgh"})).json()
    assert one["object"] == "list" and one["model"] == "e"
    assert len(one["data"]) == 1 and len(one["data"][0]["embedding"]) == 8
    assert one["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    many = (await client.post("/embeddings", json={"model": "e", "input": ["a", "b", "a"]})).json()
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert many["data"][0]["embedding"] == many["data"][2]["embedding"]  # deterministic
    assert many["data"][0]["object"] == "embedding"
    sim.profile = SimProfile(models=["m1", "m2"])
    models = (await client.get("/models")).json()
    assert models["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in models["data"]] == [
        ("m1", "model", "arbstr-sim"),
        ("m2", "model", "arbstr-sim"),
    ]


async def test_404_405_and_bad_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] is None
    assert (await client.get("/chat/completions")).status_code == 405
    wrong = await client.post("/models")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
    assert (await client.get("/v1/_sim/stats")).status_code == 404
    bad = await client.post("/chat/completions", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


async def test_control_routes(sim: SimServer, client: httpx.AsyncClient) -> None:
    root = sim.url.removesuffix("/v1")
    await client.post("/chat/completions", json=CHAT, headers={"X-Trace": "abc"})
    stats = (await client.get(f"{root}/_sim/stats")).json()
    assert (stats["hits"], stats["chat_hits"], stats["in_flight"], stats["disconnects"]) == (
        1,
        1,
        0,
        0,
    )
    assert stats["last_headers"]["x-trace"] == "abc"
    assert stats["last_body"] == CHAT
    assert (await client.post(f"{root}/_sim/profile", json={"chunks": 0})).status_code == 400
    replaced = await client.post(f"{root}/_sim/profile", json={"name": "p", "chunks": 2})
    assert replaced.json()["chunks"] == 2
    assert sim.profile.name == "p"
    assert (await client.post(f"{root}/_sim/reset")).status_code == 200
    assert (sim.hits, sim.chat_hits, sim.last_headers) == (0, 0, {})


async def test_keep_alive_carries_many_requests(sim: SimServer, client: httpx.AsyncClient) -> None:
    for i in range(150):
        body = STREAM if i % 3 == 0 else CHAT
        assert (await client.post("/chat/completions", json=body)).status_code == 200
    assert (sim.connections, sim.chat_hits) == (1, 150)


async def raw(sim: SimServer, *parts: bytes, expect: int) -> list[bytes]:
    """Send raw bytes (in separate writes) and read `expect` responses' heads and bodies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0)
        out: list[bytes] = []
        while len(out) < expect:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.1 100 "):  # interim: not one of the `expect`
                out.insert(0, head)
                expect += 1
                continue
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            out.append(head + await reader.readexactly(length))
        return out
    finally:
        writer.close()
        await writer.wait_closed()


def post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%b\r\n%b" % (
        len(body),
        extra,
        body,
    )


async def test_pipelined_and_partial_requests(sim: SimServer) -> None:
    body = json.dumps(CHAT).encode()
    pipelined = post(body) + b"GET /v1/models HTTP/1.1\r\n\r\n" + post(body)
    answers = await raw(sim, pipelined, expect=3)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200"] * 3
    assert b'"object":"list"' in answers[1]
    dribbled = [bytes([b]) for b in post(body)]  # one byte a write
    assert b'"chat.completion"' in (await raw(sim, *dribbled, expect=1))[0]
    assert sim.chat_hits == 3


async def test_unparseable_requests_get_400_and_close(sim: SimServer) -> None:
    for junk in (
        b"NONSENSE\r\n\r\n",
        post(b"{}").replace(b"Content-Length: 2", b"Content-Length: x"),
    ):
        answer = (await raw(sim, junk, expect=1))[0]
        assert answer.startswith(b"HTTP/1.1 400 ") and b"connection: close" in answer
    chunked = b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert (await raw(sim, chunked, expect=1))[0].startswith(b"HTTP/1.1 411 ")


async def test_expect_continue_and_http_1_0(sim: SimServer) -> None:
    request = post(json.dumps(CHAT).encode(), b"Expect: 100-continue\r\n")
    split = request.index(b"\r\n\r\n") + 4
    interim, answer = await raw(sim, request[:split], request[split:], expect=1)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n" and answer.startswith(b"HTTP/1.1 200 ")
    old = (await raw(sim, b"GET /v1/models HTTP/1.0\r\n\r\n", expect=1))[0]
    assert b"connection: close" in old
    kept = b"GET /v1/models HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    assert b"connection: keep-alive" in (await raw(sim, kept * 2, expect=2))[1]


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():  # noqa: ASYNC110 - polling another component's counters
            await asyncio.sleep(0.01)


def test_run_in_thread_serves_synchronous_callers() -> None:
    profiles = [SimProfile(name="a"), builtin_profile("flaky", name="b", failure_rate=1.0)]
    with run_in_thread(profiles) as cluster:
        assert len(cluster.urls) == 2
        assert httpx.post(f"{cluster.urls[0]}/chat/completions", json=CHAT).status_code == 200
        assert httpx.post(f"{cluster.urls[1]}/chat/completions", json=CHAT).status_code == 503
        assert [s.chat_hits for s in cluster.servers] == [1, 1]


def test_cli_runs_until_sigterm() -> None:
    cmd = [sys.executable, *shlex.split("-m arbstr.sim --port 0 --profile slow --latency-ms 1")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("arbstr-sim (simulated provider) listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert '"latency_ms":1.0' in proc.stdout.readline()
        assert httpx.get(f"{url}/models").json()["data"][0]["owned_by"] == "arbstr-sim"
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_cli_flags_cover_every_profile_field() -> None:
    flags = "--profile flaky --status-script 500,200 --ratelimit-headers a=1,b=2 --retry-after none"
    args = _parser().parse_args([*shlex.split(flags), "--hang", "--models", "m1,m2", "--seed", "4"])
    profile = parse_profile(args)
    assert (profile.name, profile.failure_rate, profile.status_script) == ("flaky", 0.3, [500, 200])
    assert (profile.ratelimit_headers, profile.retry_after) == ({"a": "1", "b": "2"}, None)
    assert (profile.hang, profile.models, profile.seed) == (True, ["m1", "m2"], 4)
    with pytest.raises(msgspec.ValidationError):
        parse_profile(_parser().parse_args(["--failure-rate", "2"]))
