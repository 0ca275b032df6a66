"""Store contract: namespace migrations at start-up, on every backend that keeps its data.

Each namespace records the migrations applied to it; opening a store applies the ones missing,
each all or nothing, to every namespace, and a failing one stops the start-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventodb.core import tokens
from eventodb.core.errors import BackendError
from eventodb.store import migrations
from tests.store.storage_access import DurableBackend, copy_migrations


def _hash(namespace: str) -> str:
    return tokens.hash_token(tokens.generate(namespace))


def _next_number(backend: DurableBackend) -> str:
    """Number of a migration added by a test: after every shipped one."""
    shipped = migrations.load(backend.name, "namespace")
    return f"{max(m.version for m in shipped) + 1:03d}"


async def test_reopening_applies_no_migration_twice(durable: DurableBackend) -> None:
    async with durable.store() as store:
        await store.create_namespace("m", _hash("m"))
    async with durable.store() as store:
        assert store.migrations_applied == 0
        assert await store.write_message("m", "s-1", "T", {}) is not None
    shipped = migrations.load(durable.name, "namespace")
    assert await durable.versions("m") == [m.version for m in shipped]


async def test_a_failing_migration_stops_start_up_and_changes_nothing(
    durable: DurableBackend, tmp_path: Path
) -> None:
    async with durable.store() as store:
        await store.create_namespace("m", _hash("m"))
        await store.write_message("m", "s-1", "T", {})
    root = copy_migrations(tmp_path, durable.name)
    number = _next_number(durable)
    table = durable.table_prefix
    (root / durable.name / "namespace" / f"{number}_broken.sql").write_text(
        f"CREATE TABLE {table}half_done (x INTEGER);\n"
        f"UPDATE {table}messages SET type = 'changed';\n"
        f"INSERT INTO {table}no_such_table VALUES (1);\n"
    )
    store = durable.store(migrations_root=root)
    with pytest.raises(BackendError, match=rf"{number}_broken\.sql") as info:
        await store.open()
    assert "no_such_table" in info.value.message
    await store.close()
    assert "half_done" not in await durable.tables("m")
    assert await durable.types("m") == ["T"]
    assert max(await durable.versions("m")) == int(number) - 1


async def test_a_new_migration_is_applied_to_every_namespace_at_start_up(
    durable: DurableBackend, tmp_path: Path
) -> None:
    async with durable.store() as store:
        for name in ("a", "b"):
            await store.create_namespace(name, _hash(name))
    root = copy_migrations(tmp_path, durable.name)
    number = _next_number(durable)
    (root / durable.name / "namespace" / f"{number}_type_index.sql").write_text(
        f"CREATE INDEX IF NOT EXISTS messages_type ON {durable.table_prefix}messages (type);\n"
    )
    async with durable.store(migrations_root=root) as store:
        assert store.migrations_applied == 2
    for name in ("a", "b"):
        assert "messages_type" in await durable.indexes(name)
        assert max(await durable.versions(name)) == int(number)
