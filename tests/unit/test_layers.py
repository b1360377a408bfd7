"""The layering, enforced: no module imports a layer above its own (ADR 0001, ADR 0010).

Layers, bottom up; a module may import its own layer and any below it, never above:
  0 data:        errors, secrets, config, ids, schemas, recording.record, keys.model
  1 parts:       routing, reliability, upstream, stores, recording.writer, telemetry, sim, keys
  1b load:       loadgen (a load client over the parts, for `arbstr bench`)
  2 pipeline:    pipeline
  3 facade:      gateway, views, serving
  4 http:        api
  5 composition: app
  6 commands:    cli, __main__
Litestar is imported by `api` and `app` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "arbstr"

LAYERS: list[tuple[str, ...]] = [
    (
        "errors",
        "secrets",
        "presets",
        "provider_config",
        "config",
        "config_edit",
        "ids",
        "schemas",
        "recording.record",
        "recording",
        "keys.model",
        "lifecycle",
        "watchdog",
    ),
    (
        "routing",
        "reliability",
        "upstream",
        "stores",
        "recording.writer",
        "telemetry",
        "sim",
        "keys",
        "cache",
        "export",
    ),
    ("loadgen",),
    ("pipeline",),
    ("gateway", "views", "serving"),
    ("live",),
    ("api",),
    ("app", "cluster"),
    ("serverless",),
    ("cli", "__main__"),
]
LITESTAR_ALLOWED = {"api", "app"}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = index, len(name)
    assert best >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return best


def imports(path: Path) -> list[str]:
    """Every `arbstr.*` and `litestar*` module imported, at any depth (lazy imports too)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


CORE = sorted(p for p in SRC.rglob("*.py") if module_name(p) not in ("", "__init__"))


@pytest.mark.parametrize("path", CORE, ids=module_name)
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    name = module_name(path)
    own = layer_of(name)
    for target in imports(path):
        if target.split(".")[0] == "litestar":
            top = name.split(".")[0]
            assert top in LITESTAR_ALLOWED, f"{name} imports Litestar ({target})"
        if not target.startswith("arbstr.") or target == "arbstr":
            continue
        other = layer_of(target.removeprefix("arbstr."))
        assert other <= own, f"{name} (layer {own}) imports {target} (layer {other})"


def test_the_pipeline_does_not_reach_back_into_the_facade() -> None:
    for path in (SRC / "pipeline").glob("*.py"):
        for target in imports(path):
            assert not target.startswith(("arbstr.gateway", "arbstr.views", "arbstr.api")), (
                f"{module_name(path)} imports {target}"
            )
