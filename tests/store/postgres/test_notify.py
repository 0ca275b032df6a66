"""Pokes across processes: while someone hears other writers (an SSE subscriber), every committed
``write_message`` reaches a store's listeners through LISTEN/NOTIFY, whoever wrote it (this store,
another server, a plain SQL client), and a lost LISTEN connection comes back on its own and
announces a gap. While no one does, the store does not listen to the writes' channel at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from eventodb.store.base import Gap, Message, Poke
from eventodb.store.postgres import PostgresStore
from tests.support.postgres import open_postgres_store

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NS = "notify"
SCHEMA = '"eventodb_notify"'


class Collector:
    """Records what a store publishes, and lets a test wait for the next item."""

    def __init__(self, store: PostgresStore) -> None:
        self.items: asyncio.Queue[Poke | Gap] = asyncio.Queue()
        self.unsubscribe = store.add_listener(self.items.put_nowait)

    async def next(self, wait: float = 5.0) -> Poke | Gap:
        return await asyncio.wait_for(self.items.get(), wait)

    def pending(self) -> list[Poke | Gap]:
        found = []
        while not self.items.empty():
            found.append(self.items.get_nowait())
        return found


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    """A store whose release of the writes' channel, once no one hears, is immediate."""
    async with open_postgres_store(
        postgres_dsn, listen_check_interval=0.5, hear_writes_linger=0.0
    ) as pg:
        await pg.create_namespace(NS, "hash")
        yield pg


@pytest.fixture
async def hearing(store: PostgresStore) -> AsyncIterator[None]:
    """``store`` hears other writers for the whole test (as while an SSE subscriber is open)."""
    async with store.hear_other_writers():
        yield


async def sql_write(sql: Any, stream: str, schema: str = SCHEMA) -> int:
    position: int = await sql.fetchval(
        f"SELECT {schema}.write_message($1, $2, 'T', '{{}}')", str(uuid.uuid4()), stream
    )
    return position


@pytest.mark.usefixtures("hearing")
async def test_a_plain_sql_write_reaches_listeners(store: PostgresStore, sql: Any) -> None:
    seen = Collector(store)
    await sql_write(sql, "account-1")
    await sql_write(sql, "account-1")
    assert await seen.next() == Poke(NS, "account-1", 0, 1)
    assert await seen.next() == Poke(NS, "account-1", 1, 2)


@pytest.mark.usefixtures("hearing")
async def test_own_writes_are_published_once(store: PostgresStore, sql: Any) -> None:
    seen = Collector(store)
    result = await store.write_message(NS, "account-1", "T", {})
    assert seen.pending() == [Poke(NS, "account-1", 0, result.global_position)]  # at once
    # A later SQL write is notified after the echo of ours (commit order on one channel):
    # once its poke is here, the echo has been handled, and it must not have been re-published.
    await sql_write(sql, "marker-1")
    assert await seen.next() == Poke(NS, "marker-1", 0, 2)
    assert seen.pending() == []


@pytest.mark.usefixtures("hearing")
async def test_writes_of_another_server_reach_this_ones_listeners(
    store: PostgresStore, postgres_dsn: str
) -> None:
    seen = Collector(store)
    async with PostgresStore(postgres_dsn, min_pool=1) as other:
        await other.create_namespace("made-elsewhere", "other-hash")
        await other.write_message(NS, "account-1", "T", {})
        await other.write_message("made-elsewhere", "x-1", "T", {})
        assert await seen.next() == Poke(NS, "account-1", 0, 1)
        # A namespace this store never heard of is resolved through the registry.
        assert await seen.next() == Poke("made-elsewhere", "x-1", 0, 1)


@pytest.mark.usefixtures("hearing")
async def test_stream_names_too_long_for_a_payload_are_looked_up(
    store: PostgresStore, sql: Any
) -> None:
    seen = Collector(store)
    long_name = "long-" + "é" * 5000  # 10,005 bytes: over NOTIFY's 8,000-byte payload limit
    await sql_write(sql, long_name)
    assert await seen.next() == Poke(NS, long_name, 0, 1)


