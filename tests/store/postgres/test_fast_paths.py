"""Upgrading existing Postgres namespaces to the fast paths (namespace migrations 004 and 005).

Consumer-group membership must stay what Message DB's SQL functions give, before and after the
upgrade, for rows with and without the stored hash; the fill of older rows reports progress,
resumes after an interruption, and changes no read.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventodb.core.hashing import cardinal_hash
from eventodb.store import migrations
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres.statements import quote_ident, schema_name
from tests.store.fast_paths import (
    CATEGORY,
    GO_STREAMS,
    GROUP_SIZES,
    PAYLOADS,
    Interrupted,
    all_reads,
    expected_members,
    go_postgres_namespace,
    store_members,
    stream_ids,
    stream_name,
)
from tests.store.storage_access import RawMessages, migrations_up_to
from tests.support.postgres import plain_connection, reset_database

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def at_003(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrations_up_to(tmp_path_factory.mktemp("migrations"), "postgres", 3)


@pytest.fixture
async def sql(postgres_dsn: str) -> AsyncIterator[Any]:
    async with plain_connection(postgres_dsn) as conn:
        yield conn


async def new_namespace(dsn: str, migrations_root: Path | None, namespace: str) -> str:
    """Create ``namespace`` with the given migrations (on an emptied database); its schema."""
    await reset_database(dsn)
    async with PostgresStore(dsn, min_pool=1, migrations_root=migrations_root) as store:
        await store.create_namespace(namespace, f"hash-{namespace}")
    return quote_ident(schema_name(namespace))


async def sql_write(sql: Any, schema: str, stream: str, data: str = "{}") -> int:
    """A write through the namespace's Message DB ``write_message``; its global position."""
    position = await sql.fetchval(
        f"SELECT {schema}.write_message($1, $2, 'T', $3::jsonb)", str(uuid.uuid4()), stream, data
    )
    return int(
        await sql.fetchval(
            f"SELECT global_position FROM {schema}.messages"
            " WHERE stream_name = $1 AND position = $2",
            stream,
            position,
        )
    )


async def message_db_members(sql: Any, schema: str, size: int) -> list[set[int]]:
    """Each member's global positions by Message DB's ``get_category_messages``."""
    return [
        {
            r[0]
            for r in await sql.fetch(
                f"SELECT global_position FROM {schema}.get_category_messages($1, 1, 1000, NULL,"
                " $2, $3)",
                CATEGORY,
                member,
                size,
            )
        }
        for member in range(size)
    ]


async def assert_same_membership(
    sql: Any, schema: str, streams: dict[int, str], store: PostgresStore | None = None
) -> None:
    """Message DB's functions, the store and eventodb.core.hashing agree, for sizes 1-7."""
    hashes = await sql.fetch(
        f"SELECT stream_name, {schema}.hash_64({schema}.cardinal_id(stream_name))"
        f" FROM {schema}.messages"
    )
    assert {r[0]: r[1] for r in hashes} == {r[0]: cardinal_hash(r[0]) for r in hashes}
    for size in GROUP_SIZES:
        expected = expected_members(streams, size)
        assert await message_db_members(sql, schema, size) == expected, f"size {size}"
        if store is not None:
            assert await store_members(store, "cg", CATEGORY, size) == expected, f"size {size}"


examples = itertools.count()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ids=st.lists(stream_ids, min_size=1, max_size=40))
async def test_membership_is_message_dbs_before_and_after_the_upgrade(
    postgres_dsn: str, at_003: Path, sql: Any, ids: list[str | None]
) -> None:
    schema = await new_namespace(postgres_dsn, at_003, "cg")
    streams: dict[int, str] = {}
    for stream_id in ids:
        stream = stream_name(CATEGORY, stream_id)
        streams[await sql_write(sql, schema, stream)] = stream
    await sql_write(sql, schema, "other-1")  # another category: in no member's share
    await assert_same_membership(sql, schema, streams)

    async with PostgresStore(postgres_dsn, min_pool=1) as store:  # 004, fill, 005
        stored = await sql.fetch(f"SELECT stream_name, cardinal_id_hash FROM {schema}.messages")
        assert {r[0]: r[1] for r in stored} == {r[0]: cardinal_hash(r[0]) for r in stored}
        await assert_same_membership(sql, schema, streams, store)
        # Written by the server now (hash stored by write_messages) and by SQL clients.
        for i, stream in enumerate(list(streams.values())[:10]):
            if i % 2:
                result = await store.write_message("cg", stream, "T", {})
                streams[result.global_position] = stream
            else:
                streams[await sql_write(sql, schema, stream)] = stream
        await assert_same_membership(sql, schema, streams, store)
        # Rows another program inserted without the hash.
        async with RawMessages(store, "cg") as raw:
            assert await raw.forget_fast_paths() == len(streams) + 1
        await assert_same_membership(sql, schema, streams, store)


