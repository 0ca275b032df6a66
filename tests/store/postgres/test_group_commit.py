"""Group commit on Postgres: concurrent writes go to ``write_messages`` together, each with
``write_message``'s semantics and an answer of its own.

Batches are formed on purpose by holding a write in flight: its insert waits for a plain SQL
transaction that inserted a row with the same id and has not committed yet, so the writes that
arrive meanwhile queue and go as one batch when that transaction rolls back (see
:func:`held_in_flight`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from eventodb.core.errors import DuplicateMessageId, VersionConflict
from eventodb.core.hashing import hash_64
from eventodb.store.base import WriteResult
from eventodb.store.batching import Batcher
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres.store import _Item, _NamespaceSchema, _Outcome
from tests.store.concurrent_writes import check_outcomes, expected_summary, run_workload
from tests.support.polling import eventually_async
from tests.support.postgres import lock_waiters, open_postgres_store

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NS = "batches"
SCHEMA = "eventodb_batches"
HOLD = "hold"
"""Category of the writes kept in flight while a batch forms."""


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_postgres_store(postgres_dsn) as pg:
        await pg.create_namespace(NS, "hash")
        yield pg


async def writes_of(store: PostgresStore, namespace: str = NS) -> Batcher[_Item, _Outcome]:
    ns: _NamespaceSchema = await store._namespace(namespace)
    return ns.writes


@contextlib.asynccontextmanager
async def held_in_flight(store: PostgresStore, sql: Any) -> AsyncIterator[Batcher[_Item, _Outcome]]:
    """A write of category :data:`HOLD` in flight until the block ends: a SQL transaction has
    inserted (uncommitted) a row with the write's id, so the write's insert waits on the unique
    index; it rolls back at the end and the write goes through. Writes submitted meanwhile
    queue for the next batch."""
    writes = await writes_of(store)
    held_id = str(uuid.uuid4())
    holder = await asyncpg.connect(store.dsn)
    tx = holder.transaction()
    await tx.start()
    try:
        await holder.execute(
            f"INSERT INTO {SCHEMA}.messages (id, stream_name, type, position, data)"
            " VALUES ($1, 'holder-1', 'T', 0, '{}')",
            held_id,
        )
        held = asyncio.create_task(
            store.write_message(NS, f"{HOLD}-{uuid.uuid4().hex}", "T", {}, message_id=held_id)
        )
        await eventually_async(lambda: writes._in_flight == 1, 10, "the held write is in flight")
        await eventually_async(
            lambda: lock_waiters(sql), 10, "the held write waits for the SQL transaction"
        )
        yield writes
    finally:
        await tx.rollback()
        await holder.close()
    await held


Outcome = WriteResult | VersionConflict | DuplicateMessageId


async def outcome(call: Awaitable[WriteResult]) -> Outcome:
    try:
        return await call
    except (VersionConflict, DuplicateMessageId) as exc:
        return exc


async def one_batch(
    store: PostgresStore, sql: Any, writes: list[Callable[[], Awaitable[WriteResult]]]
) -> list[Outcome]:
    """Run ``writes`` as one batch (in this order); their outcomes."""
    async with held_in_flight(store, sql) as commit:
        before = commit.batches
        tasks = [asyncio.create_task(outcome(w())) for w in writes]
        await eventually_async(
            lambda: len(commit._waiting) == len(writes), 10, "the batch has formed"
        )
    results = await asyncio.gather(*tasks)
    assert commit.batches == before + 1, "the writes did not go as one batch"
    return results


def write(
    store: PostgresStore,
    stream: str,
    data: dict[str, Any],
    *,
    message_id: str | None = None,
    expected: int | None = None,
) -> Callable[[], Awaitable[WriteResult]]:
    return lambda: store.write_message(
        NS, stream, "T", data, message_id=message_id, expected_version=expected
    )


def ok(result: Outcome) -> WriteResult:
    assert isinstance(result, WriteResult), result
    return result


# -- concurrency: batched and single writes agree ---------------------------------------------


async def test_batched_and_single_writes_give_the_same_outcomes(store: PostgresStore) -> None:
    await store.create_namespace("alone", "hash-alone")
    # Every write of "alone" goes at once, in a transaction of its own.
    ns = await store._namespace("alone")
    alone: Batcher[_Item, _Outcome] = Batcher(
        lambda items: store._write_batch(ns, items), max_in_flight=1_000_000
    )
    ns.writes = alone
    summaries = {}
    for namespace in (NS, "alone"):
        attempts = await run_workload(store, namespace)
        stored = await store.get_category_messages(namespace, "", batch_size=-1)
        summaries[namespace] = check_outcomes(attempts, stored)
    assert summaries[NS] == summaries["alone"] == expected_summary()
    batched = await writes_of(store)
    assert batched.items == sum(expected_summary().values())
    assert batched.batches < batched.items / 2, "the concurrent writes were not batched"
    assert alone.batches == alone.items


# -- one batch, mixed outcomes ----------------------------------------------------------------


async def test_a_batch_answers_each_of_its_writes(store: PostgresStore, sql: Any) -> None:
    existing_id, new_id = str(uuid.uuid4()), str(uuid.uuid4())
    existing = await store.write_message(NS, "mix-3", "T", {"v": 1}, message_id=existing_id)
    await store.write_message(NS, "mix-2", "T", {})
    notes: list[dict[str, Any]] = []
    await sql.add_listener("eventodb", lambda *args: notes.append(json.loads(args[3])))

    results = await one_batch(
        store,
        sql,
        [
            write(store, "mix-1", {"i": 0}),
            write(store, "mix-2", {"i": 1}, expected=5),  # wrong expected version
            write(store, "mix-3", {"v": 1}, message_id=existing_id),  # retry: same content
            write(store, "mix-3", {"v": 2}, message_id=existing_id),  # same id, other content
            write(store, "fresh-1", {"i": 4}, expected=-1),  # a new stream...
            write(store, "fresh-1", {"i": 5}, expected=0),  # ...sees the batch's earlier write
            write(store, "fresh-1", {"i": 6}, expected=-1),  # and so conflicts here
            write(store, "mix-4", {"n": 1}, message_id=new_id),
            write(store, "mix-4", {"n": 1}, message_id=new_id),  # retry inside the batch
            write(store, "mix-4", {"n": 2}, message_id=new_id),  # clash inside the batch
            write(store, "mix-2", {"i": 10}, expected=0),  # right after a wrong one
            write(store, "mix-3", {"v": 1}, message_id=existing_id, expected=7),  # id first
            write(store, "other-1", {"i": 12}),
        ],
    )

    written = [ok(results[i]) for i in (0, 4, 5, 7, 10, 12)]
    assert [(r.position, r.duplicate) for r in written] == [
        (0, False), (0, False), (1, False), (0, False), (1, False), (0, False),
    ]  # fmt: skip
    first = written[0].global_position
    assert [r.global_position for r in written] == list(range(first, first + 6))
    conflict = results[1]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.expected, conflict.actual) == (5, 0)
    conflict = results[6]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.expected, conflict.actual) == (-1, 1)
    for i in (2, 11):
        retry = ok(results[i])
        assert (retry.position, retry.global_position, retry.duplicate) == (
            existing.position, existing.global_position, True,
        )  # fmt: skip
    retry = ok(results[8])
    assert (retry.position, retry.global_position, retry.duplicate) == (
        written[3].position, written[3].global_position, True,
    )  # fmt: skip
    for i, stream in ((3, "mix-3"), (9, "mix-4")):
        clash = results[i]
        assert isinstance(clash, DuplicateMessageId)
        assert clash.stream_name == stream

    stored = {m.global_position: m for m in await store.get_category_messages(NS, "")}
    assert [stored[r.global_position].data for r in written] == [
        {"i": 0}, {"i": 4}, {"i": 5}, {"n": 1}, {"i": 10}, {"i": 12},
    ]  # fmt: skip
    # One transaction: one commit time for the whole batch.
    assert len({stored[r.global_position].time for r in written}) == 1
    assert [m.data for m in await store.get_stream_messages(NS, "mix-3")] == [{"v": 1}]

    # One NOTIFY for the batch, naming each message it wrote (and one for the held write).
    await eventually_async(lambda: len(notes) >= 2, 10, "the notifications arrived")
    await sql.fetchval("SELECT 1")
    batch_notes = [n for n in notes if len(n["g"]) > 1]
    assert batch_notes == [
        {
            "s": SCHEMA,
            "g": [r.global_position for r in written],
            "p": [r.position for r in written],
            "n": ["mix-1", "fresh-1", "fresh-1", "mix-4", "mix-2", "other-1"],
        }
    ]
    assert len(notes) == 2


# -- a batch failing as a whole -----------------------------------------------------------------


def batch_sizes(store: PostgresStore) -> tuple[int, int]:
    """(transactions that committed writes, those that committed more than one)."""
    histogram = store.stats.write_batches
    return histogram.count, histogram.count - histogram.cumulative()[0][1]


@contextlib.asynccontextmanager
async def racing_insert(dsn: str, sql: Any, message_id: str) -> AsyncIterator[int]:
    """A plain SQL client inserts message ``message_id`` (``raw-1``, ``{"r": 1}``) and keeps
    its transaction open; it commits when the block ends, once a write waits for that row.
    Yields the row's global position."""
    other = await asyncpg.connect(dsn)
    try:
        tx = other.transaction()
        await tx.start()
        global_position: int = await other.fetchval(
            f"INSERT INTO {SCHEMA}.messages (id, stream_name, type, position, data)"
            " VALUES ($1, 'raw-1', 'T', 0, '{\"r\": 1}') RETURNING global_position",
            message_id,
        )
        yield global_position
        await eventually_async(lambda: lock_waiters(sql), 10, "a write waits for the SQL client")
        await tx.commit()
    finally:
        await other.close()


