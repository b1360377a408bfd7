"""CLI: check, providers and init answer from the config alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arbstr.cli import app

runner = CliRunner()

GOOD = """
[[providers]]
name = "alpha"
url = "https://alpha.example/v1"
api_key = "${TEST_ALPHA_KEY}"
models = ["gpt-4o"]
input_rate = 10
output_rate = 30
base_fee = 1
[[providers]]
name = "beta-two"
url = "https://beta.example/v1"
[[policies.rules]]
name = "code"
keywords = ["code"]
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "arbstr.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_check_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALPHA_KEY", "sk-abcdefghijklmnopqrstuvwxyz")
    result = runner.invoke(app, ["check", "-c", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "Configuration is valid!" in result.output
    assert "Listen: 127.0.0.1:8080" in result.output
    assert "Providers: 2" in result.output
    assert "Policies: 1" in result.output
    # one line per provider: its name and its key source label, `none` included
    assert "  alpha: env-expanded\n" in result.output
    assert "  beta-two: none (set ARBSTR_BETA_TWO_API_KEY or api_key)\n" in result.output


def test_check_uses_env_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALPHA_KEY", "k")
    monkeypatch.setenv("ARBSTR_CONFIG", str(write(tmp_path, GOOD)))
    assert runner.invoke(app, ["check"]).exit_code == 0


def test_check_permission_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALPHA_KEY", "k")
    result = runner.invoke(app, ["check", "-c", str(write(tmp_path, GOOD, 0o644))])
    assert result.exit_code == 0
    assert "WARNING" in result.output
    assert "chmod 600" in result.output


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            GOOD.replace("${TEST_ALPHA_KEY}", "") * 2,
            "providers[2].name: duplicate provider name 'alpha'",
        ),
        (
            '[[providers]]\nname = "x"\nurl = "localhost"\n',
            "providers[0].url: must be an http(s) URL",
        ),
        (
            GOOD,
            "providers[0].api_key: provider 'alpha': environment variable TEST_ALPHA_KEY is not set",
        ),
    ],
)
def test_check_errors_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, fragment: str
) -> None:
    monkeypatch.delenv("TEST_ALPHA_KEY", raising=False)
    path = write(tmp_path, text)
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Configuration error: {path}: ")
    assert fragment in result.output


