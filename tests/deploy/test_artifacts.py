"""Every file in `deploy/` is checked by the tool its platform uses: hadolint for the
Dockerfile, the Compose specification, `kubectl kustomize` + the Kubernetes schemas,
`systemd-analyze verify`, `haproxy -c`; and each agrees with the others and with the README."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from arbstr.cluster import haproxy_config
from arbstr.config import parse_settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
ENV = {
    "ARBSTR_DATABASE_URL": "postgresql://arbstr:pw@postgres:5432/arbstr",
    "ARBSTR_ADMIN_TOKEN": "a-token-of-sixteen-chars",
    "OPENAI_API_KEY": "sk-test",
}


def tool(name: str) -> str:
    """A checker installed with the dev dependencies (the venv) or by the system."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it)")
    return found


def run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **kw)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
    return done


# ---- the image ------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    run(tool("hadolint"), "--failure-threshold", "info", str(DEPLOY / "Dockerfile"))


def test_dockerfile_runs_as_non_root_drains_and_checks_liveness() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    final = text.split("\nFROM ")[-1]  # the run stage
    assert re.search(r"^USER 10001", final, re.M)
    assert "STOPSIGNAL SIGTERM" in final
    assert re.search(r"HEALTHCHECK .*\n?.*/health/live", final)
    assert "ARBSTR_CONFIG=/etc/arbstr/arbstr.toml" in final
    assert text.count("FROM ") >= 2 and "-slim" in text  # multi-stage, slim base


