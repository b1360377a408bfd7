"""The exact response cache over real sockets: opt-in with Cache-Control, hits byte for byte
(JSON and streams, event boundaries kept), tenants apart, hits outside rate limits, each
backend, and bad headers refused."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import DEFAULT_HEAD, SimSpec, Stack, StackFactory
from tests.e2e.keyed import AUTH_HEAD, PRICED, keyed_fixture

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}
SPACED = b'{ "max_tokens": 9, "messages": [ {"content": "hi", "role": "user"} ], "model": "gpt-4o-mini" }'


def cache_head(backend: str = "memory", extra: str = "") -> str:
    return DEFAULT_HEAD + f'[cache]\nenabled = true\nbackend = "{backend}"\n{extra}'


def post(s: Stack, body: object, cache: str | None = None, **kw: object) -> httpx.Response:
    headers = {"cache-control": cache} if cache else {}
    if isinstance(body, bytes):
        headers["content-type"] = "application/json"
        return httpx.post(f"{s.url}/v1/chat/completions", content=body, headers=headers, timeout=10)
    return httpx.post(f"{s.url}/v1/chat/completions", json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "backend", ["memory", "redis", pytest.param("database", marks=pytest.mark.postgres)]
)
def test_a_repeated_request_is_answered_from_the_cache(
    stack: StackFactory, backend: str, tmp_path: object
) -> None:
    extra = 'redis_url = "redis://127.0.0.1:6379/0"\n' if backend == "redis" else ""
    head = cache_head(backend, extra)
    if backend == "database":
        from tests.pg import PG_BASE, new_schema, require_pg

        require_pg()
        head = head.replace('url = "memory://"', f'url = "{PG_BASE}?schema={new_schema()}"')
    body = {**BODY, "messages": [{"role": "user", "content": f"hi {uuid.uuid4()}"}]}
    s = stack([PRICED], head=head)
    first = post(s, body, "max-age=60")
    assert first.status_code == 200
    assert first.headers["cache-status"] == "arbstr; fwd=miss; stored"
    hits = s.sim("alpha").chat_hits
    deadline = time.monotonic() + 3
    while (second := post(s, body, "max-age=60")).headers["cache-status"].startswith("arbstr; fwd"):
        assert time.monotonic() < deadline, second.headers["cache-status"]  # a remote put lands
        time.sleep(0.05)
    assert second.headers["cache-status"].startswith("arbstr; hit; ttl=")
    assert second.content == first.content  # byte for byte
    assert second.headers["x-arbstr-cost-sats"] == "0"
    assert s.sim("alpha").chat_hits == hits  # no upstream call
    record = s.last_record(count=len(s.sink.records))
    assert record.provider == "cache" and record.cost_sats == 0
    assert record.savings_sats == float(first.headers["x-arbstr-cost-sats"])


def test_cache_control_decides_and_bad_values_are_refused(stack: StackFactory) -> None:
    s = stack([PRICED], head=cache_head())
    assert post(s, BODY).headers["cache-status"] == "arbstr; fwd=bypass"  # not asked: not cached
    assert post(s, BODY, "max-age=60").headers["cache-status"] == "arbstr; fwd=miss; stored"
    hit = post(s, SPACED, "max-age=60")  # another spacing and key order: the same request
    assert hit.headers["cache-status"].startswith("arbstr; hit")
    hits = s.sim("alpha").chat_hits
    refresh = post(s, BODY, "no-cache, max-age=60")
    assert refresh.headers["cache-status"] == "arbstr; fwd=request; stored"
    assert s.sim("alpha").chat_hits == hits + 1
    assert post(s, BODY, "no-store").headers["cache-status"] == "arbstr; fwd=bypass"
    assert post(s, BODY, "max-age=0").headers["cache-status"] == "arbstr; fwd=bypass"
    for bad in ("max-age=-1", "max-age=abc", "max-age="):
        r = post(s, BODY, bad)
        assert r.status_code == 400, bad
        assert r.json()["error"]["param"] == "cache-control"
        assert "max-age" in r.json()["error"]["message"]


def test_a_stream_replays_as_a_stream_with_its_events(stack: StackFactory) -> None:
    s = stack([PRICED], head=cache_head())
    body = {**BODY, "stream": True}
    first = post(s, body, "max-age=60")
    hit = post(s, body, "max-age=60")
    assert hit.headers["cache-status"].startswith("arbstr; hit")
    assert hit.headers["content-type"].startswith("text/event-stream")

    def upstream_part(text: str) -> str:  # everything up to the upstream's [DONE]
        return text[: text.index("data: [DONE]") + len("data: [DONE]\n\n")]

    assert upstream_part(hit.text) == upstream_part(first.text)
    assert '"cache":"hit"' in hit.text.split("data: [DONE]")[1]


def test_tenants_never_share_and_hits_do_not_count_against_rpm(stack: StackFactory) -> None:
    keyed = keyed_fixture(stack, head=AUTH_HEAD + "[cache]\nenabled = true\n")
    one = keyed.key(rpm=2)["key"]
    other = keyed.key()["key"]
    cached = {"cache-control": "max-age=60"}
    h1 = {"authorization": f"Bearer {one}", **cached}
    h2 = {"authorization": f"Bearer {other}", **cached}
    url = f"{keyed.url}/v1/chat/completions"
    miss = httpx.post(url, json=BODY, headers=h1)
    assert miss.headers["cache-status"] == "arbstr; fwd=miss; stored"
    for _ in range(4):  # hits: not counted against rpm 2
        hit = httpx.post(url, json=BODY, headers=h1)
        assert hit.status_code == 200 and hit.headers["cache-status"].startswith("arbstr; hit")
    theirs = httpx.post(url, json=BODY, headers=h2)  # the same body from another project
    assert theirs.headers["cache-status"] == "arbstr; fwd=miss; stored"
    assert httpx.post(url, json={**BODY, "max_tokens": 8}, headers=h1).status_code == 200
    assert httpx.post(url, json={**BODY, "max_tokens": 7}, headers=h1).status_code == 429


def test_metrics_count_hits_and_misses(stack: StackFactory) -> None:
    s = stack([SimSpec("alpha", models=["gpt-4o-mini"])], head=cache_head())
    post(s, BODY, "max-age=60")
    post(s, BODY, "max-age=60")
    text = httpx.get(f"{s.url}/metrics").text
    assert "arbstr_cache_hits 1.0" in text and "arbstr_cache_misses 1.0" in text
    assert "arbstr_cache_bytes" in text
