"""Postgres for the tests: owned by the Postgres backend work (placeholder until it lands).

Provides the session fixture ``postgres_dsn`` (a URL to a fresh database for this test session)
and the function fixture ``postgres_store`` (an opened PostgresStore on a clean database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from eventodb.store.base import Store


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    pytest.skip("Postgres backend not implemented yet")
    yield ""


@pytest.fixture
async def postgres_store(postgres_dsn: str) -> AsyncIterator[Store]:
    pytest.skip("Postgres backend not implemented yet")
    yield  # type: ignore[misc]