async def test_a_batch_that_fails_as_a_whole_is_written_one_by_one(
    store: PostgresStore, sql: Any, postgres_dsn: str
) -> None:
    """A plain SQL client inserts, and commits, an id the batch is writing: the batch's insert
    fails on the unique index after its own check found nothing, so every item is written again
    alone, and each gets the answer it would have got alone."""
    await store.write_message(NS, "fb-2", "T", {})
    raw_id = str(uuid.uuid4())
    errors, (transactions, multi) = store.stats.errors, batch_sizes(store)
    writes = [
        write(store, "fb-1", {"i": 0}),
        write(store, "fb-new", {"i": 1}, expected=-1),
        write(store, "raw-1", {"r": 1}, message_id=raw_id),
        write(store, "fb-new", {"i": 3}, expected=0),
        write(store, "fb-2", {"i": 4}, expected=3),
        write(store, "fb-3", {"i": 5}),
    ]
    async with (
        racing_insert(postgres_dsn, sql, raw_id) as raw_position,
        held_in_flight(store, sql) as commit,
    ):
        tasks = [asyncio.create_task(outcome(w())) for w in writes]
        await eventually_async(
            lambda: len(commit._waiting) == len(writes), 10, "the batch has formed"
        )
    results = await asyncio.gather(*tasks)

    assert store.stats.errors == errors + 1  # the batch failed once...
    # ...and nothing of it committed together: the held write, then each item alone.
    assert batch_sizes(store) == (transactions + 1 + len(writes), multi)
    assert [(ok(results[i]).position, ok(results[i]).duplicate) for i in (0, 1, 3, 5)] == [
        (0, False), (0, False), (1, False), (0, False),
    ]  # fmt: skip
    retry = ok(results[2])
    assert (retry.position, retry.global_position, retry.duplicate) == (0, raw_position, True)
    conflict = results[4]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.expected, conflict.actual) == (3, 0)
    assert [m.data for m in await store.get_stream_messages(NS, "fb-new")] == [{"i": 1}, {"i": 3}]
    assert [m.id for m in await store.get_stream_messages(NS, "raw-1")] == [raw_id]


