"""Batched reads on Postgres: concurrent ``stream.get`` and ``category.get`` reads of a namespace
go to the database as one statement per kind of read, and each gets the body it would have got
alone.

Batches are formed on purpose by holding a read in flight: a plain SQL transaction holds an
exclusive lock on the namespace's table, so the first read waits for it and the reads that
arrive meanwhile queue for the next batch (see :func:`held_in_flight`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventodb.core.errors import BackendError, NamespaceNotFound
from eventodb.store.base import ConsumerGroup
from eventodb.store.batching import Batcher
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres.statements import NamespaceSQL, schema_name
from eventodb.store.postgres.store import BATCHED_READ_LIMIT, _NamespaceSchema, _Page, _Read
from tests.support.polling import eventually_async
from tests.support.postgres import lock_waiters, open_postgres_store, plain_connection

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NS = "reads"
STREAMS = {"account-1": 30, "account-2": 5, "order-7": 12}
"""Streams written before each test and how many messages each holds."""
CORRELATIONS = {"account-2": {"correlationStreamName": "origin-1"}}
"""The metadata of each stream's messages, where they have some."""


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_postgres_store(postgres_dsn) as pg:
        await pg.create_namespace(NS, "hash")
        for i in range(max(STREAMS.values())):
            for stream, count in STREAMS.items():
                if i < count:
                    data = {"i": i, "big": 10**30, "f": 1e300}
                    await pg.write_message(NS, stream, "T", data, CORRELATIONS.get(stream))
        yield pg


async def by_position(store: PostgresStore) -> Batcher[_Read, _Page]:
    """The batcher of stream reads by position."""
    ns: _NamespaceSchema = await store._namespace(NS)
    return ns.reads_of("read stream", ns.sql.read_stream, ns.sql.read_streams)


def waiting(ns: _NamespaceSchema) -> int:
    """Reads waiting for the next batch, of every kind."""
    return sum(len(batcher._waiting) for batcher in ns.reads.values())


@contextlib.asynccontextmanager
async def held_in_flight(store: PostgresStore) -> AsyncIterator[Any]:
    """A read of ``account-1`` in flight until the block ends, waiting for a SQL transaction
    that locked the namespace's table; yields that transaction's connection. Reads started
    meanwhile queue for the next batch; the lock goes when the block ends (the transaction
    commits, so whatever the block did in it stays)."""
    stream_reads = await by_position(store)
    async with plain_connection(store.dsn) as holder:
        tx = holder.transaction()
        await tx.start()
        try:
            await holder.execute(f"LOCK TABLE {NamespaceSQL(schema_name(NS)).messages}")
            held = asyncio.create_task(store.read_stream_json(NS, "account-1"))
            await eventually_async(
                lambda: stream_reads._in_flight == 1, 10, "the held read is in flight"
            )
            yield holder
        finally:
            await tx.commit()
        with contextlib.suppress(NamespaceNotFound):
            await held


READS: list[dict[str, Any]] = [
    {"stream_name": "account-1"},
    {"stream_name": "account-1", "position": 7, "batch_size": 3},
    {"stream_name": "account-2", "position": 4},
    {"stream_name": "order-7", "batch_size": 1},
    {"stream_name": "order-7", "position": 50},
    {"stream_name": "missing-1"},
    {"stream_name": "account-1", "batch_size": BATCHED_READ_LIMIT},
    {"stream_name": "account-1", "global_position": 40},
    {"stream_name": "order-7", "global_position": 1, "batch_size": 4},
    {"stream_name": "missing-2", "global_position": 1},
]


