"""Virtual keys end to end (DESIGN §7): every refusal before any upstream call, recorded with
the key; limits and budgets under concurrency; rotation, expiry, revocation; the admin API."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from .conftest import StackFactory
from .keyed import ADMIN, AUTH_HEAD, Keyed, keyed, keyed_fixture

__all__ = ["keyed"]


def refused(k: Keyed, response: httpx.Response, status: int, code: str) -> None:
    """The refusal's status and code, no upstream call, and its request-log row."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert k.stack.sim("alpha").chat_hits == 0
    record = k.stack.last_record()
    assert record.id == response.headers["x-arbstr-request-id"]
    assert (record.status, record.error_code) == (status, code)
    assert record.provider is None and record.attempts == []


def test_missing_malformed_unknown_and_foreign_keys_are_401(keyed: Keyed) -> None:
    key = keyed.key()["key"]
    cases = [
        None,
        "sk-arb-",
        key[:-1],  # a character short: still well formed, unknown
        "sk-proj-" + "a" * 40,  # another vendor's format
        "sk-arb-ABCDEFGHIJKL-" + "x" * 43,  # id not lower-case
        ADMIN,  # the admin token is not a virtual key
    ]
    for value in cases:
        headers = {} if value is None else {"authorization": f"Bearer {value}"}
        r = httpx.post(keyed.url + "/v1/chat/completions", json={}, headers=headers)
        refused(keyed, r, 401, "invalid_api_key")
        assert keyed.stack.last_record().key_id is None
    r = httpx.post(
        keyed.url + "/v1/chat/completions", json={}, headers={"authorization": f"Basic {key}"}
    )
    refused(keyed, r, 401, "invalid_api_key")
    assert "admin token is not a virtual key" in keyed.chat(ADMIN).json()["error"]["message"]


def test_each_refusal_of_a_known_key(keyed: Keyed) -> None:
    project = keyed.project(allowed_models=["gpt-4o*"])
    revoked = keyed.key(project["id"])
    assert keyed.admin("POST", f"/admin/keys/{revoked['id']}/revoke").status_code == 200
    refused(keyed, keyed.chat(revoked["key"]), 401, "key_inactive")
    assert keyed.stack.last_record().key_id == revoked["id"]

    expiring = keyed.key(project["id"], ttl_s=0.5)
    time.sleep(0.6)
    refused(keyed, keyed.chat(expiring["key"]), 401, "key_expired")

    narrow = keyed.key(project["id"], allowed_models=["gpt-4o"])
    refused(keyed, keyed.chat(narrow["key"], model="gpt-4o-mini"), 403, "model_not_allowed")
    assert keyed.stack.last_record().project_id == project["id"]
    other = keyed.key(project["id"])
    refused(keyed, keyed.chat(other["key"], model="gpt-3.5"), 403, "model_not_allowed")

    tiny = keyed.key(project["id"], budget_sats=1.0, budget_period="daily")
    r = keyed.chat(tiny["key"])
    refused(keyed, r, 402, "budget_exceeded")
    assert "daily period ends" in r.json()["error"]["message"]

    inactive = keyed.project()
    member = keyed.key(inactive["id"])
    patch = keyed.admin("PATCH", f"/admin/projects/{inactive['id']}", json={"active": False})
    assert patch.status_code == 200, patch.text
    refused(keyed, keyed.chat(member["key"]), 403, "project_inactive")


def test_request_limit_and_rpm_refuse_after_the_allowed_ones(keyed: Keyed) -> None:
    one = keyed.key(max_requests=1)
    assert keyed.chat(one["key"]).status_code == 200
    r = keyed.chat(one["key"])
    assert r.status_code == 429 and r.json()["error"]["code"] == "request_limit_exceeded"
    rpm = keyed.key(rpm=2)
    first = keyed.chat(rpm["key"])
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert keyed.chat(rpm["key"]).status_code == 200
    r = keyed.chat(rpm["key"])
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert keyed.stack.sim("alpha").chat_hits == 3


