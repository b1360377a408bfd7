"""The dashboard over real sockets (httpx; the browser tests are a separate mark): pages render
from the request log, filters are query parameters, login and logout with a session cookie and
CSRF, security headers on every page, bad parameters give a page that says what was wrong, and
no page holds a secret."""

from __future__ import annotations

import re

import httpx

from .conftest import SimSpec, StackFactory
from .keyed import ADMIN, PRICED, Keyed, keyed, keyed_fixture

__all__ = ["keyed"]


def traffic(url: str, n: int = 3, headers: dict[str, str] | None = None) -> list[str]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    ids = []
    for _ in range(n):
        r = httpx.post(url + "/v1/chat/completions", json=body, headers=headers or {})
        ids.append(r.headers["x-arbstr-request-id"])
    return ids


def test_pages_render_with_auth_off_behind_a_banner(stack: StackFactory) -> None:
    s = stack([SimSpec("alpha", models=["gpt-4o-mini"])])
    ids = traffic(s.url)
    s.last_record(3)
    import time

    time.sleep(0.5)  # the recorder's flush
    root = httpx.get(s.url + "/")
    assert root.status_code == 200 and 'href="/ui"' in root.text
    for path in ("/ui", "/ui?range=last_1h", "/ui/requests", "/ui/requests?success=true",
                 f"/ui/requests/{ids[0]}", "/ui/audit"):  # fmt: skip
        r = httpx.get(s.url + path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "Auth is off" in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
    overview = httpx.get(s.url + "/ui").text
    assert "<svg" in overview and "<title>Requests per" in overview
    assert re.search(r"<strong>3</strong>", overview)  # the requests tile
    listed = httpx.get(s.url + "/ui/requests").text
    assert all(f"/ui/requests/{i}" in listed for i in ids)
    detail = httpx.get(s.url + f"/ui/requests/{ids[0]}").text
    assert "alpha" in detail and "formula" in detail
    css = httpx.get(s.url + "/ui/static/arbstr.css")
    assert css.status_code == 200 and "prefers-color-scheme" in css.text


def test_bad_parameters_give_a_page_that_says_what_was_wrong(stack: StackFactory) -> None:
    s = stack([SimSpec("alpha")])
    for path, word in [("/ui?range=forever", "range"), ("/ui/requests?sort=price", "sort"),
                       ("/ui/requests?page=-1", "page"), ("/ui/requests?since=yesterday", "since"),
                       ("/ui/audit?page=x", "page")]:  # fmt: skip
        r = httpx.get(s.url + path)
        assert r.status_code == 400, path
        assert "That did not work" in r.text and word in r.text
        assert "Traceback" not in r.text
    assert httpx.get(s.url + "/ui/requests/nope").status_code == 404


def test_login_session_csrf_and_logout(keyed: Keyed) -> None:
    made = keyed.key()
    traffic(keyed.url, 2, {"authorization": f"Bearer {made['key']}"})
    with httpx.Client(base_url=keyed.url) as client:
        first = client.get("/ui")
        assert first.status_code in (302, 303, 307) and "/ui/login" in first.headers["location"]
        form = client.get("/ui/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
        wrong = client.post("/ui/login", data={"token": "nope", "login_csrf": token})
        assert wrong.status_code == 401 and "not the admin token" in wrong.text
        forged = client.post("/ui/login", data={"token": ADMIN, "login_csrf": "forged"})
        assert forged.status_code == 403  # the right token, but not from our form
        token = re.search(r'name="login_csrf" value="([^"]+)"', forged.text).group(1)
        ok = client.post("/ui/login", data={"token": ADMIN, "login_csrf": token, "next": "/ui"})
        assert ok.status_code == 303, ok.text
        cookie = next(c for c in ok.headers.get_list("set-cookie") if "arbstr_session=" in c)
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain http here; Secure when served over TLS
        page = client.get("/ui")
        assert page.status_code == 200 and "Auth is off" not in page.text
        for path in ("/ui", "/ui/requests", "/ui/audit"):
            html = client.get(path).text
            assert made["key"] not in html and ADMIN not in html
        audit = client.get("/ui/audit?action=admin.login").text
        assert "admin.login" in audit
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert client.post("/ui/logout", data={}).status_code == 403  # no CSRF token
        out = client.post("/ui/logout", data={"csrf": csrf})
        assert out.status_code == 303
        client.cookies.clear()
        again = client.get("/ui")
        assert again.status_code in (302, 303, 307)
    failures = [e for e in keyed.store.audit if e.action == "admin.login"]
    assert len(failures) == 1 and failures[0].outcome == "success"


def test_a_session_ends_when_the_admin_token_changes(stack: StackFactory) -> None:
    from arbstr.api.ui.session import Sessions

    old, new = Sessions("token-one-0123456789"), Sessions("token-two-0123456789")
    cookie = old.issue()
    assert old.nonce(cookie) is not None
    assert new.nonce(cookie) is None
    assert old.nonce(cookie, now=10**12) is None  # expired
    assert old.nonce(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None
    k = keyed_fixture(stack, specs=[PRICED])
    stale = httpx.get(k.url + "/ui", cookies={"arbstr_session": cookie})
    assert stale.status_code in (302, 303, 307)


def test_providers_page_and_its_live_part(stack: StackFactory) -> None:
    s = stack([SimSpec("alpha", models=["gpt-4o-mini"], api_key="sk-provider-secret-0123456789")])
    traffic(s.url, 2)
    page = httpx.get(s.url + "/ui/providers")
    assert page.status_code == 200, page.text[:2000]
    assert "alpha" in page.text and 'src="/ui/static/live.js"' in page.text
    assert "sk-provider-secret-0123456789" not in page.text and "sk-pro...***" in page.text
    live = httpx.get(s.url + "/ui/providers?partial=1")
    assert live.status_code == 200 and "<table>" in live.text and "closed" in live.text
    assert httpx.get(s.url + "/ui/static/live.js").status_code == 200


def test_keys_page_creates_shows_once_rotates_and_revokes(keyed: Keyed) -> None:
    with httpx.Client(base_url=keyed.url) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
        client.post("/ui/login", data={"token": ADMIN, "login_csrf": token})
        page = client.get("/ui/keys")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert client.post("/ui/projects", data={"name": "web"}).status_code == 403  # no CSRF
        made = client.post("/ui/projects", data={"csrf": csrf, "name": "web", "budget_sats": "50"})
        assert "project web" in made.text
        bad = client.post("/ui/projects", data={"csrf": csrf, "name": "x", "budget_sats": "-3"})
        assert "budget_sats" in bad.text
        project_id = next(iter(keyed.store.projects))
        created = client.post("/ui/keys", data={"csrf": csrf, "project_id": project_id,
                                                "name": "bot", "rpm": "5"})  # fmt: skip
        plaintext = re.search(r'id="plaintext" readonly value="(sk-arb-[^"]+)"', created.text)
        assert plaintext, created.text[:2000]
        key_id = next(iter(keyed.store.keys))
        listed = client.get("/ui/keys").text
        assert key_id in listed and plaintext.group(1) not in listed  # the id, never the key
        rotated = client.post(f"/ui/keys/{key_id}/rotate", data={"csrf": csrf})
        assert "rotated" in rotated.text and plaintext.group(1) not in rotated.text
        revoked = client.post(f"/ui/keys/{key_id}/revoke", data={"csrf": csrf})
        assert "revoked" in revoked.text
    assert not keyed.store.keys[key_id].active
    assert [e.action for e in keyed.store.audit][-3:] == ["key.create", "key.rotate", "key.revoke"]


def test_the_candidate_test_calls_every_candidate_once(stack: StackFactory) -> None:
    from arbstr.sim import SimProfile

    s = stack([
        SimSpec("cheap", input_rate=1, models=["gpt-4o-mini"],
                profile=SimProfile(failure_rate=1.0, failure_status=503)),
        SimSpec("dear", input_rate=9, models=["gpt-4o-mini"]),
    ])  # fmt: skip
    r = httpx.post(s.url + "/v1/test/gpt-4o-mini", json={"prompt": "hello there"})
    assert r.status_code == 200, r.text
    body = r.json()
    by = {x["provider"]: x for x in body["results"]}
    assert by["cheap"]["status"] == 503 and by["dear"]["status"] == 200
    assert by["dear"]["answer"] and by["dear"]["cost_sats"] > 0
    assert body["summary"] == {"ok": 1, "failed": 1, "cheapest": "dear", "fastest": "dear"}
    assert s.sim("cheap").chat_hits == 1 and s.sim("dear").chat_hits == 1  # once each
    assert httpx.post(s.url + "/v1/test/nope", json={}).status_code == 400
    assert httpx.post(s.url + "/v1/test/gpt-4o-mini", json={"x": 1}).status_code == 400
    assert {rec.endpoint for rec in s.sink.records} == {"test"}


def test_the_playground_answers_streams_and_compares_as_the_operator(keyed: Keyed) -> None:
    with httpx.Client(base_url=keyed.url) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
        client.post("/ui/login", data={"token": ADMIN, "login_csrf": token})
        page = client.get("/ui/playground")
        assert page.status_code == 200 and "gpt-4o-mini" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        form_data = {"csrf": csrf, "model": "gpt-4o-mini", "prompt": "hi", "action": "run"}
        assert client.post("/ui/playground", data={**form_data, "csrf": "x"}).status_code == 403
        answered = client.post("/ui/playground", data=form_data)
        assert answered.status_code == 200 and "alpha" in answered.text
        with client.stream("POST", "/ui/playground/stream", data=form_data) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            text = "".join(r.iter_text())
        assert '"arbstr"' in text and text.endswith("data: [DONE]\n\n")
        tested = client.post("/ui/playground", data={**form_data, "action": "test"})
        assert "Every candidate of gpt-4o-mini" in tested.text
    assert {r.endpoint for r in keyed.stack.sink.records} >= {"chat", "test"}
    assert all(r.key_id is None for r in keyed.stack.sink.records)  # the operator, no key
    # the operator path is the dashboard's only: the proxy still refuses a request without a key
    assert httpx.post(keyed.url + "/v1/chat/completions", json={}).status_code == 401


def test_a_submitted_filter_form_with_empty_fields_is_not_an_error(stack: StackFactory) -> None:
    s = stack([SimSpec("alpha")])
    r = httpx.get(s.url + "/ui/requests?model=&provider=alpha&key_id=&success=&sort=timestamp")
    assert r.status_code == 200, r.text[:300]
    assert httpx.get(s.url + "/ui?range=last_1h&since=&until=").status_code == 200


def test_no_page_holds_a_secret(stack: StackFactory) -> None:
    provider_key = "sk-provider-secret-0123456789"
    spec = SimSpec("alpha", models=["gpt-4o-mini"], api_key=provider_key)
    k = keyed_fixture(stack, specs=[spec])
    made = k.key(budget_sats=10.0)
    traffic(k.url, 2, {"authorization": f"Bearer {made['key']}"})
    k.stack.last_record(2)
    with httpx.Client(base_url=k.url) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
        client.post("/ui/login", data={"token": ADMIN, "login_csrf": token})
        pages = ["/", "/ui", "/ui/requests", "/ui/providers", "/ui/providers?partial=1",
                 "/ui/keys", "/ui/audit", "/ui/playground"]  # fmt: skip
        pages += [f"/ui/requests/{r.id}" for r in k.stack.sink.records]
        for path in pages:
            r = client.get(path)
            assert r.status_code == 200, path
            for secret in (provider_key, ADMIN, made["key"]):
                assert secret not in r.text, (path, secret[:6])
                assert secret not in str(r.headers), (path, secret[:6])


def test_limits_are_edited_and_a_project_deactivated_from_the_dashboard(keyed: Keyed) -> None:
    made = keyed.key(rpm=5)
    with httpx.Client(base_url=keyed.url) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
        client.post("/ui/login", data={"token": ADMIN, "login_csrf": token})
        page = client.get(f"/ui/edit/keys/{made['id']}")
        assert page.status_code == 200 and 'value="5"' in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        saved = client.post(f"/ui/edit/keys/{made['id']}", data={
            "csrf": csrf, "name": "renamed", "rpm": "", "budget_sats": "12.5",
            "budget_period": "daily", "tpm": "", "allowed_models": "gpt-4o", "max_requests": "9",
        })  # fmt: skip
        assert "updated" in saved.text, saved.text[:500]
        bad = client.post(f"/ui/edit/keys/{made['id']}", data={"csrf": csrf, "rpm": "-1"})
        assert "rpm" in bad.text
        row = keyed.store.keys[made["id"]]
        assert (row.name, row.rpm, row.budget_sats, row.max_requests) == ("renamed", None, 12.5, 9)
        assert row.allowed_models == ["gpt-4o"]
        off = client.post(f"/ui/edit/projects/{made['project_id']}",
                          data={"csrf": csrf, "deactivate": "1"})  # fmt: skip
        assert "updated" in off.text
    assert not keyed.store.projects[made["project_id"]].active
    assert keyed.chat(made["key"], model="gpt-4o").json()["error"]["code"] == "project_inactive"


def test_a_cooling_provider_shows_when_its_cooldown_ends(stack: StackFactory) -> None:
    from arbstr.sim import SimProfile

    s = stack([SimSpec("alpha", models=["gpt-4o-mini"],
                       profile=SimProfile(rate_limited=True, retry_after="30"))])  # fmt: skip
    traffic(s.url, 1)
    live = httpx.get(s.url + "/ui/providers?partial=1").text
    assert re.search(r"until \d\d:\d\d:\d\d UTC", live), live
    page = httpx.get(s.url + "/ui/requests?project_id=nope")
    assert page.status_code == 200 and 'name="project_id" value="nope"' in page.text
