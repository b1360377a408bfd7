"""PostgreSQL for tests: the server on 127.0.0.1:5432, a fresh schema per test run."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

PG_BASE = os.environ.get("ARBSTR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def new_schema() -> str:
    return f"arbstr_test_{uuid.uuid4().hex[:10]}"


def require_pg() -> None:
    if not pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (CI and dev machines start it)")


async def drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_BASE)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
