"""Fixtures of the Postgres backend tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from eventodb.store.base import Store


@pytest.fixture
async def sql(store: Store, postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain SQL client on the database of the test module's ``store``, connected after the
    store has created its namespace."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()
