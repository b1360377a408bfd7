"""0001: projects, keys, audit events, provider keys, usage counters and the version row."""

from __future__ import annotations

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from arbstr.stores.keys.tables import CLASS_NAMES, SPECS

ID = "0001_keys_projects_audit"
VERSION = 1


async def forwards(schema: str | None = None) -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="arbstr_keys")
    for table, spec in SPECS.items():
        name = CLASS_NAMES[table]
        manager.add_table(class_name=name, tablename=table, schema=schema)
        for column, cls, params in spec:
            manager.add_column(
                table_class_name=name,
                tablename=table,
                column_name=column,
                db_column_name=column,
                column_class=cls,
                params=params,
                schema=schema,
            )
    return manager
