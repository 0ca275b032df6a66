"""Message DB compatibility: a namespace schema driven with plain SQL, the way Message DB clients,
its test scripts and psql users drive it (``search_path`` set to the schema, unqualified names,
named arguments). Only SQL goes through the separate connection; the store is used to create
the namespace and to show both sides see each other's writes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from eventodb.core.hashing import hash_64
from eventodb.store.postgres import PostgresStore
from tests.support.postgres import open_postgres_store, plain_connection

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NAMESPACE = "message-db"
SCHEMA = "eventodb_message_db"


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_postgres_store(postgres_dsn) as pg:
        await pg.create_namespace(NAMESPACE, "token-hash")
        yield pg


@pytest.fixture
async def sql(store: PostgresStore, postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain connection whose search_path is the namespace schema, as a Message DB client."""
    async with plain_connection(postgres_dsn, server_settings={"search_path": SCHEMA}) as conn:
        yield conn


async def write(sql: Any, stream: str, type_: str = "T", data: str = "{}", **kwargs: Any) -> int:
    named = "".join(f", {k} => ${i + 5}" for i, k in enumerate(kwargs))
    position: int = await sql.fetchval(
        f"SELECT write_message($1, $2, $3, $4{named})",
        str(uuid.uuid4()),
        stream,
        type_,
        data,
        *kwargs.values(),
    )
    return position


async def test_write_message_returns_gapless_positions(sql: Any) -> None:
    assert [await write(sql, "account-1") for _ in range(3)] == [0, 1, 2]
    assert await write(sql, "account-2") == 0


async def test_readers_return_message_rows_with_json_as_text(sql: Any) -> None:
    message_id = str(uuid.uuid4())
    await sql.execute(
        "SELECT write_message($1, 'account-1', 'Opened', '{\"a\": 1}', '{\"m\": true}')",
        message_id,
    )
    [row] = await sql.fetch("SELECT * FROM get_stream_messages('account-1')")
    assert list(row.keys()) == [
        "id", "stream_name", "type", "position", "global_position", "data", "metadata", "time",
    ]  # fmt: skip
    assert row["id"] == message_id
    assert (row["stream_name"], row["type"], row["position"]) == ("account-1", "Opened", 0)
    assert json.loads(row["data"]) == {"a": 1}
    assert json.loads(row["metadata"]) == {"m": True}
    assert await sql.fetchval(
        "SELECT pg_typeof(data)::text FROM get_stream_messages('account-1')"
    ) == ("character varying")


async def test_readers_accept_message_db_named_arguments(sql: Any) -> None:
    for _ in range(4):
        await write(sql, "account-1", "A")
    await write(sql, "account-1", "B")
    rows = await sql.fetch("SELECT position FROM get_stream_messages('account-1', batch_size => 2)")
    assert [r[0] for r in rows] == [0, 1]
    rows = await sql.fetch(
        'SELECT position FROM get_stream_messages(stream_name => $1, "position" => 3)', "account-1"
    )
    assert [r[0] for r in rows] == [3, 4]
    rows = await sql.fetch("SELECT position FROM get_stream_messages('account-1', 0, -1)")
    assert len(rows) == 5
    last = await sql.fetchrow("SELECT * FROM get_last_stream_message('account-1')")
    assert last["position"] == 4
    last = await sql.fetchrow(
        "SELECT * FROM get_last_stream_message(stream_name => 'account-1', \"type\" => 'A')"
    )
    assert last["position"] == 3
    rows = await sql.fetch(
        "SELECT global_position FROM get_category_messages(category => 'account', batch_size => 2)"
    )
    assert [r[0] for r in rows] == [1, 2]


async def test_stream_version_is_null_for_a_missing_stream(sql: Any) -> None:
    await write(sql, "account-1")
    await write(sql, "account-1")
    assert await sql.fetchval("SELECT stream_version('account-1')") == 1
    assert await sql.fetchval("SELECT stream_version('account-2')") is None


