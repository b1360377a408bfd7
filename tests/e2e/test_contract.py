"""The HTTP contract's rough edges: schema, health, timeseries defaults, sats formatting."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory

README = Path(__file__).parents[2] / "README.md"


def readme_routes() -> set[tuple[str, str]]:
    """Every `METHOD /path` the README's HTTP API table lists (`{id}` as written)."""
    table = README.read_text().split("## HTTP API", 1)[1].split("\n\n", 1)[0]
    routes: set[tuple[str, str]] = set()
    for line in table.splitlines():
        cell = line.split("|")[1] if line.startswith("|") else ""
        method = None  # `GET /a`, `/b`: a bare path takes the method before it
        for token in re.findall(r"`([^`]+)`", cell):
            m = re.fullmatch(r"(?:(GET|POST|PUT|PATCH|DELETE) )?(/[\w/{}.-]*)", token)
            if m:
                method = (m.group(1) or method or "").lower()
                routes.add((method, re.sub(r"\{[^}]+\}", "{id}", m.group(2))))
    return routes


def test_openapi_lists_every_readme_route_with_real_shapes(stack: StackFactory) -> None:
    s = stack([SimSpec("a")])
    schema = httpx.get(f"{s.url}/schema/openapi.json").json()
    assert httpx.get(f"{s.url}/schema").status_code == 200
    assert httpx.get(f"{s.url}/schema/openapi.yaml").status_code == 200
    paths = {re.sub(r"\{[^}]+\}", "{id}", p): v for p, v in schema["paths"].items()}
    routes = readme_routes()
    assert len(routes) >= 14
    for method, path in routes - {("get", "/schema")}:  # the document itself
        assert path in paths, path
        assert method in paths[path], (method, path)
    components = schema["components"]["schemas"]
    for path, name in [
        ("/v1/stats", "StatsResult"),
        ("/v1/stats/timeseries", "Timeseries"),
        ("/v1/requests", "Page"),
        ("/v1/requests/{id}", "RequestDetail"),
        ("/v1/models", "ModelList"),
        ("/health", "HealthReport"),
        ("/v1/ratelimits", "RateLimits"),
        ("/providers", "ProviderList"),
    ]:
        content = paths[path]["get"]["responses"]["200"]["content"]["application/json"]
        assert content["schema"]["$ref"].endswith(f"/{name}"), path
        assert components[name]["properties"], name
    assert "attempts" in components["RequestDetail"]["properties"]
    stats_params = {p["name"] for p in paths["/v1/stats"]["get"]["parameters"]}
    assert {"range", "since", "until", "group_by"} <= stats_params
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ChatCompletionRequest"
    )
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "ChatCompletionRequest" in components and "ErrorEnvelope" in components


def test_health_is_unhealthy_when_every_model_is_cooling(stack: StackFactory) -> None:
    limited = SimProfile(rate_limited=True, retry_after="30")
    s = stack(
        [
            SimSpec("a", limited, models=["m1", "m2"]),
            SimSpec("b", limited, models=["m1"]),
        ]
    )
    with s.client() as c:
        assert c.get("/health").json()["status"] == "ok"
        c.post("/v1/chat/completions", json={"model": "m1", "messages": []})
        # a cools down for m1 only and still serves m2; b is out for all it serves
        report = c.get("/health")
        assert report.status_code == 200 and report.json()["status"] == "degraded"
        assert "cooldown_s" in report.json()["providers"]["b"]
        assert "cooldown_s" not in report.json()["providers"]["a"]
        c.post("/v1/chat/completions", json={"model": "m2", "messages": []})
        report = c.get("/health")
        assert report.status_code == 503 and report.json()["status"] == "unhealthy"


def test_health_unhealthy_for_a_mix_of_open_circuits_and_cooldowns(stack: StackFactory) -> None:
    s = stack(
        [
            SimSpec("broken", SimProfile(failure_rate=1.0), models=["m"]),
            SimSpec("limited", SimProfile(rate_limited=True, retry_after="30"), models=["m"]),
        ],
        head='[database]\nurl = "memory://"\n[reliability]\nbackoff_s = [0.0]\n'
        "max_retries = 0\ncircuit_failure_threshold = 1\n",
    )
    with s.client() as c:
        c.post("/v1/chat/completions", json={"model": "m", "messages": []})
        report = c.get("/health")
        assert report.status_code == 503
        assert report.json()["providers"]["broken"]["state"] == "open"


def test_minute_timeseries_defaults_to_a_day(stack: StackFactory) -> None:
    s = stack([SimSpec("a")])
    with s.client() as c:
        c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
        ok = c.get("/v1/stats/timeseries", params={"bucket": "minute"})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        since = time.mktime(time.strptime(body["since"][:19], "%Y-%m-%dT%H:%M:%S"))
        until = time.mktime(time.strptime(body["until"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert until - since == pytest.approx(86400, abs=2)
        wide = c.get("/v1/stats/timeseries", params={"bucket": "minute", "range": "last_7d"})
        assert wide.status_code == 400 and wide.json()["error"]["param"] == "bucket"
        assert c.get("/v1/stats/timeseries", params={"bucket": "hour"}).status_code == 200


def test_sats_have_at_most_six_places(stack: StackFactory) -> None:
    # 0.1 + 0.2 style rates: float noise must never reach a client
    s = stack([SimSpec("a", input_rate=0.1, output_rate=0.7, base_fee=0.29)])
    with s.client() as c:
        for _ in range(3):
            c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
        s.last_record(3)
        time.sleep(0.1)
        text = c.get("/v1/requests").text + c.get("/v1/stats").text
    for number in re.findall(r"\d+\.\d+", text):
        assert len(number.split(".")[1]) <= 6, number