async def test_membership_of_a_namespace_left_by_the_go_server(postgres_dsn: str, sql: Any) -> None:
    await reset_database(postgres_dsn)
    async with PostgresStore(postgres_dsn, min_pool=1):
        pass  # the registry, as the Go server would have left it too
    await sql.execute(go_postgres_namespace("eventodb_cg"))
    streams: dict[int, str] = {}
    for i, stream in enumerate(GO_STREAMS * 2):
        gp = await sql.fetchval(
            'INSERT INTO "eventodb_cg".messages (stream_name, type, position, data)'
            " VALUES ($1, 'T', $2, '{}') RETURNING global_position",
            stream,
            i // len(GO_STREAMS),
        )
        if stream.startswith(f"{CATEGORY}-") or stream == CATEGORY:
            streams[gp] = stream
    await sql.execute(
        "INSERT INTO eventodb_store.namespaces VALUES"
        " ('cg', 'hash-cg', 'eventodb_cg', '', 1714557600, '{}')"
    )
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        assert store.migrations_applied == 4  # 003 to 006
        await assert_same_membership(sql, '"eventodb_cg"', streams, store)
        async with RawMessages(store, "cg") as raw:
            await raw.forget_fast_paths()
        await assert_same_membership(sql, '"eventodb_cg"', streams, store)


# -- the fill of older rows ---------------------------------------------------------------------


@pytest.fixture
def small_fill_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(migrations, "FILL_BATCH", 4)
    return 4


async def test_an_interrupted_fill_resumes_and_changes_no_read(
    postgres_dsn: str, tmp_path: Path, at_003: Path, sql: Any, small_fill_batches: int
) -> None:
    schema = await new_namespace(postgres_dsn, at_003, "cg")
    streams = [stream_name(CATEGORY, str(i % 7)) for i in range(7)]
    for i in range(25):
        await sql_write(sql, schema, streams[i % 7], PAYLOADS[i % len(PAYLOADS)])
    await sql.execute(
        f"UPDATE {schema}.messages SET time = time - interval '60 years' * (global_position % 2)"
        " + interval '1 microsecond' * (global_position % 3)"
    )
    message_db_reads = await sql.fetch(f"SELECT * FROM {schema}.get_category_messages('cg')")

    # At 004 the columns exist but nothing is filled yet: reads render every row.
    async with PostgresStore(
        postgres_dsn, min_pool=1, migrations_root=migrations_up_to(tmp_path, "postgres", 4)
    ) as store:
        before = await all_reads(store, streams)
        async with RawMessages(store, "cg") as raw:
            assert await raw.unfilled() == 25

    progress: list[tuple[str, int, int]] = []

    def interrupt(namespace: str, done: int, total: int) -> None:
        progress.append((namespace, done, total))
        if len(progress) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await PostgresStore(postgres_dsn, min_pool=1, on_progress=interrupt).open()
    assert progress == [("cg", 4, 25), ("cg", 8, 25)]
    assert await sql.fetchval(f"SELECT max(version) FROM {schema}._schema_version") == 4

    async with PostgresStore(
        postgres_dsn, min_pool=1, migrations_root=migrations_up_to(tmp_path, "postgres", 4)
    ) as store:
        async with RawMessages(store, "cg") as raw:
            assert await raw.unfilled() == 17
        assert await all_reads(store, streams) == before  # half filled, same reads

    progress.clear()

    def record(namespace: str, done: int, total: int) -> None:
        progress.append((namespace, done, total))

    async with PostgresStore(postgres_dsn, min_pool=1, on_progress=record) as store:
        assert store.migrations_applied == 2  # 005 and 006
        assert progress == [("cg", done, 17) for done in (4, 8, 12, 16, 17)]
        async with RawMessages(store, "cg") as raw:
            assert await raw.unfilled() == 0
        assert await all_reads(store, streams) == before
    assert await sql.fetchval(f"SELECT max(version) FROM {schema}._schema_version") == 6
    assert await sql.fetch(f"SELECT * FROM {schema}.get_category_messages('cg')") == (
        message_db_reads
    )
