"""Recording end to end: every request lands in the log; stats and the request browser read it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


def wait_rows(url: str, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        page = httpx.get(f"{url}/v1/requests", params={"per_page": 100}, timeout=5).json()
        if page["total"] >= n or time.monotonic() > deadline:
            return page
        time.sleep(0.02)


def head(db: str) -> str:
    return f'[database]\nurl = "sqlite:///{db}"\n[reliability]\nbackoff_s = [0.0]\n'


def test_requests_are_recorded_and_queryable(stack: StackFactory, tmp_path: Path) -> None:
    s = stack(
        [
            SimSpec("cheap", SimProfile(status_script=[500]), input_rate=1, output_rate=2),
            SimSpec("dear", input_rate=9, output_rate=9),
        ],
        head=head(str(tmp_path / "a.db")),
    )
    with s.client() as c:
        ok = c.post("/v1/chat/completions", json=CHAT)
        c.post("/v1/chat/completions", json=dict(CHAT, stream=True))
        c.post("/v1/chat/completions", json={"model": "gpt-4o-mini"})
        c.post("/v1/chat/completions", content=b"{broken")
    page = wait_rows(s.url, 4)
    assert page["total"] == 4
    assert {r["id"] for r in page["data"]} >= {ok.headers["x-arbstr-request-id"]}
    first = next(r for r in page["data"] if r["id"] == ok.headers["x-arbstr-request-id"])
    assert first["provider"] == "cheap"
    assert first["cost"]["sats"] == pytest.approx(float(ok.headers["x-arbstr-cost-sats"]), abs=1e-6)
    assert first["tokens"]["input"] > 0
    detail = httpx.get(f"{s.url}/v1/requests/{first['id']}").json()
    # the detail is the row of the list (same names, same timestamp) plus the rest and attempts
    for key, value in first.items():
        if key in ("tokens", "cost", "timing", "error"):
            assert detail[key] | value == detail[key], key  # a superset of the row's object
        else:
            assert detail[key] == value, key
    assert detail["status"] == 200 and detail["endpoint"] == "chat"
    attempts = detail["attempts"]
    assert [(a["provider"], a.get("status")) for a in attempts] == [("cheap", 500), ("cheap", 200)]
    stats = httpx.get(f"{s.url}/v1/stats").json()
    assert stats["counts"] == {"total": 4, "success": 2, "error": 2, "streaming": 1}
    assert stats["costs"]["total_cost_sats"] > 0
    assert stats["savings_sats"] > 0  # dear would have cost more
    grouped = httpx.get(f"{s.url}/v1/stats", params={"group_by": "provider"}).json()
    assert grouped["providers"]["cheap"]["counts"]["total"] == 2
    series = httpx.get(
        f"{s.url}/v1/stats/timeseries", params={"bucket": "minute", "range": "last_1h"}
    ).json()
    assert sum(p["counts"]["total"] for p in series["data"]) == 4
    errors = httpx.get(f"{s.url}/v1/requests", params={"success": "false"}).json()
    assert {r["error"]["status"] for r in errors["data"]} == {400}
    assert httpx.get(f"{s.url}/health/ready").json()["checks"] == {
        "request_log": True,
        "recorder": True,
        "key_store": True,
    }


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/stats", {"range": "last_year"}, "range"),
        ("/v1/stats", {"since": "yesterday"}, "since"),
        ("/v1/stats", {"until": "2026-13-01"}, "until"),
        ("/v1/stats", {"group_by": "colour"}, "group_by"),
        ("/v1/stats", {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ("/v1/stats/timeseries", {"bucket": "week"}, "bucket"),
        ("/v1/requests", {"sort": "id; DROP TABLE requests"}, "sort"),
        ("/v1/requests", {"order": "sideways"}, "order"),
        ("/v1/requests", {"page": "0"}, "page"),
        ("/v1/requests", {"page": "two"}, "page"),
        ("/v1/requests", {"success": "maybe"}, "success"),
        ("/v1/requests", {"streaming": "yes"}, "streaming"),
    ],
)
def test_bad_parameters_are_400_naming_them(
    stack: StackFactory, path: str, params: dict[str, str], param: str
) -> None:
    s = stack([SimSpec("a")])
    response = httpx.get(f"{s.url}{path}", params=params, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert param in error["message"]


def test_per_page_is_clamped_and_unknown_id_is_404(stack: StackFactory) -> None:
    s = stack([SimSpec("a")])
    page = httpx.get(f"{s.url}/v1/requests", params={"per_page": "1000"}).json()
    assert page["per_page"] == 100
    missing = httpx.get(f"{s.url}/v1/requests/does-not-exist")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