async def test_message_store_version_and_name_functions(sql: Any) -> None:
    assert await sql.fetchval("SELECT message_store_version()") == "1.3.0"
    row = await sql.fetchrow(
        "SELECT category('account-123+retry'), id('account-123+retry'),"
        " cardinal_id('account-123+retry'), is_category('account'), is_category('account-1'),"
        " id('account'), cardinal_id('account'), category('-x'), id('account-')"
    )
    assert tuple(row) == ("account", "123+retry", "123", True, False, None, None, "", "")
    for value in ["123", "1", "", "account-123", "ünï"]:
        assert await sql.fetchval("SELECT hash_64($1)", value) == hash_64(value)


async def test_version_conflict_raises_the_message_db_text(sql: Any) -> None:
    await write(sql, "account-1")
    await write(sql, "account-1")
    with pytest.raises(asyncpg.RaiseError) as conflict:
        await write(sql, "account-1", expected_version=0)
    assert str(conflict.value) == "Wrong expected version: 0 (Stream: account-1, Stream Version: 1)"
    assert conflict.value.sqlstate == "P0001"
    with pytest.raises(asyncpg.RaiseError, match=r"Wrong expected version: 0 \(Stream: new-1, "
                       r"Stream Version: -1\)"):  # fmt: skip
        await write(sql, "new-1", expected_version=0)
    assert await write(sql, "account-1", expected_version=1) == 2
    assert await write(sql, "new-1", expected_version=-1) == 0


async def test_a_malformed_id_is_postgres_own_uuid_error(sql: Any) -> None:
    with pytest.raises(asyncpg.InvalidTextRepresentationError, match="uuid"):
        await sql.execute("SELECT write_message('not-a-uuid', 'account-1', 'T', '{}')")
    # Checked before the expected version, as in Message DB.
    with pytest.raises(asyncpg.InvalidTextRepresentationError, match="uuid"):
        await sql.execute("SELECT write_message('not-a-uuid', 'account-1', 'T', '{}', NULL, 7)")


async def test_a_null_stream_name_reads_nothing_like_message_db(sql: Any) -> None:
    assert await sql.fetch("SELECT * FROM get_stream_messages(NULL)") == []


async def test_consumer_group_reads_partition_by_cardinal_id(sql: Any) -> None:
    for stream in ["test-1", "test-2", "test-3", "test-4", "test-1+retry", "test"]:
        await write(sql, stream)

    async def member(m: int, n: int) -> list[str]:
        rows = await sql.fetch(
            "SELECT stream_name FROM get_category_messages('test',"
            " consumer_group_member => $1, consumer_group_size => $2)",
            m,
            n,
        )
        return [r[0] for r in rows]

    # Vectors of the hash rule: size 2 → test-1, test-3 on 0; size 4 → test-1, test-3 on 2.
    assert await member(0, 2) == ["test-1", "test-3", "test-1+retry"]
    assert await member(1, 2) == ["test-2", "test-4"]
    assert await member(2, 4) == ["test-1", "test-3", "test-1+retry"]
    assert await member(3, 4) == ["test-4"]


async def test_correlation_selects_by_the_correlation_streams_category(sql: Any) -> None:
    await write(sql, "order-1", metadata='{"correlationStreamName": "basket-9"}')
    await write(sql, "order-2", metadata='{"correlationStreamName": "other-9"}')
    await write(sql, "order-3")
    rows = await sql.fetch(
        "SELECT stream_name FROM get_category_messages('order', correlation => 'basket')"
    )
    assert [r[0] for r in rows] == ["order-1"]