def test_providers_masked_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALPHA_KEY", "sk-abcdefghijklmnopqrstuvwxyz")
    path = str(write(tmp_path, GOOD))
    for args in (["providers", "-c", path], ["providers", "--masked", "-c", path]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert "alpha (https://alpha.example/v1)" in result.output
        assert "Rates: 10 sats/1k input, 30 sats/1k output" in result.output
        assert "Base fee: 1 sats" in result.output
        assert "sk-abc...***" in result.output
        assert "sk-abcdefghijklmnopqrstuvwxyz" not in result.output
    shown = runner.invoke(app, ["providers", "--no-masked", "-c", path])
    assert "sk-abcdefghijklmnopqrstuvwxyz" in shown.output
    as_json = json.loads(runner.invoke(app, ["providers", "--json", "-c", path]).output)
    assert as_json["providers"][0]["api_key"] == "sk-abc...***"


def test_init_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "arbstr.toml"
    first = runner.invoke(app, ["init", str(target)])
    assert first.exit_code == 0
    assert target.stat().st_mode & 0o777 == 0o600
    assert "[[providers]]" in target.read_text()
    second = runner.invoke(app, ["init", str(target)])
    assert second.exit_code == 1
    assert "already exists" in second.output


def test_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "arbstr", "check", "-c", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Configuration error:" in result.stderr


def test_db_stats_and_requests_commands(tmp_path: Path) -> None:
    import asyncio
    import time

    from arbstr.recording.record import RequestRecord
    from arbstr.stores.requestlog import SqliteRequestLog

    db = tmp_path / "arbstr.db"
    path = write(tmp_path, f'[database]\nurl = "sqlite:///{db}"\n')
    status = runner.invoke(app, ["db", "status", "-c", str(path)])
    assert status.exit_code == 1
    assert "pending: 0001_requests_attempts_rollup" in status.output
    migrated = runner.invoke(app, ["db", "migrate", "-c", str(path)])
    assert migrated.exit_code == 0, migrated.output
    assert "schema version 3 (latest 3)" in migrated.output
    assert runner.invoke(app, ["db", "status", "-c", str(path)]).exit_code == 0

    async def seed() -> None:
        store = SqliteRequestLog(str(db))
        now = time.time()
        await store.append(
            [
                RequestRecord(
                    id=f"r{i}",
                    timestamp=now - i,
                    model="gpt-4o",
                    provider="alpha",
                    success=i % 3 != 0,
                    status=200 if i % 3 else 502,
                    latency_ms=10.0 + i,
                    cost_sats=1.5,
                    input_tokens=10,
                    output_tokens=20,
                )
                for i in range(9)
            ]
        )
        await store.aclose()

    asyncio.run(seed())
    shown = runner.invoke(
        app, ["stats", "-c", str(path), "--group-by", "provider"], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "alpha" in shown.output
    as_json = json.loads(runner.invoke(app, ["stats", "-c", str(path), "--json"]).output)
    assert as_json["counts"] == {"total": 9, "success": 6, "error": 3, "streaming": 0}
    listed = json.loads(
        runner.invoke(app, ["requests", "-c", str(path), "--failed", "--json"]).output
    )
    assert listed["total"] == 3
    table = runner.invoke(app, ["requests", "-c", str(path), "--sort", "latency_ms"])
    assert table.exit_code == 0
    assert "9 total" in table.output
    bad = runner.invoke(app, ["requests", "-c", str(path), "--sort", "id"])
    assert bad.exit_code == 2
    assert "'sort' must be one of" in bad.output


def test_read_only_commands_warn_on_unset_keys(tmp_path: Path) -> None:
    db = tmp_path / "arbstr.db"
    text = f'[database]\nurl = "sqlite:///{db}"\n' + GOOD  # alpha's ${TEST_ALPHA_KEY} is unset
    path = write(tmp_path, text)
    env = {"TEST_ALPHA_KEY": None, "COLUMNS": "200"}
    assert runner.invoke(app, ["db", "migrate", "-c", str(path)], env=env).exit_code == 0
    for args in (["stats"], ["requests"], ["db", "status"], ["providers"]):
        result = runner.invoke(app, [*args, "-c", str(path)], env=env)
        assert result.exit_code == 0, (args, result.output)
        assert "WARNING: providers[0].api_key:" in result.output
        assert "TEST_ALPHA_KEY is not set" in result.output
    for args in (["check"],):  # serving needs the keys
        result = runner.invoke(app, [*args, "-c", str(path)], env=env)
        assert result.exit_code == 1 and "Configuration error:" in result.output


def test_request_table_keeps_ids_and_numbers_whole(tmp_path: Path) -> None:
    import asyncio
    import time

    from arbstr.ids import new_request_id
    from arbstr.recording.record import RequestRecord
    from arbstr.stores.requestlog import SqliteRequestLog

    db = tmp_path / "arbstr.db"
    path = write(tmp_path, f'[database]\nurl = "sqlite:///{db}"\n')
    ids = [new_request_id() for _ in range(3)]

    async def seed() -> None:
        store = SqliteRequestLog(str(db))
        await store.migrate()
        await store.append(
            [
                RequestRecord(
                    id=rid,
                    timestamp=time.time(),
                    model="a-rather-long-model-name-for-a-narrow-terminal",
                    provider="provider-with-a-long-name",
                    success=True,
                    status=200,
                    latency_ms=123456.7,
                    cost_sats=1234.567891,
                    input_tokens=1234567,
                    output_tokens=7654321,
                )
                for rid in ids
            ]
        )
        await store.aclose()

    asyncio.run(seed())
    result = runner.invoke(app, ["requests", "-c", str(path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["id", "model"])
    start, end = lines[header].index("id"), lines[header].index("model")
    # a folded id continues on the next lines of its column: read the column top to bottom
    column = "".join(line[start:end].strip() for line in lines[header + 2 :])
    for rid in ids:
        assert rid in column
    for number in ("1234.567891", "123456.7", "1234567", "7654321"):
        assert number in result.output  # on one line, never cut
    assert "…" not in result.output


def test_init_creates_parents_and_writes_into_directories(tmp_path: Path) -> None:
    nested = tmp_path / "new" / "dir" / "x.toml"
    assert runner.invoke(app, ["init", str(nested)]).exit_code == 0
    assert nested.stat().st_mode & 0o777 == 0o600
    folder = tmp_path / "conf"
    folder.mkdir()
    assert runner.invoke(app, ["init", str(folder)]).exit_code == 0
    assert (folder / "arbstr.toml").exists()
    again = runner.invoke(app, ["init", str(folder) + "/"])
    assert again.exit_code == 1 and "already exists" in again.output


def test_version_flag() -> None:
    from arbstr import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_sim_help_describes_every_flag() -> None:
    import msgspec

    from arbstr.sim.__main__ import _parser
    from arbstr.sim.profile import SimProfile

    parser = _parser()
    helps = {a.dest: a.help for a in parser._actions}
    for field in msgspec.structs.fields(SimProfile):
        assert helps.get(field.name), field.name
    for dest in ("host", "port", "profile", "uvloop"):
        assert helps.get(dest), dest
