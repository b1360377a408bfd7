"""Chaos: a thousand requests through flaky, rate-limited and dying providers.

Every client gets a valid answer or an OpenAI-shaped error, the request log holds exactly one row
per request, and no key appears in any response.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory

KEYS = [
    "sk-chaos-flaky-0123456789",
    "sk-chaos-limited-0123456789",
    "sk-chaos-dying-0123456789",
    "sk-chaos-steady-0123456789",
]


@pytest.mark.slow
def test_chaos(stack: StackFactory, tmp_path: Path) -> None:
    head = f"""
[server]
request_timeout_s = 5
[database]
url = "sqlite:///{tmp_path / "chaos.db"}"
[reliability]
backoff_s = [0.0, 0.01]
circuit_open_s = 0.2
stream_idle_timeout_s = 0.5
"""
    s = stack(
        [
            SimSpec(
                "flaky",
                SimProfile(failure_rate=0.4, failure_status=503, seed=1),
                input_rate=1,
                api_key=KEYS[0],
            ),
            SimSpec(
                "limited",
                SimProfile(status_script=[200, 429] * 50, retry_after="0.1"),
                input_rate=2,
                api_key=KEYS[1],
            ),
            SimSpec(
                "dying",
                SimProfile(cut_after_chunks=3, failure_rate=0.3, seed=2),
                input_rate=3,
                api_key=KEYS[2],
            ),
            SimSpec("steady", SimProfile(), input_rate=50, api_key=KEYS[3]),
        ],
        head=head,
    )
    n = 1000

    def one(i: int) -> tuple[int, str, str]:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": f"q{i}"}],
            "stream": i % 3 == 0,
        }
        if i % 50 == 7:
            return _send(s.url, b"{malformed")
        return _send(s.url, json.dumps(body).encode())

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(n)))
    for status, text, request_id in results:
        assert request_id, "every response carries x-arbstr-request-id"
        if status == 200 and text.startswith("data: "):
            events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            last = json.loads(events[-2])
            assert "arbstr" in last or last["error"]["code"] in (
                "upstream_stream_error",
                "stream_idle_timeout",
            )
        elif status == 200:
            assert json.loads(text)["choices"]
        else:
            error = json.loads(text)["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert isinstance(error["code"], str)
        for key in KEYS:
            assert key not in text
    ids = {r[2] for r in results}
    assert len(ids) == n
    deadline = time.monotonic() + 10
    while True:
        page = httpx.get(f"{s.url}/v1/requests", params={"per_page": 1, "range": "last_1h"}).json()
        if page["total"] >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert page["total"] == n
    metrics = httpx.get(f"{s.url}/metrics").text
    assert "arbstr_recorder_dropped 0.0" in metrics
    assert all(key not in metrics for key in KEYS)


def _send(url: str, body: bytes) -> tuple[int, str, str]:
    with httpx.Client(timeout=20) as client:
        r = client.post(
            f"{url}/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        return r.status_code, r.text, r.headers.get("x-arbstr-request-id", "")
