"""PostgreSQL helpers shared by the stores."""

from __future__ import annotations

from typing import Any

__all__ = ["DDL_LOCK", "create_schema"]

# One advisory lock for every DDL statement arbstr runs: replicas starting together must not
# race `CREATE ... IF NOT EXISTS` (it is not atomic across sessions and fails with a unique
# violation on the catalog).
DDL_LOCK = 84210001


async def create_schema(conn: Any, schema: str | None) -> None:
    """Create `schema` if missing; call inside a transaction that holds `DDL_LOCK`."""
    if schema:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
