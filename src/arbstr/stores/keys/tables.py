"""The key store's Piccolo tables, built per engine (one process may hold a SQLite and a
PostgreSQL store, each PostgreSQL store in its own schema), and the column specs the Piccolo
migrations create them from."""

from __future__ import annotations

from typing import Any

from piccolo.columns import BigInt, Boolean, Column, DoublePrecision, Integer, Text, Varchar
from piccolo.table import create_table_class

__all__ = ["SPECS", "Tables", "columns"]

# (table, [(column, class, params)]): the one description of the schema; migrations and the
# runtime classes are both made from it
Spec = list[tuple[str, type[Column], dict[str, Any]]]
_ROW_LIMITS: Spec = [
    ("active", Boolean, {"default": True}),
    ("budget_sats", DoublePrecision, {"null": True, "default": None}),
    ("budget_period", Varchar, {"length": 16, "default": "total"}),
    ("rpm", BigInt, {"null": True, "default": None}),
    ("tpm", BigInt, {"null": True, "default": None}),
    ("allowed_models", Text, {"default": ""}),
    ("metadata", Text, {"default": ""}),
    ("created_at", DoublePrecision, {"default": 0.0}),
    ("updated_at", DoublePrecision, {"default": 0.0}),
    ("rev", BigInt, {"default": 0, "index": True}),
]
SPECS: dict[str, Spec] = {
    "arbstr_projects": [
        ("id", Varchar, {"length": 32, "primary_key": True}),
        ("name", Varchar, {"length": 200, "unique": True}),
        *_ROW_LIMITS,
    ],
    "arbstr_keys": [
        ("id", Varchar, {"length": 32, "primary_key": True}),
        ("project_id", Varchar, {"length": 32, "index": True}),
        ("name", Varchar, {"length": 200}),
        ("key_hash", Varchar, {"length": 64, "unique": True}),
        ("prev_hash", Varchar, {"length": 64, "null": True, "default": None}),
        ("prev_valid_until", DoublePrecision, {"null": True, "default": None}),
        ("expires_at", DoublePrecision, {"null": True, "default": None}),
        ("max_requests", BigInt, {"null": True, "default": None}),
        ("revoked_at", DoublePrecision, {"null": True, "default": None}),
        *_ROW_LIMITS,
    ],
    "arbstr_audit": [
        ("id", Varchar, {"length": 32, "primary_key": True}),
        ("timestamp", DoublePrecision, {"index": True}),
        ("actor", Varchar, {"length": 64}),
        ("action", Varchar, {"length": 64, "index": True}),
        ("target", Varchar, {"length": 200, "null": True, "default": None}),
        ("outcome", Varchar, {"length": 16}),
        ("client_ip", Varchar, {"length": 64, "null": True, "default": None}),
        ("request_id", Varchar, {"length": 64, "null": True, "default": None}),
        ("changes", Text, {"default": ""}),
        ("repeats", Integer, {"default": 1}),  # AuditEvent.count
    ],
    "arbstr_provider_keys": [
        ("id", Varchar, {"length": 300, "primary_key": True}),  # <project>/<provider>
        ("project_id", Varchar, {"length": 32, "index": True}),
        ("provider", Varchar, {"length": 200}),
        ("ciphertext", Text, {}),
        ("masked", Varchar, {"length": 64}),
        ("updated_at", DoublePrecision, {"default": 0.0}),
    ],
    "arbstr_usage": [  # lease counters: <scope>@<window>
        ("id", Varchar, {"length": 300, "primary_key": True}),
        ("used", DoublePrecision, {"default": 0.0}),
    ],
    "arbstr_keys_version": [
        ("id", Integer, {"primary_key": True}),
        ("version", BigInt, {"default": 0}),
    ],
}
CLASS_NAMES = {
    "arbstr_projects": "Project",
    "arbstr_keys": "VirtualKey",
    "arbstr_audit": "AuditEvent",
    "arbstr_provider_keys": "ProviderKey",
    "arbstr_usage": "Usage",
    "arbstr_keys_version": "KeysVersion",
}


def columns(table: str) -> dict[str, Column]:
    return {name: cls(**params) for name, cls, params in SPECS[table]}


class Tables:
    """The six table classes bound to one engine (and PostgreSQL schema)."""

    def __init__(self, engine: Any, schema: str | None) -> None:
        made: dict[str, Any] = {}
        for table in SPECS:
            made[table] = create_table_class(
                CLASS_NAMES[table],
                class_kwargs={"tablename": table, "db": engine, "schema": schema},
                class_members=columns(table),
            )
        self.projects = made["arbstr_projects"]
        self.keys = made["arbstr_keys"]
        self.audit = made["arbstr_audit"]
        self.provider_keys = made["arbstr_provider_keys"]
        self.usage = made["arbstr_usage"]
        self.version = made["arbstr_keys_version"]