def test_the_sdk_with_a_key_sees_typed_errors_and_budget_headers(keyed: Keyed) -> None:
    made = keyed.key(budget_sats=100.0, budget_period="monthly")
    client = keyed.sdk(made["key"])
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 40}], max_tokens=10
    )
    assert raw.parse().choices[0].message.content
    assert float(raw.headers["x-arbstr-budget-remaining-sats"]) == pytest.approx(98.6, abs=0.01)
    with pytest.raises(openai.AuthenticationError):
        keyed.sdk("sk-arb-aaaaaaaaaaaa-" + "b" * 43).models.list()
    models = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in models
    narrow = keyed.key(allowed_models=["gpt-4o"])
    assert [m.id for m in keyed.sdk(narrow["key"]).models.list()] == ["gpt-4o"]
    with pytest.raises(openai.PermissionDeniedError):
        keyed.sdk(narrow["key"]).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    own = httpx.get(keyed.url + "/v1/key", headers={"authorization": f"Bearer {made['key']}"})
    assert own.status_code == 200, own.text
    body = own.json()
    assert body["id"] == made["id"] and body["budget_reset_at"].endswith("T00:00:00.000Z")


async def test_a_budget_holds_under_twenty_concurrent_requests(keyed: Keyed) -> None:
    made = keyed.key(budget_sats=7.0)  # five requests of 1.4 sats
    async with httpx.AsyncClient(timeout=10) as client:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 40}],
                "max_tokens": 10}  # fmt: skip
        rs = await asyncio.gather(*(
            client.post(keyed.url + "/v1/chat/completions", json=body,
                        headers={"authorization": f"Bearer {made['key']}"})
            for _ in range(20)
        ))  # fmt: skip
    ok = [r for r in rs if r.status_code == 200]
    assert len(ok) == 5
    assert {r.status_code for r in rs} == {200, 402}
    assert keyed.stack.sim("alpha").chat_hits == 5
    spent = sum(float(r.headers["x-arbstr-cost-sats"]) for r in ok)
    assert spent <= 7.0 + 1e-9  # estimate == actual here: the bound is 0
    deadline = time.monotonic() + 5
    while keyed.admin("GET", f"/admin/keys/{made['id']}").json()["requests"] < 5:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    shown = keyed.admin("GET", f"/admin/keys/{made['id']}").json()
    assert shown["spend_sats"] == pytest.approx(spent)


