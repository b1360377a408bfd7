"""Schemathesis against the OpenAPI schema of the admin, analytics and health routes: no 5xx,
every JSON error in the OpenAI envelope. Bounded by ARBSTR_FUZZ_S (45 s; longer on demand)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.test_clients_more import gateway_process

pytestmark = [pytest.mark.hostile, pytest.mark.slow]

ADMIN = "admin-token-for-fuzzing-0123456789"
ROOT = Path(__file__).resolve().parents[2]


def test_the_admin_and_analytics_api_never_answers_5xx(tmp_path: Path) -> None:
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (it is a dev dependency)")
    head = f'[auth]\nenabled = true\nadmin_token = "{ADMIN}"'
    gw, url, sim = gateway_process(tmp_path, head, db=f"sqlite:///{tmp_path}/fuzz.db")
    try:
        budget = os.environ.get("ARBSTR_FUZZ_S", "45")
        run = subprocess.run(
            [st, "run", f"{url}/schema/openapi.json", "-H", f"Authorization: Bearer {ADMIN}",
             "--checks", "not_a_server_error,openai_error_envelope", "--max-time", budget,
             "--workers", "2", "--seed", os.environ.get("ARBSTR_FUZZ_SEED", "1"),
             "--exclude-path-regex", "^/v1/(chat/completions|embeddings|test/)"],
            capture_output=True, text=True, timeout=int(budget) + 120, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.hostile.st_hooks",
                 "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        summary = run.stdout[run.stdout.rfind("SUMMARY") :]
        print("\n" + summary)
        assert "Server error" not in run.stdout, run.stdout[-6000:]
        assert "openai_error_envelope" not in summary, run.stdout[-6000:]
        assert " generated" in summary
    finally:
        gw.terminate()
        sim.terminate()
        gw.wait(30)
        sim.wait(10)
    log = (tmp_path / "gateway.log").read_text()
    assert "unhandled error" not in log, log[-4000:]
