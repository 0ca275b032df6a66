"""Fixtures of the Postgres backend tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventodb.store.base import Store
from tests.support.postgres import plain_connection


@pytest.fixture
async def sql(store: Store, postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain SQL client on the database of the test module's ``store``, connected after the
    store has created its namespace."""
    async with plain_connection(postgres_dsn) as conn:
        yield conn
