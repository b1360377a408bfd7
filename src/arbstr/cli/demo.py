"""`arbstr demo`: three local simulated providers behind the gateway, and traffic for them."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from arbstr.cli.config_cmds import out
from arbstr.cli.serve import ListenOpt, Server, ServerOpt, exit_if_taken, run_server, split_listen
from arbstr.secrets import convention_var

__all__ = ["DEMO_PROVIDERS", "demo", "demo_config", "demo_profiles"]


DEMO_PROVIDERS = (
    # name, profile, input rate, output rate, base fee, description
    ("cheap-flaky", "flaky", 2.0, 6.0, 0.0, "cheapest; fails half of its requests"),
    ("mid-limited", "ratelimited", 5.0, 15.0, 0.0, "rate-limited (answers 429, retry-after 5)"),
    ("steady", "healthy", 10.0, 30.0, 1.0, "most expensive; always healthy"),
)
# the flaky provider's first answers: the very first request shows a failover and a cooldown
DEMO_FLAKY_SCRIPT = [503, 200, 503, 503, 200]


def demo_config(urls: list[str], listen: str, db: str, admin_token: str | None = None) -> str:
    lines = [
        *(["[auth]", "enabled = true", f'admin_token = "{admin_token}"'] if admin_token else []),
        "[server]",
        f'listen = "{listen}"',
        "[database]",
        f'url = "sqlite:///{db}"',
        "[reliability]",
        "max_retries = 0  # a failure moves on at once: failovers show on the first requests",
        "circuit_open_s = 10",
        "cooldown_default_s = 15",
    ]
    for (name, _, inp, outp, fee, _desc), url in zip(DEMO_PROVIDERS, urls, strict=True):
        lines += [
            "[[providers]]",
            f'name = "{name}"',
            f'url = "{url}"',
            'models = ["gpt-4o-mini", "gpt-4o"]',
            f"input_rate = {inp}",
            f"output_rate = {outp}",
            f"base_fee = {fee}",
        ]
    lines += [
        "[[chains]]",
        'name = "waterfall"',
        'entries = [{ provider = "mid-limited", model = "gpt-4o-mini" },'
        ' { provider = "steady", model = "gpt-4o-mini" }]',
    ]
    return "\n".join(lines) + "\n"


def demo_profiles() -> list[Any]:
    from arbstr.sim import builtin_profile

    profiles = []
    for name, profile, *_ in DEMO_PROVIDERS:
        extra: dict[str, Any] = {}
        if profile == "flaky":
            extra = {"failure_rate": 0.5, "status_script": list(DEMO_FLAKY_SCRIPT)}
        profiles.append(builtin_profile(profile, name=name, **extra))
    return profiles


def demo_banner(
    base: str, urls: list[str], config: Path, keys: tuple[str, str] | None = None
) -> str:
    lines = ["arbstr demo: three SIMULATED providers (no real API is called)"]
    auth = ""
    if keys is not None:
        auth = f" -H 'authorization: Bearer {keys[1]}'"
    for (name, _p, inp, outp, fee, desc), url in zip(DEMO_PROVIDERS, urls, strict=True):
        lines.append(
            f"  {name:<12} {url:<28} {inp:g}/{outp:g} sats per 1k in/out, fee {fee:g}: {desc}"
        )
    lines += [
        f"\nGateway on {base}  (config: {config})",
        f"Dashboard: {base}/ui",
        "Try:",
        f"  curl -si {base}/v1/chat/completions -H 'content-type: application/json'{auth} \\",
        '    -d \'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}\'',
        f"  curl -s {base}/health",
        f"  curl -s {base}/v1/requests{auth}",
        f"  curl -s {base}/v1/stats{auth}",
        "The demo sends a request every 2 s (--no-traffic to stop it): watch the dashboard.",
        "What to look for in the response headers, request after request:",
        "  x-arbstr-provider   cheap-flaky when it answers; steady when it failed (a failover)",
        "  x-arbstr-retries    1/cheap-flaky, 1/mid-limited: the failed attempts behind an answer",
        "  x-arbstr-cost-sats  the true cost of this request from the upstream's usage",
        '  model "waterfall" walks mid-limited -> steady; mid-limited cools down after its 429',
        "  (see /v1/ratelimits). Stop with Ctrl-C.",
    ]
    if keys is not None:
        lines[1:1] = [
            "Virtual keys are ON (--auth); these are printed once:",
            f"  admin token  {keys[0]}   (/admin/*, /metrics, /providers: arbstr keys ...)",
            f"  virtual key  {keys[1]}   (project 'demo', budget 10000 sats/day, 60 rpm)",
            f"  e.g. curl -s {base}/admin/keys -H 'authorization: Bearer {keys[0]}'",
        ]
    return "\n".join(lines)


def _demo_key(config: Path) -> str:
    """A project and a key in the demo's database (the CLI's path: no server needed)."""
    import asyncio

    from arbstr.config import load_settings
    from arbstr.keys.admin import Actor, KeyAdmin
    from arbstr.keys.schemas import KeyCreate, ProjectCreate
    from arbstr.stores.keys import open_key_store
    from arbstr.stores.requestlog import open_request_log

    url = load_settings(config, need_keys=False).config.database.effective_url

    async def make() -> str:
        store, log = open_key_store(url), open_request_log(url)
        try:
            await log.migrate()
            await store.migrate()
            admin = KeyAdmin(store, log, set())
            project = await admin.create_project(ProjectCreate(name="demo"), Actor("cli"))
            body = KeyCreate(
                project_id=project.id, name="demo", budget_sats=10_000.0, budget_period="daily",
                rpm=60,
            )  # fmt: skip
            made = await admin.create_key(body, Actor("cli"))
            assert made.key is not None
            return made.key
        finally:
            await store.aclose()
            await log.aclose()

    return asyncio.run(make())


def demo(
    listen: ListenOpt = None,
    server: ServerOpt = Server.uvicorn,
    auth: Annotated[
        bool, typer.Option("--auth", help="Virtual keys on: print an admin token and a key")
    ] = False,
    traffic: Annotated[
        bool,
        typer.Option(
            "--traffic/--no-traffic", help="Send a request every 2 s so the dashboard has data"
        ),
    ] = True,
) -> None:
    """Three local simulated providers (cheap+flaky, rate-limited, steady) behind the gateway."""
    from arbstr.sim import run_in_thread

    listen = listen or "127.0.0.1:8080"
    host, port = split_listen(listen)
    exit_if_taken(host, port)
    with (
        tempfile.TemporaryDirectory(prefix="arbstr-demo-") as workdir,
        run_in_thread(demo_profiles()) as cluster,
    ):
        path = Path(workdir) / "arbstr.toml"
        admin = secrets.token_urlsafe(24) if auth else None
        path.write_text(demo_config(cluster.urls, listen, str(Path(workdir) / "arbstr.db"), admin))
        path.chmod(0o600)
        keys = (admin, _demo_key(path)) if admin is not None else None
        os.environ["ARBSTR_CONFIG"] = str(path)
        for name, *_ in DEMO_PROVIDERS:  # keys by the env convention, as a real setup should
            os.environ[convention_var(name)] = f"sim-{name}-key-not-a-secret"
        banner = demo_banner(f"http://{host}:{port}", cluster.urls, path, keys)

        def ready() -> None:
            out.print(banner, markup=False)
            if traffic:
                key = keys[1] if keys is not None else None
                threading.Thread(
                    target=demo_traffic, args=(f"http://{host}:{port}", key), daemon=True
                ).start()

        run_server(host, port, 1, server, on_ready=ready)


def demo_traffic(base: str, key: str | None, every_s: float = 2.0) -> None:
    """A request every `every_s` seconds, alternating the cheapest model and the waterfall
    chain: within a minute the overview shows routing, failovers and a cooldown."""
    import time

    import httpx

    headers = {"authorization": f"Bearer {key}"} if key else {}
    models = ["gpt-4o-mini", "waterfall", "gpt-4o"]
    with httpx.Client(timeout=10, headers=headers) as client:
        for i in itertools.count():
            body = {
                "model": models[i % len(models)],
                "messages": [{"role": "user", "content": f"demo request {i}"}],
            }
            with contextlib.suppress(httpx.HTTPError):
                client.post(base + "/v1/chat/completions", json=body)
            time.sleep(every_s)