def test_image_installs_what_the_readme_installs() -> None:
    """One `pip install` of the built wheel, no extras; the README's install (scripts/demo)
    installs the same package with no extras: the same dependency set."""
    final = (DEPLOY / "Dockerfile").read_text().split("\nFROM ")[-1]
    installs = re.findall(r"pip install [^\n&\\]*", final)
    assert installs == [
        "pip install --no-cache-dir -c /tmp/wheels/requirements.lock /tmp/wheels/arbstr-*.whl "
    ]
    build = (DEPLOY / "Dockerfile").read_text().split("\nFROM ")[1]
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in build
    demo = (ROOT / "scripts" / "demo").read_text()
    assert re.findall(r"pip install -q (.+)", demo)[-1] == "-e . -c requirements.lock"
    assert "./scripts/demo" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_the_docker_context_builds_a_complete_wheel(tmp_path: Path) -> None:
    """The build stage on the files the Dockerfile copies (and .dockerignore lets through)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and not line.startswith("#")]
    assert ignore[0] == "*" and {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", "w", ".",
        cwd=context)  # fmt: skip
    (wheel,) = (context / "w").glob("arbstr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "arbstr/app.py",
        "arbstr/serverless.py",
        "arbstr/cli/arbstr.example.toml",
        "arbstr/api/ui/templates/base.html.j2",
        "arbstr/api/ui/static/arbstr.css",
    ):
        assert needed in names


# ---- compose and its balancer -----------------------------------------------------------------
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_file_follows_the_compose_specification() -> None:
    cmd = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    run(*cmd, str(DEPLOY / "compose.yaml"))


def test_compose_runs_postgres_a_migration_three_replicas_and_a_balancer() -> None:
    services = compose()["services"]
    assert {"postgres", "migrate", "gw1", "gw2", "gw3", "balancer"} <= set(services)
    assert services["migrate"]["command"] == ["arbstr", "db", "migrate"]
    for name in ("gw1", "gw2", "gw3"):
        gw = services[name]
        assert gw["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "./arbstr.toml:/etc/arbstr/arbstr.toml:ro" in gw["volumes"]
        assert any(v.endswith(":/var/lib/arbstr") for v in gw["volumes"])  # its own spill
        assert services["balancer"]["depends_on"][name]["condition"] == "service_healthy"
    spills = {v for n in ("gw1", "gw2", "gw3") for v in services[n]["volumes"]}
    assert len(spills) == 4  # the shared config and three separate spill volumes


def test_every_service_the_docs_name_is_in_compose() -> None:
    services = set(compose()["services"])
    for doc in (ROOT / "README.md", ROOT / "docs" / "deploy.md"):
        named = set(re.findall(r"compose service `([\w-]+)`", doc.read_text()))
        assert named, f"{doc.name} names no compose service"
        assert named <= services, f"{doc.name} names {named - services}, not in compose.yaml"


def test_the_container_config_is_valid_and_shares_state_through_postgres() -> None:
    text = (DEPLOY / "arbstr.toml").read_text()
    settings = parse_settings(text, source="deploy/arbstr.toml", env=ENV)
    assert settings.config.state.backend == "database"
    assert settings.config.database.effective_url == ENV["ARBSTR_DATABASE_URL"]
    assert settings.config.database.migrate_on_start is False
    assert settings.config.auth.enabled
    assert (DEPLOY / "k8s" / "base" / "arbstr.toml").read_text() == text


def test_the_compose_balancer_config_is_what_haproxy_config_renders() -> None:
    servers = [(f"gw{i}", f"gw{i}:8080") for i in (1, 2, 3)]
    header = (
        "deploy/compose.yaml; rendered by arbstr.cluster.haproxy_config, kept identical by a test"
    )
    expected = haproxy_config("*:8080", servers, header=header, nameserver="127.0.0.11:53")
    assert (DEPLOY / "haproxy.cfg").read_text() == expected
    text = expected
    assert "option httpchk GET /health/ready" in text
    assert "http-request disable-l7-retry unless METH_GET || METH_HEAD" in text


def test_haproxy_accepts_both_balancer_configs(tmp_path: Path) -> None:
    haproxy = tool("haproxy")
    run(haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg"))
    local = tmp_path / "local.cfg"
    local.write_text(haproxy_config("127.0.0.1:1", [("gw1", "127.0.0.1:2")]))
    run(haproxy, "-c", "-f", str(local))


# ---- Kubernetes ---------------------------------------------------------------------------------
def render(overlay: str) -> list[dict[str, Any]]:
    out = run(tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / overlay)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_kustomize_renders_manifests_the_kubernetes_schemas_accept(
    overlay: str, tmp_path: Path
) -> None:
    docs = render(overlay)
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    run(tool("kubernetes-validate"), "--strict", "--quiet", str(path))


def test_production_overlay_has_probes_prestop_grace_job_pdb_hpa_secret_and_configmap() -> None:
    docs = {
        (d["kind"], d["metadata"]["name"].split("-")[0]): d for d in render("overlays/production")
    }
    kinds = {kind for kind, _ in docs}
    assert {"Deployment", "Service", "Job", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "Secret", "ConfigMap"} <= kinds  # fmt: skip
    deploy = docs[("Deployment", "arbstr")]
    assert deploy["spec"]["replicas"] == 3
    pod = deploy["spec"]["template"]["spec"]
    (gw,) = pod["containers"]
    assert gw["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert gw["startupProbe"]["httpGet"]["path"] == "/health/live"
    pre_stop = int(gw["lifecycle"]["preStop"]["exec"]["command"][-1])
    server = tomllib.loads((DEPLOY / "arbstr.toml").read_text())["server"]
    drain = pre_stop + server["drain_delay_s"] + server["shutdown_grace_s"]
    assert pod["terminationGracePeriodSeconds"] > drain
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert gw["securityContext"]["readOnlyRootFilesystem"] is True
    assert docs[("Job", "arbstr")]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "arbstr", "db", "migrate",
    ]  # fmt: skip
    assert docs[("HorizontalPodAutoscaler", "arbstr")]["spec"]["minReplicas"] >= 3
    secret = docs[("Secret", "arbstr")]
    assert all(v == "" for v in secret["stringData"].values())  # nothing real committed


# ---- systemd --------------------------------------------------------------------------------
def test_systemd_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    text = (DEPLOY / "arbstr.service").read_text()
    for setting in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "PrivateTmp=yes", "CapabilityBoundingSet=", "KillSignal=SIGTERM"):  # fmt: skip
        assert re.search(rf"^{re.escape(setting)}$", text, re.M), setting
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit was checked for its settings")
    unit = tmp_path / "arbstr.service"  # the installed path, pointed at this checkout's venv
    unit.write_text(text.replace("/opt/arbstr/bin/arbstr", str(BIN / "arbstr")))
    run(analyze, "verify", str(unit))


def test_local_cluster_script_runs_arbstr_cluster() -> None:
    script = DEPLOY / "local-cluster"
    assert script.stat().st_mode & 0o111
    assert "exec .venv/bin/arbstr cluster" in script.read_text()
    help_text = run(sys.executable, "-m", "arbstr", "cluster", "--help").stdout
    assert "--replicas" in help_text and "--demo" in help_text