@pytest.mark.parametrize(
    ("call", "text"),
    [
        ("get_stream_messages('account')", "Must be a stream name: account"),
        ("get_category_messages('account-1')", "Must be a category: account-1"),
        (
            "get_category_messages('account', correlation => 'x-1')",
            "Correlation must be a category (Correlation: x-1)",
        ),
        (
            "get_category_messages('account', consumer_group_member => 0)",
            "Consumer group member and size must be specified"
            " (Consumer Group Member: 0, Consumer Group Size: <NULL>)",
        ),
        (
            "get_category_messages('account', consumer_group_size => 2)",
            "Consumer group member and size must be specified"
            " (Consumer Group Member: <NULL>, Consumer Group Size: 2)",
        ),
        (
            "get_category_messages('account', 1, 10, NULL, 0, 0)",
            "Consumer group size must not be less than 1"
            " (Consumer Group Member: 0, Consumer Group Size: 0)",
        ),
        (
            "get_category_messages('account', 1, 10, NULL, -1, 2)",
            "Consumer group member must not be less than 0"
            " (Consumer Group Member: -1, Consumer Group Size: 2)",
        ),
        (
            "get_category_messages('account', 1, 10, NULL, 2, 2)",
            "Consumer group member must be less than the group size"
            " (Consumer Group Member: 2, Consumer Group Size: 2)",
        ),
        (
            "get_stream_messages('account-1', condition => 'true')",
            "Retrieval with SQL condition is not activated",
        ),
        (
            "get_category_messages('account', condition => 'true')",
            "Retrieval with SQL condition is not activated",
        ),
    ],
)
async def test_invalid_reads_raise_message_db_texts(sql: Any, call: str, text: str) -> None:
    with pytest.raises(asyncpg.RaiseError) as error:
        await sql.fetch(f"SELECT * FROM {call}")
    assert str(error.value) == text


async def test_condition_works_once_activated(sql: Any) -> None:
    await write(sql, "account-1", "A")
    await write(sql, "account-1", "B")
    await sql.execute("SET message_store.sql_condition = off")
    with pytest.raises(asyncpg.RaiseError, match="not activated"):
        await sql.fetch("SELECT * FROM get_stream_messages('account-1', condition => 'true')")
    await sql.execute("SET message_store.sql_condition = on")
    rows = await sql.fetch(
        "SELECT type FROM get_stream_messages('account-1', condition => 'type = ''B''')"
    )
    assert [r[0] for r in rows] == ["B"]
    rows = await sql.fetch(
        "SELECT type FROM get_category_messages('account', condition => 'position = 0')"
    )
    assert [r[0] for r in rows] == ["A"]


async def test_reporting_views(sql: Any) -> None:
    for stream, type_ in [("a-1", "X"), ("a-1", "Y"), ("a-2", "X"), ("b-1", "X")]:
        await write(sql, stream, type_)
    rows = await sql.fetch("SELECT stream_name, message_count, percent::text FROM stream_summary")
    assert [tuple(r) for r in rows] == [
        ("a-1", 2, "50.00"),
        ("a-2", 1, "25.00"),
        ("b-1", 1, "25.00"),
    ]
    rows = await sql.fetch("SELECT type, message_count, percent::text FROM type_summary")
    assert [tuple(r) for r in rows] == [("X", 3, "75.00"), ("Y", 1, "25.00")]
    rows = await sql.fetch("SELECT * FROM stream_type_summary")
    assert [tuple(r)[:3] for r in rows] == [
        ("a-1", "X", 1),
        ("a-1", "Y", 1),
        ("a-2", "X", 1),
        ("b-1", "X", 1),
    ]
    rows = await sql.fetch("SELECT * FROM type_stream_summary")
    assert [tuple(r)[:3] for r in rows] == [
        ("X", "a-1", 1),
        ("X", "a-2", 1),
        ("X", "b-1", 1),
        ("Y", "a-1", 1),
    ]
    rows = await sql.fetch("SELECT category, type, message_count FROM category_type_summary")
    assert [tuple(r) for r in rows] == [("a", "X", 2), ("a", "Y", 1), ("b", "X", 1)]
    rows = await sql.fetch("SELECT type, category, message_count FROM type_category_summary")
    assert [tuple(r) for r in rows] == [("X", "a", 2), ("X", "b", 1), ("Y", "a", 1)]