@pytest.mark.parametrize("same_content", [True, False])
async def test_a_lone_write_racing_a_plain_insert_of_its_id_gets_the_id_answer(
    store: PostgresStore, sql: Any, postgres_dsn: str, same_content: bool
) -> None:
    """The same race for a write alone in its batch: its insert fails, and the id rule
    decides (an identical message makes it a retry, another one a clash)."""
    raw_id = str(uuid.uuid4())
    data = {"r": 1} if same_content else {"r": 2}
    async with racing_insert(postgres_dsn, sql, raw_id) as raw_position:
        task = asyncio.create_task(outcome(write(store, "raw-1", data, message_id=raw_id)()))
    result = await task
    if same_content:
        retry = ok(result)
        assert (retry.position, retry.global_position, retry.duplicate) == (0, raw_position, True)
    else:
        assert isinstance(result, DuplicateMessageId)
        assert result.stream_name == "raw-1"
    assert [m.id for m in await store.get_stream_messages(NS, "raw-1")] == [raw_id]


async def test_a_batch_does_not_wait_for_a_category_lock_held_elsewhere(
    store: PostgresStore, sql: Any, postgres_dsn: str
) -> None:
    """A SQL client holds one category's lock in a long transaction: the batch writes its other
    items at once; the held category's write waits alone, outside the batches, and is written
    once the client commits — so one held lock cannot stall every write queued behind it."""
    client = await asyncpg.connect(postgres_dsn)
    try:
        tx = client.transaction()
        await tx.start()
        await client.execute("SELECT pg_advisory_xact_lock($1)", hash_64("held"))
        errors = store.stats.errors
        writes = [
            write(store, "free-1", {"i": 0}, expected=-1),
            write(store, "held-1", {"i": 1}),
            write(store, "free-1", {"i": 2}, expected=0),
        ]
        commit = await writes_of(store)
        async with held_in_flight(store, sql):
            tasks = [asyncio.create_task(outcome(w())) for w in writes]
            await eventually_async(
                lambda: len(commit._waiting) == len(writes), 10, "the batch has formed"
            )
        free = await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), 10)
        assert [(ok(r).position, ok(r).duplicate) for r in free] == [(0, False), (1, False)]
        await asyncio.sleep(0.2)
        assert not tasks[1].done()  # waits for the client's lock...
        assert commit._in_flight == 0  # ...without holding up the batches
        await tx.commit()
        held = ok(await asyncio.wait_for(tasks[1], 10))
    finally:
        await client.close()

    assert (held.position, held.duplicate) == (0, False)
    assert store.stats.errors == errors
    assert [m.data for m in await store.get_stream_messages(NS, "free-1")] == [
        {"i": 0},
        {"i": 2},
    ]
    assert [m.data for m in await store.get_stream_messages(NS, "held-1")] == [{"i": 1}]


