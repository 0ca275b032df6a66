"""The settled head on Postgres (docs/API.md, "ns.head"): global positions are drawn before
commit, so a write in flight can commit below positions already visible; the head waits for such
writes and never names a position below which a message may still appear."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from eventodb.store.base import Head
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres.statements import quote_ident, schema_name
from tests.support.postgres import open_postgres_store

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NS = "head"
SCHEMA = quote_ident(schema_name(NS))


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_postgres_store(postgres_dsn) as pg:
        await pg.create_namespace(NS, "hash")
        yield pg


@pytest.fixture
async def held(store: PostgresStore, postgres_dsn: str) -> AsyncIterator[Any]:
    """A second SQL client, for a transaction left open."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def sql_write(conn: Any, stream: str) -> None:
    await conn.execute(
        f"SELECT {SCHEMA}.write_message($1, $2, 'T', '{{}}')", str(uuid.uuid4()), stream
    )


async def in_flight_below_committed(store: PostgresStore, sql: Any, held: Any) -> Any:
    """Position 1 written by the store, 2 drawn by ``held`` in a transaction left open (the
    one returned), 3 committed by ``sql``: 3 is readable while 2 is not."""
    await store.write_message(NS, "a-1", "T", {})
    transaction = held.transaction()
    await transaction.start()
    await sql_write(held, "b-1")
    await sql_write(sql, "c-1")
    return transaction


async def test_an_empty_namespace_and_plain_writes_are_settled(store: PostgresStore) -> None:
    assert await store.settled_head(NS) == Head(0, settled=True)
    for i in range(3):
        await store.write_message(NS, f"a-{i}", "T", {})
    assert await store.settled_head(NS) == Head(3, settled=True)


async def test_a_write_in_flight_below_a_committed_one_is_waited_for(
    store: PostgresStore, sql: Any, held: Any
) -> None:
    transaction = await in_flight_below_committed(store, sql, held)
    head = asyncio.ensure_future(store.settled_head(NS))
    await asyncio.sleep(0.3)
    assert not head.done(), "the head did not wait for the write in flight"
    await transaction.commit()
    assert await asyncio.wait_for(head, 5) == Head(3, settled=True)
    messages = await store.get_category_messages(NS, "", position=1)
    assert [m.global_position for m in messages] == [1, 2, 3]


async def test_a_write_that_stays_in_flight_leaves_the_head_unsettled(
    store: PostgresStore, sql: Any, held: Any
) -> None:
    transaction = await in_flight_below_committed(store, sql, held)
    try:
        # Everything up to the last position drawn by then, as far as it is committed.
        assert await store.settled_head(NS, wait=0.2) == Head(3, settled=False)
    finally:
        await transaction.rollback()
    assert await store.settled_head(NS, wait=0.2) == Head(3, settled=True)


async def test_new_writers_are_not_held_up_by_a_head_waiting(
    store: PostgresStore, held: Any
) -> None:
    transaction = held.transaction()
    await transaction.start()
    try:
        await sql_write(held, "b-1")
        head = asyncio.ensure_future(store.settled_head(NS, wait=3))
        await asyncio.sleep(0.1)
        written = await asyncio.wait_for(store.write_message(NS, "a-1", "T", {}), 2)
        assert written.global_position == 2
        assert not head.done()
    finally:
        await transaction.commit()
    # 1 if the head read the sequence before "a-1" drew 2 (the usual order), else 2.
    assert (await head).settled


async def test_messages_placed_above_the_sequence_leave_the_head_unsettled(
    store: PostgresStore, sql: Any
) -> None:
    await store.write_message(NS, "a-1", "T", {})
    await sql.execute(
        f"INSERT INTO {SCHEMA}.messages (id, stream_name, type, position, global_position, data)"
        " VALUES ($1, 'x-1', 'T', 0, 100, '{}')",
        uuid.uuid4(),
    )
    assert await store.settled_head(NS) == Head(100, settled=False)


async def test_a_sequence_that_draws_ahead_leaves_the_head_unsettled(
    store: PostgresStore, sql: Any
) -> None:
    """With CACHE > 1 a session draws positions it has reserved earlier, without the lock held
    when the sequence moved: the sequence no longer bounds what may still appear."""
    await store.write_message(NS, "a-1", "T", {})
    await sql.execute(f"ALTER SEQUENCE {SCHEMA}.messages_global_position_seq CACHE 10")
    assert await store.settled_head(NS) == Head(1, settled=False)


async def test_a_restarted_sequence_is_read_as_not_yet_drawn(
    store: PostgresStore, sql: Any
) -> None:
    await sql.execute(f"ALTER SEQUENCE {SCHEMA}.messages_global_position_seq RESTART WITH 50")
    assert await store.settled_head(NS) == Head(0, settled=True)
    written = await store.write_message(NS, "a-1", "T", {})
    assert written.global_position == 50
    assert await store.settled_head(NS) == Head(50, settled=True)
