"""Database URLs: one parser for every store."""

from __future__ import annotations


def test_one_database_url_parser_keeps_every_other_parameter() -> None:
    from arbstr.stores.state import PostgresStateStore, open_state_store
    from arbstr.stores.urls import split_schema

    url = "postgresql://u@h:5432/db?sslmode=require&schema=tenant&application_name=gw"
    dsn, schema = split_schema(url)
    assert schema == "tenant"
    assert dsn == "postgresql://u@h:5432/db?sslmode=require&application_name=gw"
    state = open_state_store(url)
    assert isinstance(state, PostgresStateStore)
    assert (state.dsn, state.schema) == (dsn, schema)
    assert split_schema("postgresql://h/db") == ("postgresql://h/db", None)
