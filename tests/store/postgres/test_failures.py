"""Adversity: Postgres stops and starts again under a running store, or its connections are cut.

These run against a throwaway cluster of their own (``pg_cluster``), never the machine's server.
While Postgres is down every request fails with BACKEND_ERROR; once it is back, the same store
object serves again (no re-creation), and pokes flow again after a gap.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from eventodb.core.errors import BackendError, ErrorCode
from eventodb.store.base import Gap, Poke
from eventodb.store.postgres import PostgresStore
from tests.support.postgres import Cluster, pg_cluster, reset_database

__all__ = ["pg_cluster"]

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

NS = "fragile"


@pytest.fixture
def cluster(pg_cluster: Cluster) -> Iterator[Cluster]:
    """The module's cluster, running at the start and at the end of each test."""
    yield pg_cluster
    pg_cluster.start_if_stopped()


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[PostgresStore]:
    await reset_database(cluster.url)
    async with PostgresStore(
        cluster.url, min_pool=2, max_pool=5, connect_timeout=2, listen_check_interval=0.5
    ) as pg:
        await pg.create_namespace(NS, "hash")
        yield pg


async def sql_write(url: str, stream: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "SELECT eventodb_fragile.write_message($1, $2, 'T', '{}')", str(uuid.uuid4()), stream
        )
    finally:
        await conn.close()


async def test_requests_fail_while_postgres_is_down_and_succeed_once_it_is_back(
    cluster: Cluster, store: PostgresStore
) -> None:
    # Heard as an SSE subscriber hears: SQL writes come through the LISTEN connection.
    async with store.hear_other_writers():
        await _fail_while_down_then_recover(cluster, store)


async def _fail_while_down_then_recover(cluster: Cluster, store: PostgresStore) -> None:
    seen: asyncio.Queue[Poke | Gap] = asyncio.Queue()
    store.add_listener(seen.put_nowait)
    await store.write_message(NS, "account-1", "T", {})
    assert isinstance(await asyncio.wait_for(seen.get(), 5), Poke)

    await asyncio.to_thread(cluster.stop)
    attempts: list[Any] = [
        store.write_message(NS, "account-1", "T", {}),
        store.get_stream_messages(NS, "account-1"),
        store.get_category_messages(NS, "account"),
        store.stream_version(NS, "account-1"),
        store.list_namespaces(),
    ]
    for attempt in attempts:
        with pytest.raises(BackendError) as info:
            await attempt
        assert info.value.code is ErrorCode.BACKEND_ERROR
        assert info.value.message.startswith("Failed to ")

    await asyncio.to_thread(cluster.start)
    assert [m.position for m in await store.get_stream_messages(NS, "account-1")] == [0]
    result = await store.write_message(NS, "account-1", "T", {})
    assert result.position == 1
    # The LISTEN connection came back by itself: a gap, then pokes of SQL writes again.
    items = [await asyncio.wait_for(seen.get(), 15) for _ in range(2)]
    assert any(isinstance(i, Gap) and i.namespace is None for i in items)
    await sql_write(cluster.url, "account-2")
    while (item := await asyncio.wait_for(seen.get(), 10)) != Poke(NS, "account-2", 0, 3):
        assert isinstance(item, Gap | Poke)


async def test_terminated_connections_are_replaced_without_failing_requests(
    cluster: Cluster, store: PostgresStore
) -> None:
    await store.write_message(NS, "account-1", "T", {})
    await store.get_stream_messages(NS, "account-1")
    admin = await asyncpg.connect(cluster.url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE 'eventodb%'"
        )
    finally:
        await admin.close()
    assert killed >= 2
    await asyncio.sleep(0.2)
    assert len(await store.get_stream_messages(NS, "account-1")) == 1
    assert (await store.write_message(NS, "account-1", "T", {})).position == 1


async def test_opening_against_a_stopped_server_fails_clearly(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.stop)
    store = PostgresStore(cluster.url, connect_timeout=2)
    with pytest.raises(BackendError, match=r"Failed to connect to Postgres at postgresql://"):
        await store.open()
    await store.close()


async def test_restarts_under_load_fail_requests_only_with_backend_errors(
    cluster: Cluster, store: PostgresStore
) -> None:
    """Connections break mid-protocol during a restart; asyncpg then raises errors that are not
    all ``InterfaceError`` (e.g. ``InternalClientError: cannot switch to state 12; another
    operation is in progress``). Every one must reach callers as BACKEND_ERROR."""
    unexpected: list[BaseException] = []
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()

    async def load(k: int) -> None:
        while not stop.is_set():
            for call in (
                store.write_message(NS, f"account-{k % 4}", "T", {"k": k}),
                store.get_stream_messages(NS, f"account-{k % 4}", batch_size=5),
            ):
                try:
                    await call
                    outcomes["ok"] += 1
                except BackendError:
                    outcomes["backend error"] += 1
                except Exception as exc:  # noqa: BLE001 - any other kind is the failure sought
                    unexpected.append(exc)

    workers = [asyncio.create_task(load(k)) for k in range(32)]
    for _ in range(6):  # each restart breaks some connection mid-protocol about every third time
        await asyncio.sleep(0.3)
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(cluster.start)
    await asyncio.sleep(1.0)
    stop.set()
    # Each worker ends with its current call: none may be left waiting for a connection.
    await asyncio.wait_for(asyncio.gather(*workers), 10)
    assert not unexpected, [f"{type(e).__name__}: {e}" for e in unexpected[:5]]
    assert outcomes["ok"] > 0
    assert outcomes["backend error"] > 0
