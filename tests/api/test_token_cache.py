"""The token cache of :class:`Authenticator`: fast for known and forged tokens, never stale for
longer than its TTL, and dropped at once when another process changes the registry (Postgres)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventodb.api.auth import Authenticator
from eventodb.core import tokens
from eventodb.core.errors import AuthError, ErrorCode, NamespaceNotFound
from eventodb.store.base import NamespaceChange, NamespaceRecord, Store
from eventodb.store.postgres import PostgresStore
from eventodb.store.sqlite import SQLiteStore
from tests.support.postgres import open_postgres_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(SQLiteStore):
    """A real SQLite store that counts registry lookups."""

    lookups = 0

    async def get_namespace(self, namespace: str) -> NamespaceRecord:
        self.lookups += 1
        return await super().get_namespace(namespace)


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def refused(auth: Authenticator, token: str) -> bool:
    """Whether ``token`` is refused as unauthorized (any other outcome is not a refusal)."""
    try:
        await auth.authenticate(b"", bearer(token))
    except AuthError as exc:
        return exc.code == ErrorCode.AUTH_UNAUTHORIZED
    return False


async def test_a_token_replaced_behind_the_cache_is_refused_once_the_ttl_passed(
    store: Store,
) -> None:
    old = tokens.generate("t")
    await store.create_namespace("t", tokens.hash_token(old))
    clock = Clock()
    auth = Authenticator(store, cache_ttl=5.0, clock=clock)
    assert (await auth.authenticate(b"", bearer(old))).namespace == "t"
    new = tokens.generate("t")
    await store.set_token_hash("t", tokens.hash_token(new))
    clock.now += 5.01
    await asyncio.sleep(0.05)  # let a notification arrive, where there is one
    assert await refused(auth, old)
    assert (await auth.authenticate(b"", bearer(new))).namespace == "t"


async def test_known_forged_and_unknown_tokens_cost_one_lookup_per_namespace_and_ttl(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "data")
    await store.open()
    try:
        token = tokens.generate("t")
        await store.create_namespace("t", tokens.hash_token(token))
        clock = Clock()
        auth = Authenticator(store, cache_ttl=5.0, clock=clock)
        for _ in range(3):
            await auth.authenticate(b"", bearer(token))
        assert store.lookups == 1
        for _ in range(20):  # forged tokens of an existing namespace
            assert await refused(auth, tokens.generate("t"))
        assert store.lookups == 1
        for _ in range(20):  # tokens of a namespace that does not exist
            assert await refused(auth, tokens.generate("nobody"))
        assert store.lookups == 2
        clock.now += 5.01
        await auth.authenticate(b"", bearer(token))
        assert store.lookups == 3
    finally:
        await store.close()


async def test_a_cache_ttl_of_zero_asks_the_store_every_time(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "data")
    await store.open()
    try:
        token = tokens.generate("t")
        await store.create_namespace("t", tokens.hash_token(token))
        auth = Authenticator(store, cache_ttl=0)
        for _ in range(3):
            await auth.authenticate(b"", bearer(token))
        assert store.lookups == 3
    finally:
        await store.close()


# -- Postgres: other processes ------------------------------------------------------------------


async def changes_of(store: Store) -> asyncio.Queue[NamespaceChange]:
    queue: asyncio.Queue[NamespaceChange] = asyncio.Queue()
    store.add_namespace_listener(queue.put_nowait)
    return queue


@pytest.mark.postgres
async def test_registry_changes_of_another_store_reach_the_cache_within_a_second(
    postgres_dsn: str,
) -> None:
    async with (
        open_postgres_store(postgres_dsn) as first,
        PostgresStore(postgres_dsn, min_pool=1) as second,
    ):
        changes = await changes_of(second)
        old = tokens.generate("t")
        auth = Authenticator(second, cache_ttl=3600.0)
        await first.create_namespace("t", tokens.hash_token(old))
        assert await asyncio.wait_for(changes.get(), 1) == NamespaceChange("t", "created")
        await auth.authenticate(b"", bearer(old))
        await first.delete_namespace("t")
        await first.create_namespace("t", tokens.hash_token(tokens.generate("t")))
        assert await asyncio.wait_for(changes.get(), 1) == NamespaceChange("t", "deleted")
        assert await asyncio.wait_for(changes.get(), 1) == NamespaceChange("t", "created")
        assert await refused(auth, old)
        await first.set_token_hash("t", "another")
        assert await asyncio.wait_for(changes.get(), 1) == NamespaceChange("t", "updated")


@pytest.mark.postgres
async def test_changes_missed_while_the_listen_connection_was_down_are_found_after_it(
    postgres_dsn: str,
) -> None:
    async with open_postgres_store(postgres_dsn) as first:
        await first.create_namespace("gone", tokens.hash_token(tokens.generate("gone")))
        await first.create_namespace("kept", tokens.hash_token(tokens.generate("kept")))
        await first.create_namespace("moved", tokens.hash_token(tokens.generate("moved")))
        async with PostgresStore(postgres_dsn, min_pool=1, listen_check_interval=0.2) as second:
            for name in ("gone", "kept", "moved"):
                await second.get_namespace(name)
            changes = await changes_of(second)
            conn: Any = await asyncpg.connect(postgres_dsn)
            try:
                # Changes nobody is told about (the trigger is off for this transaction only).
                async with conn.transaction():
                    await conn.execute(
                        "ALTER TABLE eventodb_store.namespaces"
                        " DISABLE TRIGGER announce_namespace_change"
                    )
                    await conn.execute("DELETE FROM eventodb_store.namespaces WHERE id = 'gone'")
                    await conn.execute(
                        "UPDATE eventodb_store.namespaces SET token_hash = 'x' WHERE id = 'moved'"
                    )
                    await conn.execute(
                        "ALTER TABLE eventodb_store.namespaces"
                        " ENABLE TRIGGER announce_namespace_change"
                    )
                assert changes.empty()
                await conn.execute("SELECT pg_terminate_backend($1)", second.listen_backend_pid)
            finally:
                await conn.close()
            found = {await asyncio.wait_for(changes.get(), 5) for _ in range(2)}
            assert found == {
                NamespaceChange("gone", "deleted"),
                NamespaceChange("moved", "updated"),
            }
            with pytest.raises(NamespaceNotFound):
                await second.get_namespace("gone")
