"""Fixtures shared by the whole suite.

``store`` runs a test once per backend: SQLite on files, SQLite in memory and Postgres. The
contract suite in ``tests/store/contract`` uses only this fixture, so every backend passes the
same tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventodb.store.base import Store
from eventodb.store.sqlite import SQLiteStore
from tests.support.postgres import (
    no_orphaned_namespaces,
    open_postgres_store,
    postgres_dsn,
    postgres_store,
    pytest_terminal_summary,
)

__all__ = ["no_orphaned_namespaces", "postgres_dsn", "postgres_store", "pytest_terminal_summary"]

BACKENDS = ["sqlite-file", "sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, empty store (no namespaces) of each backend."""
    if request.param == "postgres":
        # Not request.getfixturevalue("postgres_store"): an async fixture cannot set up
        # another async fixture from inside the running loop.
        async with open_postgres_store(request.getfixturevalue("postgres_dsn")) as pg:
            yield pg
        return
    sqlite = SQLiteStore(tmp_path / "data" if request.param == "sqlite-file" else None)
    await sqlite.open()
    try:
        yield sqlite
    finally:
        await sqlite.close()
