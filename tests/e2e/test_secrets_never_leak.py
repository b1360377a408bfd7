"""No configured key appears in any response, header, log line or CLI output."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from arbstr.cli import app as cli
from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory

KEYS = ["sk-alpha-SECRET-0123456789", "sk-beta-SECRET-9876543210"]


def test_keys_never_leak(
    stack: StackFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    s = stack(
        [
            SimSpec("alpha", SimProfile(status_script=[401, 500, 200]), api_key=KEYS[0]),
            SimSpec("beta", SimProfile(status_script=[200, 429]), api_key=KEYS[1], input_rate=50),
        ]
    )
    seen: list[str] = []
    with s.client() as c:
        calls = [
            (
                "POST",
                "/v1/chat/completions",
                {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            ),
            (
                "POST",
                "/v1/chat/completions",
                {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            ),
            (
                "POST",
                "/v1/chat/completions",
                {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            ),
            ("POST", "/v1/chat/completions", {"model": "m"}),
            ("POST", "/v1/embeddings", {"model": "m", "input": "x"}),
            ("POST", "/v1/cost", {"model": "m", "messages": []}),
            ("GET", "/providers", None),
            ("GET", "/health", None),
            ("GET", "/v1/models", None),
            ("GET", "/nope", None),
        ]
        for method, path, body in calls:
            response = c.request(method, path, json=body)
            seen.append(str(response.headers))
            seen.append(response.text)
    # the upstream did receive the right key (otherwise this test proves nothing)
    last = httpx.get(s.sims.urls[0].removesuffix("/v1") + "/_sim/stats").json()
    assert last["last_headers"]["authorization"] == f"Bearer {KEYS[0]}"

    seen.append(caplog.text)
    config = tmp_path / "arbstr.toml"
    config.write_text(
        "".join(
            f'[[providers]]\nname = "p{i}"\nurl = "http://127.0.0.1:9/v1"\napi_key = "{k}"\n'
            for i, k in enumerate(KEYS)
        )
    )
    config.chmod(0o644)
    runner = CliRunner()
    for args in (
        ["check", "-c", str(config)],
        ["providers", "-c", str(config)],
        ["providers", "--masked", "-c", str(config)],
        ["providers", "--json", "-c", str(config)],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        seen.append(result.output)
    blob = "\n".join(seen)
    for key in KEYS:
        assert key not in blob
        assert key[8:] not in blob