async def test_messages_table_has_message_db_column_order(sql: Any) -> None:
    await write(sql, "account-1")
    row = await sql.fetchrow("SELECT * FROM messages")
    assert list(row.keys()) == [
        "global_position", "position", "time", "stream_name", "type", "data", "metadata", "id",
        "wire_json", "cardinal_id_hash",  # the server's fast paths, after Message DB's columns
    ]  # fmt: skip


async def test_functions_work_whatever_the_callers_search_path(sql: Any, postgres_dsn: str) -> None:
    await write(sql, "account-1")
    conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": "public"})
    try:
        q = f'"{SCHEMA}"'
        await conn.execute(
            f"SELECT {q}.write_message($1, 'account-1', 'T', '{{}}')", str(uuid.uuid4())
        )
        assert await conn.fetchval(f"SELECT {q}.stream_version('account-1')") == 1
        rows = await conn.fetch(f"SELECT * FROM {q}.get_category_messages('account')")
        assert len(rows) == 2
    finally:
        await conn.close()


async def test_sql_writes_and_server_writes_see_each_other(sql: Any, store: PostgresStore) -> None:
    await write(sql, "account-1", data='{"from": "sql"}')
    result = await store.write_message(NAMESPACE, "account-1", "T", {"from": "server"})
    assert (result.position, result.global_position) == (1, 2)
    await write(sql, "account-1", expected_version=1)
    read = await store.get_stream_messages(NAMESPACE, "account-1")
    assert [m.data.get("from") for m in read] == ["sql", "server", None]
    rows = await sql.fetch("SELECT data FROM get_stream_messages('account-1')")
    assert [json.loads(r[0]).get("from") for r in rows] == ["sql", "server", None]


async def test_messages_of_infinite_times_written_by_sql_are_read_with_that_time(
    sql: Any, store: PostgresStore
) -> None:
    # Postgres accepts them in a timestamp column; the server once left such a message out of
    # every read (its JSON text was NULL). It shows Postgres's own spelling instead.
    for position, time in enumerate(("-infinity", "infinity")):
        await sql.execute(
            "INSERT INTO messages (id, stream_name, type, position, data, time)"
            " VALUES (gen_random_uuid(), 'edge-1', 'T', $1, '{}', $2::text::timestamp)",
            position,
            time,
        )
    body = await store.read_stream_json(NAMESPACE, "edge-1")
    assert [m[6] for m in json.loads(body)] == ["-infinity", "infinity"]
    category = json.loads(await store.read_category_json(NAMESPACE, "edge"))
    assert [m[7] for m in category] == ["-infinity", "infinity"]
    assert json.loads(await store.read_last_json(NAMESPACE, "edge-1"))[6] == "infinity"


async def test_server_writes_wait_for_a_sql_client_holding_the_category_lock(
    sql: Any, store: PostgresStore
) -> None:
    tx = sql.transaction()
    await tx.start()
    key = await sql.fetchval("SELECT acquire_lock('account-1')")
    assert key == hash_64("account")
    pending = asyncio.create_task(store.write_message(NAMESPACE, "account-2", "T", {}))
    await asyncio.sleep(0.3)
    assert not pending.done()  # same category → same advisory lock
    other = await store.write_message(NAMESPACE, "ledger-1", "T", {})  # other category: free
    assert other.position == 0
    await tx.commit()
    assert (await asyncio.wait_for(pending, 10)).position == 0


async def test_an_empty_or_null_category_reads_the_whole_namespace(sql: Any) -> None:
    # Upstream EventoDB's migration 002 rule, kept alongside Message DB's validation.
    for stream in ["a-1", "b-1", "c"]:
        await write(sql, stream)
    for category in ("''", "NULL"):
        rows = await sql.fetch(f"SELECT stream_name FROM get_category_messages({category})")
        assert [r[0] for r in rows] == ["a-1", "b-1", "c"]
