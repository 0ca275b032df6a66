"""Upgrading existing SQLite namespaces to the fast paths (namespace migrations 004 and 005).

Consumer-group membership must stay what ``eventodb.core.hashing`` (bit-exact with Message DB's
``hash_64(cardinal_id(...))``) gives, before and after the upgrade, for rows with and without the
stored hash; the fill of older rows reports progress, resumes after an interruption, and changes
no read.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventodb.core import timefmt, tokens, validation
from eventodb.core.hashing import cardinal_hash
from eventodb.store import migrations
from eventodb.store.base import Message
from eventodb.store.sqlite import SQLiteStore, migrate, statements
from tests.store.fast_paths import (
    CATEGORY,
    GO_STREAMS,
    GROUP_SIZES,
    PAYLOADS,
    Interrupted,
    all_reads,
    expected_members,
    go_sqlite_data_dir,
    store_members,
    stream_ids,
    stream_name,
)
from tests.store.storage_access import RawMessages, migrations_up_to
from tests.support.server import Server

T0 = 1_736_935_200_000_000
"""2025-01-15T10:00:00Z in Unix microseconds."""


@pytest.fixture(scope="module")
def at_003(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrations_up_to(tmp_path_factory.mktemp("migrations"), "sqlite", 3)


async def namespace_at(data: Path, migrations_root: Path) -> sqlite3.Connection:
    """Namespace ``cg`` created with the given migrations; a connection to its database."""
    async with SQLiteStore(data, migrations_root=migrations_root) as store:
        await store.create_namespace("cg", "hash-cg")
    return sqlite3.connect(data / "cg.db", isolation_level=None)


def insert(conn: sqlite3.Connection, stream: str, time: int, data: str = "{}") -> int:
    """A row as another program writes it (no fast-path columns); its global position."""
    position = conn.execute(
        "SELECT coalesce(max(position) + 1, 0) FROM messages WHERE stream_name = ?", (stream,)
    ).fetchone()[0]
    cursor = conn.execute(
        "INSERT INTO messages (id, stream_name, type, position, data, metadata, time)"
        " VALUES (?, ?, 'T', ?, ?, NULL, ?)",
        (str(uuid.uuid4()), stream, position, data, time),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def stored_hashes(conn: sqlite3.Connection) -> dict[str, int | None]:
    return dict(conn.execute("SELECT stream_name, cardinal_id_hash FROM messages").fetchall())


async def assert_same_membership(store: SQLiteStore, streams: dict[int, str]) -> None:
    for size in GROUP_SIZES:
        assert await store_members(store, "cg", CATEGORY, size) == expected_members(
            streams, size
        ), f"size {size}"


examples = itertools.count()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ids=st.lists(stream_ids, min_size=1, max_size=40))
async def test_membership_is_unchanged_by_the_upgrade(
    tmp_path: Path, at_003: Path, ids: list[str | None]
) -> None:
    data = tmp_path / f"data{next(examples)}"
    conn = await namespace_at(data, at_003)
    streams: dict[int, str] = {}
    with conn:
        for stream_id in ids:
            stream = stream_name(CATEGORY, stream_id)
            streams[insert(conn, stream, T0)] = stream
        insert(conn, "other-1", T0)  # another category: in no member's share
    async with SQLiteStore(data) as store:  # 004, fill, 005
        with sqlite3.connect(data / "cg.db") as check:
            hashes = stored_hashes(check)
        assert hashes == {stream: cardinal_hash(stream) for stream in hashes}
        await assert_same_membership(store, streams)
        for stream in list(streams.values())[:10]:
            result = await store.write_message("cg", stream, "T", {})
            streams[result.global_position] = stream
        await assert_same_membership(store, streams)
        async with RawMessages(store, "cg") as raw:
            assert await raw.forget_fast_paths() == len(streams) + 1
        await assert_same_membership(store, streams)


async def test_membership_of_a_namespace_left_by_the_go_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    conn = go_sqlite_data_dir(data, "cg")
    streams: dict[int, str] = {}
    with conn:
        for stream in GO_STREAMS * 2:
            global_position = insert(conn, stream, 1_736_935_200)  # the Go server: seconds
            if stream.startswith(f"{CATEGORY}-") or stream == CATEGORY:
                streams[global_position] = stream
    conn.close()
    async with SQLiteStore(data) as store:
        assert store.migrations_applied == 3  # 003, 004 and 005
        await assert_same_membership(store, streams)
        async with RawMessages(store, "cg") as raw:
            await raw.forget_fast_paths()
        await assert_same_membership(store, streams)
        [first, *_] = await store.get_stream_messages("cg", "cg-1")
        assert timefmt.format_time(first.time) == "2025-01-15T10:00:00Z"


# -- the fill of older rows ---------------------------------------------------------------------


@pytest.fixture
def small_fill_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(migrations, "FILL_BATCH", 4)
    return 4


TIMES = [T0, T0 + 120_000, -1, -1_500_000, 0, -86_400_000_000 * 365 * 60 + 7]
"""Times with and without fractions, and before 1970."""


def schema_version(data: Path) -> int:
    with sqlite3.connect(data / "cg.db") as conn:
        version: int = conn.execute("SELECT max(version) FROM _schema_version").fetchone()[0]
    return version


async def test_an_interrupted_fill_resumes_and_changes_no_read(
    tmp_path: Path, at_003: Path, small_fill_batches: int
) -> None:
    data = tmp_path / "data"
    conn = await namespace_at(data, at_003)
    streams = [stream_name(CATEGORY, str(i % 7)) for i in range(7)]
    with conn:
        for i in range(25):
            insert(conn, streams[i % 7], TIMES[i % len(TIMES)], PAYLOADS[i % len(PAYLOADS)])
    conn.close()
    at_004 = migrations_up_to(tmp_path, "sqlite", 4)

    # At 004 the columns exist but nothing is filled yet: reads render every row.
    async with SQLiteStore(data, migrations_root=at_004) as store:
        before = await all_reads(store, streams)
        async with RawMessages(store, "cg") as raw:
            assert await raw.unfilled() == 25

    progress: list[tuple[int, int]] = []

    def interrupt(done: int, total: int) -> None:
        progress.append((done, total))
        if len(progress) == 2:
            raise Interrupted

    conn = sqlite3.connect(data / "cg.db", isolation_level=None)
    conn.create_function("eventodb_cardinal_hash", 1, cardinal_hash, deterministic=True)
    with pytest.raises(Interrupted):
        migrate.fill_fast_paths(conn, interrupt)
    conn.close()
    assert progress == [(4, 25), (8, 25)]
    assert schema_version(data) == 4

    async with SQLiteStore(data, migrations_root=at_004) as store:
        async with RawMessages(store, "cg") as raw:
            assert await raw.unfilled() == 17
        assert await all_reads(store, streams) == before  # half filled, same reads

    seen: list[tuple[str, int, int]] = []

    def record(namespace: str, done: int, total: int) -> None:
        seen.append((namespace, done, total))

    async with SQLiteStore(data, on_progress=record) as store:
        assert store.migrations_applied == 1  # 005
        assert seen == [("cg", done, 17) for done in (4, 8, 12, 16, 17)]
        async with RawMessages(store, "cg") as raw:
            assert await raw.unfilled() == 0
        assert await all_reads(store, streams) == before
    assert schema_version(data) == 5


async def test_the_server_migrates_older_messages_at_start_up_and_says_so(
    tmp_path: Path, at_003: Path
) -> None:
    """The real server, started on a data directory whose namespace predates the fast paths,
    fills its older messages before serving (a progress line when its output is not a
    terminal) and then reads them as the new paths render them."""
    data = tmp_path / "data"
    conn = await namespace_at(data, at_003)
    for i in range(250):
        insert(conn, f"{CATEGORY}-{i % 25}", T0 + i, f'{{"i": {i}}}')
    conn.close()
    token = f"ns_Y2c_{'0' * 64}"
    with sqlite3.connect(data / "metadata.db") as registry:
        registry.execute(
            "UPDATE namespaces SET token_hash = ? WHERE id = 'cg'",
            (tokens.hash_token(token),),
        )
    server = Server(["--data-dir", str(data)], workdir=tmp_path)
    try:
        assert "namespace 'cg': 250 older messages migrated" in server.output()
        body = server.ok(token, "category.get", CATEGORY, {"batchSize": 300})
        assert [m[5] for m in body] == [{"i": i} for i in range(250)]
        assert body[0][7] == "2025-01-15T10:00:00Z"
        assert body[1][7] == "2025-01-15T10:00:00.000001Z"
    finally:
        server.stop()
    with sqlite3.connect(data / "cg.db") as check:
        unfilled = check.execute("SELECT count(*) FROM messages WHERE wire_json IS NULL")
        assert unfilled.fetchone()[0] == 0


async def test_an_imported_batch_stores_what_the_sql_rendering_gives(tmp_path: Path) -> None:
    """A batch of imported records goes in as one JSON array unpacked by SQLite: each row's
    columns keep their text and integer types, and wire_json and cardinal_id_hash are those
    of one row inserted on its own (the rendering of namespace migration 004, the server's
    hash)."""
    times = [T0 + 123_456, -1, 0, 1_500_000, T0]  # before 1970 too
    records = [
        Message(
            str(uuid.UUID(int=i + 1)),
            name,
            "Imported ü",
            0,
            i + 1,
            orjson.loads(PAYLOADS[i % len(PAYLOADS)]),
            None if i % 2 else {"correlationStreamName": "x-1", "n": 10**30},
            timefmt.from_micros(times[i % len(times)]),
        )
        for i, name in enumerate(dict.fromkeys(GO_STREAMS))
    ]
    async with SQLiteStore(tmp_path) as store:
        await store.create_namespace("cg", "hash-cg")
        await store.import_messages("cg", records)
        assert await store.get_category_messages("cg", "", batch_size=-1) == sorted(
            records, key=lambda m: m.global_position
        )
    conn = sqlite3.connect(tmp_path / "cg.db", isolation_level=None)
    rows = conn.execute(
        f"SELECT stream_name, wire_json, {statements.RENDERED_WIRE_JSON}, cardinal_id_hash,"
        " data, metadata, typeof(position) || typeof(global_position) || typeof(time)"
        " FROM messages ORDER BY global_position"
    ).fetchall()
    assert [r[0] for r in rows] == [m.stream_name for m in records]
    for m, (stream, stored, rendered, hashed, data, metadata, types) in zip(
        records, rows, strict=True
    ):
        assert stored == rendered, stream
        assert hashed == cardinal_hash(stream), stream
        assert (data, metadata) == validation.encode_payload(m.data, m.metadata), stream
        assert types == "integerintegerinteger", stream
