"""`arbstr.serverless:handler` (Mangum) answers API Gateway v2 events: a chat completion
against a simulated provider, `/health`, and an OpenAI-shaped error; every row is written
before the invocation returns."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from arbstr.sim import SimProfile, run_in_thread

# run in a child: Mangum keeps one adapter (and an event loop) per process, as Lambda does
INVOKE = """
import json, sys
from arbstr.serverless import handler
answers = [handler(event, None) for event in json.load(sys.stdin)]
json.dump(answers, sys.stdout)
"""


def event(method: str, path: str, body: object | None = None) -> dict[str, object]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "cookies": [],
        "headers": {"content-type": "application/json", "host": "gw.execute-api.test"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "gw",
            "domainName": "gw.execute-api.test",
            "domainPrefix": "gw",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "pytest",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:12:00:00 +0000",
            "timeEpoch": 1795000000000,
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


@pytest.mark.slow
def test_lambda_handler_answers_api_gateway_v2_events(tmp_path: Path) -> None:
    with run_in_thread([SimProfile()]) as sims:
        db = tmp_path / "arbstr.db"
        config = tmp_path / "arbstr.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{db}"\n'
            f'[[providers]]\nname = "sim"\nurl = "{sims.urls[0]}"\nmodels = ["gpt-4o-mini"]\n'
        )
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        events = [
            event("POST", "/v1/chat/completions", chat),
            event("GET", "/health"),
            event("POST", "/v1/chat/completions", {"model": "nope", "messages": []}),
            event("POST", "/v1/chat/completions", chat),
        ]
        done = subprocess.run(
            [sys.executable, "-c", INVOKE],
            input=json.dumps(events),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "ARBSTR_CONFIG": str(config)},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        first, health, bad, again = json.loads(done.stdout)

    assert first["statusCode"] == 200
    assert first["headers"]["x-arbstr-provider"] == "sim"
    answer = json.loads(first["body"])
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    assert health["statusCode"] == 200 and json.loads(health["body"])["status"] == "ok"
    assert bad["statusCode"] == 400
    assert set(json.loads(bad["body"])["error"]) >= {"message", "type", "code"}
    assert again["statusCode"] == 200
    with sqlite3.connect(db) as conn:  # written before each invocation returned
        rows = conn.execute("SELECT id, status FROM requests ORDER BY ts").fetchall()
    ids = [first["headers"]["x-arbstr-request-id"], again["headers"]["x-arbstr-request-id"]]
    assert {r[0] for r in rows} >= set(ids)
    assert sorted(r[1] for r in rows) == [200, 200, 400]