# -- a lone write goes at once ----------------------------------------------------------------


async def test_a_lone_writer_never_waits_for_a_batch(store: PostgresStore) -> None:
    commit = await writes_of(store)
    transactions, multi = batch_sizes(store)
    for i in range(20):
        result = await store.write_message(NS, "lone-1", "T", {"i": i})
        assert result.position == i
        assert commit._in_flight == 0
        assert not commit._tasks  # no flush task was needed
    assert (commit.batches, commit.items) == (20, 20)
    assert batch_sizes(store) == (transactions + 20, multi)


async def test_a_write_waits_for_the_next_batch_while_one_is_in_flight(
    store: PostgresStore, sql: Any
) -> None:
    async with held_in_flight(store, sql) as commit:
        waiting = asyncio.create_task(store.write_message(NS, "free-1", "T", {}))
        await eventually_async(lambda: len(commit._waiting) == 1, 10, "the write waits")
        await asyncio.sleep(0.2)
        assert not waiting.done()  # another category, but one batch is in flight
        assert commit._in_flight == 1
    assert (await waiting).position == 0
    assert commit._in_flight == 0


# -- writes during an import --------------------------------------------------------------------


async def test_writes_during_an_import_wait_for_it_and_land_after_it(
    store: PostgresStore, sql: Any, postgres_dsn: str
) -> None:
    """An import locks the table against inserts, places its records at global positions of
    its own and raises the sequence past them. A server write and a SQL client's
    ``write_message`` arriving meanwhile wait for it, then draw positions after it (the import
    is replayed statement by statement from ``PostgresStore._import``, paused before its end)."""
    await store.write_message(NS, "imp-1", "T", {})
    ns: _NamespaceSchema = await store._namespace(NS)
    client = await asyncpg.connect(postgres_dsn)
    try:
        tx = sql.transaction()
        await tx.start()
        await sql.execute(ns.sql.lock_for_import)
        await sql.execute(
            ns.sql.import_rows,
            [str(uuid.uuid4()), str(uuid.uuid4())], ["imp-1", "imp-9"], ["Imported"] * 2, [1, 0],
            [2, 3], ["{}"] * 2, [None] * 2, [None] * 2, [None] * 2, ["2025-01-01 00:00:00"] * 2,
        )  # fmt: skip
        server_write = asyncio.create_task(store.write_message(NS, "imp-1", "T", {"by": "server"}))
        sql_write = asyncio.create_task(
            client.fetchval(
                f"SELECT {SCHEMA}.write_message($1, 'sql-1', 'T', '{{}}')", str(uuid.uuid4())
            )
        )
        await eventually_async(lambda: lock_waiters(sql, 2), 10, "both writes wait for the import")
        await sql.execute(ns.sql.raise_sequence, 3)
        await tx.commit()
        written: WriteResult | BaseException
        sql_position: Any
        written, sql_position = await asyncio.gather(
            server_write, sql_write, return_exceptions=True
        )
    finally:
        await client.close()
    assert sql_position == 0, sql_position
    assert isinstance(written, WriteResult), written
    assert (written.position, written.global_position) in ((2, 4), (2, 5))
    stored = await store.get_category_messages(NS, "", batch_size=-1)
    assert sorted((m.global_position, m.stream_name, m.position) for m in stored) == sorted(
        [
            (1, "imp-1", 0), (2, "imp-1", 1), (3, "imp-9", 0),
            (written.global_position, "imp-1", 2), (9 - written.global_position, "sql-1", 0),
        ]
    )  # fmt: skip


