"""The admin API's contract: guards, bad input named by field with nothing half-written,
scoped analytics for a key, per-project upstream keys, streams charged, and no secret anywhere."""

from __future__ import annotations

import base64
import logging
import os
import time

import httpx
import msgspec
import pytest

from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory
from .keyed import ADMIN, AUTH_HEAD, PRICED, Keyed, keyed, keyed_fixture

__all__ = ["keyed"]


def error(r: httpx.Response, status: int, param: str | None = None) -> dict[str, str]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    if param is not None:
        assert body["param"] == param, body
    return dict(body)


def test_admin_routes_need_the_admin_token(keyed: Keyed) -> None:
    made = keyed.key()
    for method, path in [("GET", "/admin/projects"), ("POST", "/admin/keys"),
                         ("GET", "/admin/audit"), ("GET", "/providers"),
                         ("GET", "/metrics"), ("GET", "/v1/ratelimits")]:  # fmt: skip
        assert httpx.request(method, keyed.url + path).status_code == 401
        wrong = {"authorization": "Bearer not-the-admin-token-at-all"}
        assert httpx.request(method, keyed.url + path, headers=wrong).status_code == 401
        as_key = {"authorization": f"Bearer {made['key']}"}
        r = httpx.request(method, keyed.url + path, headers=as_key)
        assert error(r, 403)["code"] == "admin_required"
    assert httpx.get(keyed.url + "/health").status_code == 200  # health stays public
    assert httpx.get(keyed.url + "/health/ready").status_code == 200


def test_bad_input_names_the_field_and_writes_nothing(keyed: Keyed) -> None:
    p = keyed.project(name="taken")
    versions = keyed.store._version
    audit = len(keyed.store.audit)
    cases = [
        ("POST", "/admin/projects", {"name": "x", "budget_sats": -1}, 400, "budget_sats"),
        ("POST", "/admin/projects", {"name": "x", "rpm": "ten"}, 400, "rpm"),
        ("POST", "/admin/projects", {"name": "x", "budget_period": "dayly"}, 400, "budget_period"),
        ("POST", "/admin/projects", {"name": "x", "colour": "red"}, 400, "colour"),
        ("POST", "/admin/projects", {}, 400, "name"),
        ("POST", "/admin/keys", {"project_id": p["id"], "name": "k", "expires_at": 1.0}, 400,
         "expires_at"),
        ("POST", "/admin/keys", {"project_id": p["id"], "name": "k",
                                 "expires_at": "2001-01-01T00:00:00Z"}, 400, "expires_at"),
        ("POST", "/admin/keys", {"project_id": p["id"], "name": "k", "max_requests": 0}, 400,
         "max_requests"),
        ("POST", "/admin/keys", {"project_id": p["id"], "name": "k", "tpm": -5}, 400, "tpm"),
        ("PATCH", f"/admin/projects/{p['id']}", {}, 400, "body"),
        ("GET", "/admin/projects?per_page=500", None, 400, "per_page"),
        ("GET", "/admin/keys?active=maybe", None, 400, "active"),
    ]  # fmt: skip
    for method, path, body, status, param in cases:
        r = keyed.admin(method, path, json=body) if body is not None else keyed.admin(method, path)
        error(r, status, param)
    # a duplicate name and an unknown project are refused and leave no row, no success row
    assert error(keyed.admin("POST", "/admin/projects", json={"name": "taken"}), 409, "name")
    r = keyed.admin("POST", "/admin/keys", json={"project_id": "nope", "name": "k"})
    error(r, 400, "project_id")
    assert keyed.store._version == versions
    assert len(keyed.store.projects) == 1 and not keyed.store.keys
    assert all(e.outcome == "error" for e in keyed.store.audit[audit:])
    assert error(keyed.admin("GET", "/admin/keys/nope"), 404)["code"] == "not_found"
    assert error(keyed.admin("DELETE", f"/admin/projects/{p['id']}"), 405)
    # twice: deactivating and revoking
    assert keyed.admin("PATCH", f"/admin/projects/{p['id']}", json={"active": False}).is_success
    error(keyed.admin("PATCH", f"/admin/projects/{p['id']}", json={"active": False}), 409, "active")
    k = keyed.key()
    assert keyed.admin("DELETE", f"/admin/keys/{k['id']}").status_code == 204
    error(keyed.admin("POST", f"/admin/keys/{k['id']}/revoke"), 409, "active")
    bad_json = keyed.admin("POST", "/admin/projects", content=b"{nope")
    assert bad_json.status_code == 400


