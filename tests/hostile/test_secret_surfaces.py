"""Every secret, every surface: a gateway process (`arbstr serve`, SQLite, auth on, debug logs)
holds a provider key, an admin token, an encryption key, a project's own upstream key and a
virtual key; its upstream echoes the key it was sent in error bodies and stream errors. None
of them may appear in any answer or header, /metrics, the dashboard's HTML, the audit log, the
request log (the database file's bytes), a spill file, the process's output, or what a bad
config prints."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from arbstr.cluster import free_port, wait_ready
from tests.e2e.raw import RawUpstream

pytestmark = pytest.mark.hostile

PROVIDER_KEY = "sk-prov-SECRET-7f3a9c1e5b"
PROJECT_KEY = "sk-proj-SECRET-2d8e4f6a0c"
ADMIN = "admin-SECRET-token-4b6d8f0a2c"
ENCRYPTION = base64.b64encode(b"E" * 32).decode()


def echo(request: bytes) -> list[bytes | float]:
    """Answers 500 with the key it was sent; a stream request gets a stream that errors."""
    auth = next(
        (ln for ln in request.split(b"\r\n") if ln.lower().startswith(b"authorization:")), b""
    )
    sent = auth.split(b" ")[-1]
    if b'"stream":true' in request.replace(b" ", b""):
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        event = b'data: {"error":{"message":"bad key %s"}}\n\n' % sent
        return [head, event]
    body = b'{"error":{"message":"invalid key %s","type":"auth"}}' % sent
    head = b"HTTP/1.1 500 X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return [head % len(body) + body]


def secrets_in(text: str | bytes, secrets: list[str]) -> list[str]:
    blob = text if isinstance(text, bytes) else text.encode()
    return [s for s in secrets if s.encode() in blob]


def test_no_secret_on_any_surface(tmp_path: Path, raw: list[RawUpstream]) -> None:
    upstream = RawUpstream(echo)
    raw.append(upstream)
    port = free_port()
    config = tmp_path / "arbstr.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[database]\nurl = "sqlite:///{tmp_path}/a.db"\n'
        f'spill_path = "{tmp_path}/spill.jsonl"\n[logging]\nlevel = "debug"\n'
        f'[auth]\nenabled = true\nadmin_token = "${{ARBSTR_ADMIN}}"\n'
        f'[[providers]]\nname = "p"\nurl = "{upstream.url}"\napi_key = "${{PROV_KEY}}"\n'
        'models = ["m"]\n'
    )
    config.chmod(0o600)
    env = {**os.environ, "ARBSTR_ADMIN": ADMIN, "PROV_KEY": PROVIDER_KEY,
           "ARBSTR_ENCRYPTION_KEY": ENCRYPTION}  # fmt: skip
    log = (tmp_path / "out.log").open("wb")
    gw = subprocess.Popen(
        [sys.executable, "-m", "arbstr", "serve", "--config", str(config)],
        stdout=log, stderr=log, cwd=tmp_path, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    seen: list[str] = []
    secrets = [PROVIDER_KEY, PROJECT_KEY, ADMIN, ENCRYPTION]
    try:
        wait_ready(url, gw, "the gateway", 30)
        admin = {"authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=url, timeout=20) as c:

            def call(method: str, path: str, **kw: object) -> httpx.Response:
                r = c.request(method, path, **kw)  # type: ignore[arg-type]
                seen.append(f"{method} {path} {r.status_code} {r.headers}\n{r.text}")
                return r

            project = call("POST", "/admin/projects", json={"name": "p1"}, headers=admin).json()
            call("PUT", f"/admin/projects/{project['id']}/provider-keys/p",
                 json={"api_key": PROJECT_KEY}, headers=admin)  # fmt: skip
            created = call("POST", "/admin/keys", headers=admin,
                           json={"project_id": project["id"], "name": "k"}).json()  # fmt: skip
            vkey = created["key"]
            secrets.append(vkey)
            seen.pop()  # the one answer that must show the virtual key: its creation
            time.sleep(0.6)  # the key mirror has it
            user = {"authorization": f"Bearer {vkey}"}
            chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            call("POST", "/v1/chat/completions", json=chat, headers=user)
            call("POST", "/v1/chat/completions", json={**chat, "stream": True}, headers=user)
            call("POST", "/v1/chat/completions", json=chat, headers={"authorization": "Bearer x"})
            call("POST", "/v1/embeddings", json={"model": "m", "input": "x"}, headers=user)
            call("GET", "/v1/key", headers=user)
            for path in ("/providers", "/health", "/health/ready", "/v1/models", "/metrics",
                         "/v1/stats", "/v1/requests", "/v1/ratelimits", "/admin/audit",
                         "/admin/projects", "/admin/keys", f"/admin/projects/{project['id']}",
                         "/schema/openapi.json"):  # fmt: skip
                call("GET", path, headers=admin)
            rows = c.get("/v1/requests", headers=admin).json()
            for row in rows.get("data", rows.get("requests", []))[:5]:
                call("GET", f"/v1/requests/{row['id']}", headers=admin)
            call("POST", "/admin/reload", headers=admin)
            call("PUT", "/admin/providers/q", headers=admin,
                 json={"url": "http://127.0.0.1:9/v1", "api_key": "sk-typed-in-SECRET-99"})  # fmt: skip
            secrets.append("sk-typed-in-SECRET-99")
            form = c.get("/ui/login")
            csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            c.post("/ui/login", data={"token": ADMIN, "login_csrf": csrf.group(1)})
            for page in ("/ui", "/ui/requests", "/ui/audit", "/ui/keys", "/ui/providers",
                         "/ui/playground", f"/ui/edit/project/{project['id']}"):  # fmt: skip
                call("GET", page)
        assert any("invalid key" in s or "error" in s for s in seen)  # the echo did happen
        assert upstream.requests and PROJECT_KEY.encode() in upstream.requests[0]
    finally:
        gw.terminate()
        gw.wait(30)
        log.close()
    leaks = {}
    for i, text in enumerate(seen):
        if found := secrets_in(text, secrets):
            leaks[f"answer {i}: {text[:80]}"] = found
    output = (tmp_path / "out.log").read_bytes()
    assert b"virtual keys:" in output  # arbstr's own log lines are in it
    leaks["process output"] = secrets_in(output, secrets)
    for f in tmp_path.iterdir():  # the database, its WAL, any spill file
        if f.name.startswith(("a.db", "spill")):
            leaks[f.name] = secrets_in(f.read_bytes(), [s for s in secrets if s != ENCRYPTION])
    # the config the admin API wrote holds the typed-in key: that file is the one place it goes
    assert "sk-typed-in-SECRET-99" in config.read_text() and (config.stat().st_mode & 0o077) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text() + "\n[nonsense]\nx = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "arbstr", "serve", "--config", str(bad)],
        capture_output=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode != 0
    leaks["bad config output"] = secrets_in(out.stdout + out.stderr, secrets)
    check = subprocess.run(
        [sys.executable, "-m", "arbstr", "check", "--config", str(config)],
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    leaks["check output"] = secrets_in(check.stdout + check.stderr, secrets)
    assert {k: v for k, v in leaks.items() if v} == {}
