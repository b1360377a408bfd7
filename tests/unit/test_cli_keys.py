"""CLI: `arbstr projects`, `keys` and `audit` on the configured database, no server needed."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from arbstr.cli import app

runner = CliRunner()


def test_projects_keys_and_audit_round_trip(tmp_path: Path) -> None:
    config = tmp_path / "arbstr.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "arbstr.db"}"\n')
    config.chmod(0o600)
    c = ["-c", str(config)]

    made = runner.invoke(app, ["projects", "create", "--name", "team", "--budget", "500",
                               "--period", "monthly", "--json", *c])  # fmt: skip
    assert made.exit_code == 0, made.output
    project = json.loads(made.output)
    assert project["budget_sats"] == 500 and project["budget_period"] == "monthly"
    dup = runner.invoke(app, ["projects", "create", "--name", "team", *c])
    assert dup.exit_code == 2 and "Error (name)" in dup.output

    key = runner.invoke(app, ["keys", "create", "--project", project["id"], "--name", "bot",
                              "--expires", "30d", "--rpm", "5", "--models", "gpt-4o,gpt-4.1-*",
                              "--max-requests", "100", *c])  # fmt: skip
    assert key.exit_code == 0, key.output
    plaintext = key.output.split("key (shown once): ")[1].strip()
    assert plaintext.startswith("sk-arb-")
    listed = runner.invoke(app, ["keys", "list", "--json", *c])
    rows = json.loads(listed.output)["data"]
    assert len(rows) == 1 and rows[0]["rpm"] == 5 and rows[0]["expires_at"]
    assert rows[0]["allowed_models"] == ["gpt-4o", "gpt-4.1-*"]
    assert plaintext not in listed.output
    shown = runner.invoke(app, ["keys", "show", rows[0]["id"], *c])
    assert shown.exit_code == 0 and plaintext not in shown.output

    assert runner.invoke(app, ["keys", "update", rows[0]["id"], "--rpm", "9", *c]).exit_code == 0
    rotated = runner.invoke(app, ["keys", "rotate", rows[0]["id"], "--grace", "60", "--json", *c])
    assert json.loads(rotated.output)["key"] != plaintext
    assert runner.invoke(app, ["keys", "revoke", rows[0]["id"], *c]).exit_code == 0
    twice = runner.invoke(app, ["keys", "revoke", rows[0]["id"], *c])
    assert twice.exit_code == 2 and "already revoked" in twice.output
    off = runner.invoke(app, ["projects", "deactivate", project["id"], *c])
    assert off.exit_code == 0

    audit = runner.invoke(app, ["audit", "--json", *c])
    actions = [e["action"] for e in json.loads(audit.output)["data"]]
    assert actions[:5] == ["project.update", "key.revoke", "key.rotate", "key.update", "key.create"]
    assert all(e["actor"] == "cli" for e in json.loads(audit.output)["data"])
    assert plaintext not in audit.output
    only = runner.invoke(app, ["audit", "--action", "key.revoke", "--json", *c])
    assert [e["action"] for e in json.loads(only.output)["data"]] == ["key.revoke"]
    table = runner.invoke(app, ["audit", *c])
    assert table.exit_code == 0 and "key.revoke" in table.output

    bad = runner.invoke(app, ["keys", "create", "--project", "nope", "--name", "x", *c])
    assert bad.exit_code == 2 and "project_id" in bad.output
    neg = runner.invoke(app, ["projects", "create", "--name", "y", "--budget", "-1", *c])
    assert neg.exit_code == 2 and "budget_sats" in neg.output
    typo = runner.invoke(app, ["projects", "create", "--name", "y", "--period", "dayly", *c])
    assert typo.exit_code == 2 and "budget_period" in typo.output