async def test_rpm_holds_under_a_burst_of_three_times_the_limit(keyed: Keyed) -> None:
    made = keyed.key(rpm=10)
    headers = {"authorization": f"Bearer {made['key']}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=10) as client:
        rs = await asyncio.gather(*(
            client.post(keyed.url + "/v1/chat/completions", json=body, headers=headers)
            for _ in range(30)
        ))  # fmt: skip
    assert sum(r.status_code == 200 for r in rs) == 10
    assert sum(r.status_code == 429 for r in rs) == 20
    assert keyed.stack.sim("alpha").chat_hits == 10


async def test_max_requests_is_exact_under_concurrency(keyed: Keyed) -> None:
    made = keyed.key(max_requests=7)
    headers = {"authorization": f"Bearer {made['key']}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=10) as client:
        rs = await asyncio.gather(*(
            client.post(keyed.url + "/v1/chat/completions", json=body, headers=headers)
            for _ in range(25)
        ))  # fmt: skip
    assert sum(r.status_code == 200 for r in rs) == 7
    assert keyed.stack.sim("alpha").chat_hits == 7


def test_rotation_without_and_with_grace(keyed: Keyed) -> None:
    made = keyed.key(budget_sats=50.0)
    assert keyed.chat(made["key"]).status_code == 200
    r = keyed.admin("POST", f"/admin/keys/{made['id']}/rotate", json={})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["id"] == made["id"] and new["key"] != made["key"]
    assert new["budget_sats"] == 50.0
    assert keyed.chat(made["key"]).status_code == 401
    assert keyed.chat(new["key"]).status_code == 200
    graced = keyed.admin("POST", f"/admin/keys/{made['id']}/rotate", json={"grace_s": 0.6}).json()
    assert keyed.chat(new["key"]).status_code == 200  # the old one, inside its grace
    assert keyed.chat(graced["key"]).status_code == 200
    time.sleep(0.7)
    assert keyed.chat(new["key"]).status_code == 401
    assert keyed.chat(graced["key"]).status_code == 200
    deadline = time.monotonic() + 5
    while keyed.admin("GET", f"/admin/keys/{made['id']}").json()["requests"] < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_flood_of_random_keys_costs_no_store_call_and_is_throttled(stack: StackFactory) -> None:
    head = (
        '[database]\nurl = "memory://"\n[auth]\nenabled = true\n'
        f'admin_token = "{ADMIN}"\nfailure_burst = 20\nfailure_window_s = 60\n'
    )
    k = keyed_fixture(stack, head=head)
    time.sleep(0.3)  # let the poller settle into its rhythm
    before = k.store.total("get_key", "get_project", "list_keys", "changes_since", "lease")
    statuses = []
    with httpx.Client(timeout=5) as client:
        for i in range(200):
            fake = f"sk-arb-{i:012d}-" + "z" * 43
            r = client.post(
                k.url + "/v1/chat/completions", json={}, headers={"authorization": f"Bearer {fake}"}
            )
            statuses.append(r.status_code)
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    after = k.store.total("get_key", "get_project", "list_keys", "changes_since", "lease")
    assert after == before  # the version poll is the only thing that reached the store
    k.stack.app.state.key_service.throttle.window_s = 0  # end the burst: one audit row
    deadline = time.monotonic() + 5
    while not [e for e in k.store.audit if e.action == "auth.failure"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rows = [e for e in k.store.audit if e.action == "auth.failure"]
    assert len(rows) == 1 and rows[0].count == 200 and rows[0].client_ip == "127.0.0.1"
    assert rows[0].outcome == "denied"
    assert rows[0].changes["invalid_api_key"] == [0, 20]
    assert rows[0].changes["throttled"] == [0, 180]


@pytest.mark.parametrize("leased", [False, True], ids=["one-process", "leased"])
async def test_requests_far_from_their_caps_do_not_wait_on_the_store(
    stack: StackFactory, leased: bool
) -> None:
    """Statements per request under load: none in one process; with leases (several
    replicas), one per slice of what remains, never one per request."""
    head = AUTH_HEAD + ('[state]\nbackend = "database"\n' if leased else "")
    k = keyed_fixture(stack, head=head)
    made = k.key(budget_sats=1e9, rpm=100_000)
    headers = {"authorization": f"Bearer {made['key']}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    calls = ("lease", "charge", "get_key", "get_project", "list_keys", "changes_since")
    before = k.store.total(*calls)
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(10):
            rs = await asyncio.gather(*(
                client.post(k.url + "/v1/chat/completions", json=body, headers=headers)
                for _ in range(30)
            ))  # fmt: skip
            assert {r.status_code for r in rs} == {200}
    statements = k.store.total(*calls) - before
    print(f"store statements for 300 requests ({'leased' if leased else 'one process'}): "
          f"{statements}")  # fmt: skip
    if leased:  # one lease per meter (key and project, budget and rpm), then local slices
        assert 1 <= statements <= 12
    else:
        assert statements == 0


def test_embeddings_streams_models_and_cost_are_guarded_too(keyed: Keyed) -> None:
    narrow = keyed.key(allowed_models=["gpt-4o"])
    auth = {"authorization": f"Bearer {narrow['key']}"}
    embed = {"model": "gpt-4o-mini", "input": "hello"}
    r = httpx.post(keyed.url + "/v1/embeddings", json=embed)
    refused(keyed, r, 401, "invalid_api_key")
    r = httpx.post(keyed.url + "/v1/embeddings", json=embed, headers=auth)
    refused(keyed, r, 403, "model_not_allowed")
    assert keyed.stack.last_record().endpoint == "embeddings"
    stream = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
              "stream": True}  # fmt: skip
    r = httpx.post(keyed.url + "/v1/chat/completions", json=stream, headers=auth)
    refused(keyed, r, 403, "model_not_allowed")
    assert keyed.stack.last_record().streaming is True
    assert httpx.get(keyed.url + "/v1/models").status_code == 401
    cost = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(keyed.url + "/v1/cost", json=cost).status_code == 401
    r = httpx.post(keyed.url + "/v1/cost", json=cost, headers=auth)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    ok = httpx.post(keyed.url + "/v1/cost", json={**cost, "model": "gpt-4o"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["estimated_cost_sats"] > 0
    assert keyed.stack.sim("alpha").hits == 0