async def test_concurrent_reads_go_together_and_each_gets_its_own_body(
    store: PostgresStore,
) -> None:
    ns: _NamespaceSchema = await store._namespace(NS)
    stream_reads = await by_position(store)
    async with held_in_flight(store), plain_connection(store.dsn) as sql:
        tasks = [asyncio.create_task(store.read_stream_json(NS, **read)) for read in READS]
        await eventually_async(
            lambda: waiting(ns) == 7, 10, "every read by position waits for the next batch"
        )
        # Those by global position go alone: they wait for the lock themselves.
        await eventually_async(lambda: lock_waiters(sql, 1 + 3), 10, "the other reads wait")
    batched = await asyncio.gather(*tasks)
    # The held read alone, then one statement for the seven others by position.
    assert (stream_reads.batches, stream_reads.items) == (2, 8)
    assert list(ns.reads) == [ns.sql.read_stream]
    assert store.stats.read_batches.count == 2
    alone = [await store.read_stream_json(NS, **read) for read in READS]
    assert stream_reads.batches == 2 + 7, "each read after the batch goes alone"
    assert batched == alone
    decoded = [json.loads(body) for body in batched]
    assert [len(messages) for messages in decoded] == [30, 3, 1, 1, 0, 0, 30, 8, 4, 0]
    assert [m[2] for m in decoded[1]] == [7, 8, 9]
    assert all(m[4] == {"i": m[2], "big": 10**30, "f": 1e300} for m in decoded[0])
    assert all(m[3] >= 40 for m in decoded[7])


CATEGORY_READS: list[dict[str, Any]] = [
    {"category": "account"},
    {"category": "account", "position": 20, "batch_size": 5},
    {"category": "account", "batch_size": 3},
    {"category": "order"},
    {"category": "nothing"},
    {"category": "account", "batch_size": BATCHED_READ_LIMIT},
    {"category": "account", "consumer_group": ConsumerGroup(0, 2)},
    {"category": "account", "consumer_group": ConsumerGroup(1, 2)},
    {"category": "account", "position": 10, "consumer_group": ConsumerGroup(1, 2)},
    {"category": "account", "correlation": "origin"},
    {"category": "account", "correlation": "elsewhere"},
    {"category": ""},
    {"category": "", "position": 40, "batch_size": 2},
]
CATEGORY_KINDS = 3
"""Kinds of batched read among them (each its own statement): of a category, of a category by
consumer group, of the whole namespace; the two by correlation go alone."""


async def test_concurrent_category_reads_go_together_and_each_gets_its_own_body(
    store: PostgresStore,
) -> None:
    ns: _NamespaceSchema = await store._namespace(NS)
    async with held_in_flight(store):
        tasks = [
            asyncio.create_task(store.read_category_json(NS, **read)) for read in CATEGORY_READS
        ]

        await eventually_async(
            lambda: waiting(ns) == len(CATEGORY_READS) - CATEGORY_KINDS - 2,
            10,
            "every batched read but the first of each kind waits for the next batch",
        )
    batched = await asyncio.gather(*tasks)
    # The held stream read; then for each kind its first read alone, then one statement for
    # the others.
    assert store.stats.read_batches.count == 1 + 2 * CATEGORY_KINDS
    assert sum(b.items for b in ns.reads.values()) == 1 + len(CATEGORY_READS) - 2
    alone = [await store.read_category_json(NS, **read) for read in CATEGORY_READS]
    assert batched == alone
    decoded = [json.loads(body) for body in batched]
    counts = [len(messages) for messages in decoded]
    assert counts[:6] == [35, 5, 3, 12, 0, 35]
    assert counts[6] + counts[7] == 35
    assert 0 < counts[6] < 35
    assert decoded[1] == [m for m in decoded[0] if m[4] >= 20][:5]
    assert decoded[2] == decoded[0][:3]
    assert decoded[8] == [m for m in decoded[7] if m[4] >= 10]
    assert counts[9:] == [5, 0, 47, 2]
    assert {m[1] for m in decoded[9]} == {"account-2"}
    assert decoded[12] == [m for m in decoded[11] if m[4] >= 40][:2]


