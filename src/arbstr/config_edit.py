"""Edit the config file's `[[providers]]` and `[[chains]]` tables (tomlkit keeps comments and
layout), check the result as `arbstr check` does, and write it atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from arbstr.config import Settings, parse_settings

__all__ = ["ConfigEditError", "delete_table", "put_table", "write_checked"]

_KINDS = {"providers": "provider", "chains": "chain"}


class ConfigEditError(Exception):
    """A change the file cannot take; `status` 400 (invalid), 404 (no such), 409 (in use)."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.param = message, status, param


def _tables(doc: tomlkit.TOMLDocument, kind: str) -> AoT:
    found = doc.get(kind)
    if found is None:
        found = tomlkit.aot()
        doc.append(kind, found)
    if not isinstance(found, AoT):
        raise ConfigEditError(f"the file's {kind} is not an array of tables", param=kind)
    return found


def put_table(text: str, kind: str, name: str, fields: Mapping[str, Any]) -> tuple[str, bool]:
    """`text` with the `kind` table named `name` replaced by `fields` (or added); whether it
    was new. Comments and every other table stay as they were."""
    doc = tomlkit.parse(text)
    tables = _tables(doc, kind)
    table = tomlkit.table()
    table.add("name", name)
    for key, value in fields.items():
        if key != "name" and value is not None:
            table.add(key, value)
    for i, existing in enumerate(tables):
        if existing.get("name") == name:
            tables[i] = table
            return tomlkit.dumps(doc), False
    tables.append(table)
    return tomlkit.dumps(doc), True


def delete_table(text: str, kind: str, name: str) -> str:
    """`text` without the `kind` table named `name`; a provider a chain uses is refused (409)."""
    doc = tomlkit.parse(text)
    tables = _tables(doc, kind)
    index = next((i for i, t in enumerate(tables) if t.get("name") == name), None)
    if index is None:
        raise ConfigEditError(f"no {_KINDS[kind]} named '{name}'", status=404, param="name")
    if kind == "providers":
        users = [
            str(chain.get("name"))
            for chain in _chains(doc)
            if any(e.get("provider") == name for e in chain.get("entries", []))
        ]
        if users:
            raise ConfigEditError(
                f"provider '{name}' is used by chain(s) {', '.join(sorted(users))}: "
                "change or delete them first",
                status=409,
                param="name",
            )
    del tables[index]
    return tomlkit.dumps(doc)


def _chains(doc: tomlkit.TOMLDocument) -> list[Table]:
    chains = doc.get("chains")
    return list(chains) if isinstance(chains, AoT) else []


def write_checked(path: str | Path, text: str, env: Mapping[str, str] | None = None) -> Settings:
    """Check `text` as `arbstr check` does (the same message on failure, as a `ConfigError`),
    then replace the file atomically (same directory, same mode); the new settings."""
    path = Path(path)
    settings = parse_settings(text, source=str(path), env=dict(env) if env is not None else None)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return settings