def test_a_key_reads_only_its_own_projects_requests(keyed: Keyed) -> None:
    mine, theirs = keyed.key(), keyed.key()
    ok = keyed.chat(mine["key"])
    other = keyed.chat(theirs["key"])
    assert ok.status_code == other.status_code == 200
    keyed.stack.last_record(2)
    time.sleep(0.5)  # the recorder's flush
    auth = {"authorization": f"Bearer {mine['key']}"}
    page = httpx.get(keyed.url + "/v1/requests", headers=auth).json()
    assert [r["id"] for r in page["data"]] == [ok.headers["x-arbstr-request-id"]]
    asked = httpx.get(
        keyed.url + "/v1/requests", params={"project_id": theirs["project_id"]}, headers=auth
    ).json()
    assert asked["total"] == 1  # the scope wins over the filter it asked for
    theirs_id = other.headers["x-arbstr-request-id"]
    assert httpx.get(keyed.url + f"/v1/requests/{theirs_id}", headers=auth).status_code == 404
    detail = httpx.get(
        keyed.url + f"/v1/requests/{ok.headers['x-arbstr-request-id']}", headers=auth
    )
    assert detail.json()["key_id"] == mine["id"]
    assert detail.json()["charged_sats"] == pytest.approx(1.4)
    stats = httpx.get(keyed.url + "/v1/stats", headers=auth).json()
    assert stats["counts"]["total"] == 1
    admin = keyed.admin("GET", "/v1/stats").json()
    assert admin["counts"]["total"] == 2
    grouped = keyed.admin("GET", "/v1/stats", params={"group_by": "key"}).json()
    assert set(grouped["keys"]) == {mine["id"], theirs["id"]}
    by_project = keyed.admin("GET", "/v1/stats", params={"group_by": "project"}).json()
    assert by_project["projects"][mine["project_id"]]["counts"]["total"] == 1
    usage = keyed.admin("GET", f"/admin/keys/{mine['id']}/usage").json()
    assert usage["counts"]["total"] == 1 and usage["costs"]["total_cost_sats"] == pytest.approx(1.4)


def test_a_streamed_request_is_charged_and_a_cut_one_for_what_was_streamed(
    keyed: Keyed,
) -> None:
    made = keyed.key(budget_sats=1000.0)
    auth = {"authorization": f"Bearer {made['key']}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 40}],
            "stream": True, "max_tokens": 10}  # fmt: skip
    with httpx.stream("POST", keyed.url + "/v1/chat/completions", json=body, headers=auth) as r:
        assert r.status_code == 200
        assert "x-arbstr-budget-remaining-sats" in r.headers
        text = "".join(r.iter_text())
    assert text.endswith("data: [DONE]\n\n")
    record = keyed.stack.last_record(1)
    assert record.stream_status == "completed" and record.charged_sats == record.cost_sats
    keyed.stack.sim("alpha").profile = SimProfile(tokens_per_s=20, chunks=50)
    with httpx.stream("POST", keyed.url + "/v1/chat/completions", json=body, headers=auth) as r:
        for _ in r.iter_bytes():
            break  # leave after the first bytes
    deadline = time.monotonic() + 5
    while len(keyed.stack.sink.records) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    cut = keyed.stack.sink.records[-1]
    assert cut.stream_status == "client_disconnected"
    assert cut.cost_sats is None and cut.charged_sats is not None
    assert 1.0 <= cut.charged_sats < 1.4  # the base fee and input, plus what was streamed


def test_a_project_brings_its_own_upstream_key(stack: StackFactory) -> None:
    os.environ["ARBSTR_ENCRYPTION_KEY"] = base64.b64encode(b"k" * 32).decode()
    try:
        k = keyed_fixture(stack, specs=[PRICED])
        made = k.key()
        own = "sk-own-upstream-key-0123456789"
        r = k.admin("PUT", f"/admin/projects/{made['project_id']}/provider-keys/alpha",
                    json={"api_key": own})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["provider_keys"] == {"alpha": "sk-own...***"}
        assert own not in r.text
        time.sleep(0.1)
        assert k.chat(made["key"]).status_code == 200
        assert k.stack.sim("alpha").last_headers["authorization"] == f"Bearer {own}"
        error(k.admin("PUT", f"/admin/projects/{made['project_id']}/provider-keys/zeta",
                      json={"api_key": own}), 404, "provider")  # fmt: skip
        gone = k.admin("DELETE", f"/admin/projects/{made['project_id']}/provider-keys/alpha")
        assert gone.status_code == 204
        time.sleep(0.1)
        assert k.chat(made["key"]).status_code == 200
        assert k.stack.sim("alpha").last_headers.get("authorization") != f"Bearer {own}"
        stored = [msgspec.json.encode(e).decode() for e in k.store.audit]
        assert not any(own in s for s in stored)
    finally:
        del os.environ["ARBSTR_ENCRYPTION_KEY"]


def test_no_secret_anywhere(stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    k = keyed_fixture(
        stack,
        specs=[
            SimSpec("alpha", api_key="sk-provider-secret-0123456789", models=["gpt-4o-mini"])
        ],  # fmt: skip
        head=AUTH_HEAD,
    )
    made = k.key(budget_sats=100.0)
    rotated = k.admin("POST", f"/admin/keys/{made['id']}/rotate", json={"grace_s": 5}).json()
    secrets = [made["key"], rotated["key"], ADMIN, "sk-provider-secret-0123456789"]
    seen: list[str] = []
    for key in (made["key"], rotated["key"], "sk-arb-aaaaaaaaaaaa-" + "q" * 43):
        r = k.chat(key)
        seen += [r.text, str(r.headers)]
    for path in ("/admin/keys", f"/admin/keys/{made['id']}", "/admin/projects", "/admin/audit",
                 "/v1/requests", "/providers", "/schema"):  # fmt: skip
        r = k.admin("GET", path)
        seen += [r.text, str(r.headers)]
    time.sleep(0.5)
    seen += [msgspec.json.encode(e).decode() for e in k.store.audit]
    seen += [msgspec.json.encode(r).decode() for r in k.stack.sink.records]
    seen += [msgspec.json.encode(r).decode() for r in k.store.keys.values()]
    seen += [record.getMessage() for record in caplog.records]
    text = "\n".join(seen)
    for secret in secrets:
        assert secret not in text