async def test_a_batch_whose_answer_is_lost_after_commit_answers_each_write_once(
    store: PostgresStore, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch commits but its connection dies before the answer arrives: the item-by-item
    retry finds each message under the id the store gave it, and answers with where it was
    written instead of failing (nothing is written twice)."""
    real = PostgresStore._call_batch
    lost: list[int] = []

    async def commit_then_lose_answer(
        c: Any, ns: _NamespaceSchema, items: list[_Item], wait: bool
    ) -> Any:
        result = await real(c, ns, items, wait)
        if len(items) > 1 and not lost:
            lost.append(len(items))
            raise asyncpg.ConnectionDoesNotExistError("connection lost after commit")
        return result

    monkeypatch.setattr(PostgresStore, "_call_batch", staticmethod(commit_then_lose_answer))
    writes = [write(store, f"lost-{i}", {"i": i}) for i in range(3)]
    results = await one_batch(store, sql, writes)

    assert lost == [3]
    assert [(ok(r).position, ok(r).duplicate) for r in results] == [(0, False)] * 3
    stored = await sql.fetch(
        f"SELECT stream_name, global_position FROM {SCHEMA}.messages"
        " WHERE stream_name LIKE 'lost-%' ORDER BY global_position"
    )
    assert [(r[0], r[1]) for r in stored] == [
        ("lost-0", ok(results[0]).global_position),
        ("lost-1", ok(results[1]).global_position),
        ("lost-2", ok(results[2]).global_position),
    ]
