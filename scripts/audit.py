"""Audit the locked dependencies (requirements.lock) with pip-audit against PyPI's advisory data.

Fails on any known vulnerability. A package the advisory service does not know (a version it
has no record of, as on a registry mirror) cannot be audited: those are counted and listed, and
fail the run only with ARBSTR_AUDIT_STRICT=1. No answer from the service at all is a warning
(strict: a failure), so a CI run without that service is not red for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    strict = os.environ.get("ARBSTR_AUDIT_STRICT") == "1"
    run = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "pip_audit", "-r", str(ROOT / "requirements.lock"), "--no-deps",
         "--disable-pip", "--progress-spinner", "off", "-f", "json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"audit: pip-audit gave no report ({run.stderr.strip()[-300:]})")
        return 1 if strict else 0
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"audit: {dep['name']} {dep['version']} has known vulnerabilities: {ids}")
    audited = len(deps) - len(skipped)
    print(f"audit: {audited} of {len(deps)} locked packages audited, {len(vulnerable)} vulnerable,"
          f" {len(skipped)} unknown to the advisory service")  # fmt: skip
    if vulnerable:
        return 1
    return 1 if strict and skipped else 0


if __name__ == "__main__":
    sys.exit(main())
