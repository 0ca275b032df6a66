"""Fixtures of the contract suite: every test runs on every backend through ``store`` (or, for
tests that reopen their data, on every backend that keeps it through ``durable``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventodb.core import tokens
from eventodb.store.base import Store
from tests.store.storage_access import DurableBackend, PostgresDatabase, SQLiteFiles
from tests.support.postgres import reset_database


@pytest.fixture
async def ns(store: Store) -> str:
    """A fresh namespace in ``store``; returns its id."""
    await store.create_namespace("tenant-a", tokens.hash_token(tokens.generate("tenant-a")))
    return "tenant-a"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> DurableBackend:
    """A backend whose data outlives its stores, with no namespace yet: SQLite files in a fresh
    data directory, or the session's Postgres database emptied."""
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        await reset_database(dsn)
        return PostgresDatabase(dsn)
    return SQLiteFiles(tmp_path / "data")