async def test_long_and_unlimited_reads_do_not_join_a_batch(store: PostgresStore) -> None:
    ns: _NamespaceSchema = await store._namespace(NS)
    long_reads: list[dict[str, Any]] = [
        {"stream_name": "account-1", "batch_size": BATCHED_READ_LIMIT + 1},
        {"stream_name": "account-1", "batch_size": -1},
    ]
    long_category_reads: list[dict[str, Any]] = [
        {"category": "account", "batch_size": BATCHED_READ_LIMIT + 1},
        {"category": "account", "batch_size": -1, "consumer_group": ConsumerGroup(0, 2)},
    ]
    async with held_in_flight(store), plain_connection(store.dsn) as sql:
        tasks = [asyncio.create_task(store.read_stream_json(NS, **read)) for read in long_reads]
        tasks += [
            asyncio.create_task(store.read_category_json(NS, **read))
            for read in long_category_reads
        ]
        # They wait for the lock on their own, beside the held read.
        await eventually_async(lambda: lock_waiters(sql, 1 + len(tasks)), 10, "the reads wait")
        assert waiting(ns) == 0
    bodies = await asyncio.gather(*tasks)
    assert [len(json.loads(body)) for body in bodies[:3]] == [30, 30, 35]
    assert 0 < len(json.loads(bodies[3])) < 35
    assert sum(b.items for b in ns.reads.values()) == 1


async def test_a_read_that_fails_in_a_batch_fails_alone(store: PostgresStore) -> None:
    # A row written by another program with a hash whose absolute value overflows: the
    # consumer-group read of its category fails; the batch is read again read by read.
    ns: _NamespaceSchema = await store._namespace(NS)
    async with plain_connection(store.dsn) as sql:
        await sql.execute(
            f"INSERT INTO {ns.sql.messages} (id, stream_name, type, position, data,"
            " cardinal_id_hash) VALUES (gen_random_uuid(), 'broken-1', 'T', 0, '{}', $1)",
            -(2**63),
        )
    group = ConsumerGroup(0, 2)
    reads: list[dict[str, Any]] = [
        {"category": "account", "consumer_group": group},
        {"category": "broken", "consumer_group": group},
        {"category": "order", "consumer_group": group},
    ]
    async with held_in_flight(store):
        tasks = [asyncio.create_task(store.read_category_json(NS, **read)) for read in reads]
        await eventually_async(lambda: waiting(ns) == 2, 10, "two reads wait for the batch")
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[1], BackendError), outcomes[1]
    assert outcomes[0] == await store.read_category_json(NS, **reads[0])
    assert outcomes[2] == await store.read_category_json(NS, **reads[2])
    assert isinstance(outcomes[0], str)
    assert json.loads(outcomes[0])


async def test_a_batch_that_cannot_reach_postgres_is_not_read_again_read_by_read(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each read alone would fail the same way, one after the other (each after its own
    # connection attempts): the batch's failure is every read's answer.
    ns: _NamespaceSchema = await store._namespace(NS)
    statements: list[str] = []

    async def unreachable(verb: str, work: Any, **kwargs: Any) -> Any:
        statements.append(verb)
        raise BackendError(f"Failed to {verb}: Postgres is unreachable") from OSError("refused")

    monkeypatch.setattr(store._pool, "run", unreachable)
    reads: list[_Read] = [("account-1", 0, 10), ("order-7", 0, 10), ("account-2", 0, 10)]
    with pytest.raises(BackendError, match="unreachable"):
        await store._read_together(
            ns, "read stream", ns.sql.read_stream, ns.sql.read_streams, reads
        )
    assert statements == ["read stream"]


async def test_reads_of_a_namespace_deleted_while_they_wait_each_say_so(
    store: PostgresStore,
) -> None:
    ns: _NamespaceSchema = await store._namespace(NS)
    async with held_in_flight(store) as holder:
        tasks = [asyncio.create_task(store.read_stream_json(NS, **read)) for read in READS]
        await eventually_async(
            lambda: waiting(ns) == 7, 10, "every read by position waits for the next batch"
        )
        # Another process deletes the namespace in the locking transaction.
        await holder.execute(f"DROP SCHEMA {schema_name(NS)} CASCADE")
        await holder.execute("DELETE FROM eventodb_store.namespaces WHERE id = $1", NS)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(outcome, NamespaceNotFound) for outcome in outcomes), outcomes
    assert sum(b.batches for b in ns.reads.values()) == 2