@pytest.mark.usefixtures("hearing")
async def test_imports_publish_nothing(store: PostgresStore, sql: Any) -> None:
    seen = Collector(store)
    t = datetime(2025, 1, 1, tzinfo=UTC)
    await store.import_messages(NS, [Message(str(uuid.uuid4()), "imp-1", "T", 0, 7, {}, None, t)])
    await sql_write(sql, "after-1")
    assert await seen.next() == Poke(NS, "after-1", 0, 8)
    assert seen.pending() == []


@pytest.mark.usefixtures("hearing")
async def test_a_lost_listen_connection_comes_back_and_announces_a_gap(
    store: PostgresStore, sql: Any
) -> None:
    seen = Collector(store)
    pid = store.listen_backend_pid
    assert pid is not None
    before = asyncio.get_running_loop().time()
    assert await sql.fetchval("SELECT pg_terminate_backend($1)", pid)
    gap = await seen.next(wait=10)
    assert isinstance(gap, Gap)
    assert gap.namespace is None
    # Dated by the notification path itself: when LISTEN last worked, before the kill.
    assert gap.alive_at is not None
    assert gap.alive_at <= before
    assert store.listen_backend_pid not in (None, pid)
    await sql_write(sql, "account-1")
    assert await seen.next() == Poke(NS, "account-1", 0, 1)


@pytest.mark.usefixtures("hearing")
async def test_a_listener_that_raises_does_not_stop_delivery(
    store: PostgresStore, sql: Any
) -> None:
    def broken(item: Poke | Gap) -> None:
        raise RuntimeError("listener bug")

    seen = Collector(store)
    store.add_listener(broken)  # raises on every poke, after seen got it
    await sql_write(sql, "account-1")
    await sql_write(sql, "account-1")
    assert [await seen.next(), await seen.next()] == [
        Poke(NS, "account-1", 0, 1),
        Poke(NS, "account-1", 1, 2),
    ]


async def test_writes_of_others_are_heard_only_from_the_moment_someone_hears(
    store: PostgresStore, sql: Any
) -> None:
    seen = Collector(store)
    assert not store.hearing_other_writers
    own = await store.write_message(NS, "own-1", "T", {})
    assert seen.pending() == [Poke(NS, "own-1", 0, own.global_position)]  # own: always, at once
    await sql_write(sql, "unheard-1")  # global position 2: no one hears other writers yet
    async with store.hear_other_writers():
        assert store.hearing_other_writers
        await sql_write(sql, "heard-1")
        # One channel delivers in commit order: had the store been listening before, the poke
        # of unheard-1 would have come first.
        assert await seen.next() == Poke(NS, "heard-1", 0, 3)
        assert seen.pending() == []


async def test_the_channel_is_released_after_the_last_hearer_and_the_linger(
    postgres_dsn: str,
) -> None:
    async with open_postgres_store(postgres_dsn, hear_writes_linger=0.3) as store:
        async with store.hear_other_writers():
            async with store.hear_other_writers():
                pass
            assert store.hearing_other_writers  # one hearer left
        assert store.hearing_other_writers  # lingering
        await asyncio.sleep(0.1)
        async with store.hear_other_writers():  # back within the linger: kept
            await asyncio.sleep(0.4)
            assert store.hearing_other_writers
        await asyncio.sleep(0.6)
        assert not store.hearing_other_writers


async def test_hearing_again_right_after_release_misses_nothing(
    store: PostgresStore, sql: Any
) -> None:
    """Each entry races the release of the previous exit (no linger) at a varying stage of its
    UNLISTEN. The LISTEN must be in force when the entry returns: a transaction that commits
    right after must be heard."""
    seen = Collector(store)

    async def uncommitted_write(stream: str) -> Any:
        transaction = sql.transaction()
        await transaction.start()
        await sql_write(sql, stream)
        return transaction

    pending = await uncommitted_write("round0-1")
    for i in range(60):
        async with store.hear_other_writers():
            await pending.commit()
            assert await seen.next() == Poke(NS, f"round{i}-1", 0, i + 1)
            pending = await uncommitted_write(f"round{i + 1}-1")
        for _ in range(i % 6):
            await asyncio.sleep(0)  # the release, then its UNLISTEN, get this far
    await pending.rollback()
    assert seen.pending() == []
