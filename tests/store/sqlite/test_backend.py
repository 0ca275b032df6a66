"""SQLite-only behaviour: files, memory isolation, migrations, crashes and other processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from eventodb.core import tokens, validation
from eventodb.core.errors import BackendError, PositionExists
from eventodb.store import migrations
from eventodb.store.base import ImportGroup, ImportStopped, Message, NewMessage
from eventodb.store.sqlite import SQLiteStore
from eventodb.store.sqlite.files import db_file_name
from eventodb.store.sqlite.store import INLINE_MAX_BYTES, _insert
from eventodb.store.sqlite.worker import WriterConnection
from tests.store.storage_access import migrations_up_to

SHIPPED = migrations.load("sqlite", "namespace")
OURS_AFTER_UPSTREAM = len([m for m in SHIPPED if m.version > 2])
"""Our namespace migrations on top of upstream EventoDB's 001 and 002."""


def _hash(namespace: str) -> str:
    return tokens.hash_token(tokens.generate(namespace))


def _registry_paths(data: Path) -> dict[str, str]:
    with sqlite3.connect(data / "metadata.db") as conn:
        return dict(conn.execute("SELECT id, db_path FROM namespaces").fetchall())


# -- file names --------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["default", "Test.NS", "t_3_lx2k9_ab12", "test-foo-1"])
def test_ordinary_ids_keep_the_upstream_file_name(namespace: str) -> None:
    assert db_file_name(namespace, set()) == f"{namespace}.db"


@pytest.mark.parametrize("namespace", ["with space", "ünï", "a?b", ".hidden", "-x'y"])
def test_other_ids_get_a_hashed_file_name_without_path_characters(namespace: str) -> None:
    name = db_file_name(namespace, set())
    assert name.startswith("ns-")
    assert name.endswith(".db")
    assert os.sep not in name
    assert all(c.isalnum() or c in "-_." for c in name)


def test_ids_that_would_clash_ignoring_case_get_distinct_files() -> None:
    assert db_file_name("Tenant", {"tenant.db"}) != "Tenant.db"
    assert db_file_name("metadata", set()) != "metadata.db"
    assert db_file_name("a b", set()) != db_file_name("a_b", set())
    assert db_file_name("a b", set()) != db_file_name("a?b", set())


async def test_an_id_spelling_another_ids_file_name_gets_a_file_of_its_own(tmp_path: Path) -> None:
    hashed = db_file_name("a b", set())
    async with SQLiteStore(tmp_path / "data") as store:
        await store.create_namespace(hashed.removesuffix(".db"), "h1")  # takes that very name
        await store.create_namespace("a b", "h2")
        await store.write_message(hashed.removesuffix(".db"), "s-1", "T", {"n": 1})
        await store.write_message("a b", "s-1", "T", {"n": 2})
        first = await store.get_stream_messages(hashed.removesuffix(".db"), "s-1")
        second = await store.get_stream_messages("a b", "s-1")
    assert [m.data for m in first] == [{"n": 1}]
    assert [m.data for m in second] == [{"n": 2}]


async def test_namespace_files_live_inside_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with SQLiteStore(data) as store:
        for namespace in ("plain", "Plain", "metadata", "with space"):
            await store.create_namespace(namespace, _hash(namespace))
            await store.write_message(namespace, "s-1", "T", {"ns": namespace})
        paths = _registry_paths(data)
        assert paths["plain"] == "plain.db"
        assert len({p.lower() for p in paths.values()}) == 4
        for namespace in paths:
            [msg] = await store.get_stream_messages(namespace, "s-1")
            assert msg.data == {"ns": namespace}
    files = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.rglob("*.db")))
    assert files == sorted(["metadata.db", *paths.values()])


async def test_deleting_removes_the_database_and_its_side_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with SQLiteStore(data) as store:
        await store.create_namespace("gone", _hash("gone"))
        await store.write_message("gone", "s-1", "T", {})
        assert (data / "gone.db").exists()
        await store.delete_namespace("gone")
        assert not list(data.glob("gone.db*"))


async def test_stale_files_of_an_unregistered_namespace_are_not_resurrected(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with SQLiteStore(data) as store:
        await store.create_namespace("x", _hash("x"))
        await store.write_message("x", "s-1", "T", {})
    with sqlite3.connect(data / "metadata.db") as conn:
        conn.execute("DELETE FROM namespaces")
    async with SQLiteStore(data) as store:
        await store.create_namespace("x", _hash("x"))
        assert await store.get_stream_messages("x", "s-1") == []


# -- memory mode -------------------------------------------------------------------------------


async def test_two_memory_stores_do_not_share_data() -> None:
    async with SQLiteStore(None) as first, SQLiteStore(None) as second:
        await first.create_namespace("default", _hash("default"))
        await second.create_namespace("default", _hash("default"))
        await first.write_message("default", "s-1", "T", {"in": 1})
        assert await second.get_stream_messages("default", "s-1") == []
        assert first.backend == "memory"


# -- persistence and durability ----------------------------------------------------------------


async def test_data_survives_reopening(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with SQLiteStore(data) as store:
        await store.create_namespace("keep", _hash("keep"))
        await store.write_message("keep", "s-1", "T", {"v": 1}, {"m": 2})
    async with SQLiteStore(data) as store:
        [msg] = await store.get_stream_messages("keep", "s-1")
        assert (msg.data, msg.metadata) == ({"v": 1}, {"m": 2})
        assert (await store.write_message("keep", "s-1", "T", {})).global_position == 2


def test_databases_use_wal_journaling(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def create() -> None:
        async with SQLiteStore(data) as store:
            await store.create_namespace("w", _hash("w"))

    asyncio.run(create())
    with sqlite3.connect(data / "w.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from eventodb.store.sqlite import SQLiteStore

    async def main(data, stream, count, sync):
        async with SQLiteStore(data, synchronous=sync) as store:
            for i in range(count):
                r = await store.write_message("shared", stream, "T", {"i": i})
                print(r.position, r.global_position, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    """
)


def _spawn_writer(
    data: Path, stream: str, count: int, sync: str = "NORMAL"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(data), stream, str(count), sync],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _prepare_shared(data: Path) -> None:
    async with SQLiteStore(data) as store:
        await store.create_namespace("shared", _hash("shared"))


@pytest.mark.timeout(120)
async def test_acknowledged_writes_survive_a_killed_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _prepare_shared(data)
    proc = _spawn_writer(data, "s-1", 100_000)
    assert proc.stdout is not None
    acknowledged = []
    for line in proc.stdout:
        acknowledged.append(tuple(int(x) for x in line.split()))
        if len(acknowledged) >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    async with SQLiteStore(data) as store:
        stored = await store.get_stream_messages("shared", "s-1", batch_size=-1)
    positions = {(m.position, m.global_position) for m in stored}
    assert set(acknowledged) <= positions
    assert [m.position for m in stored] == list(range(len(stored)))


@pytest.mark.timeout(120)
async def test_a_second_process_cannot_open_a_data_directory_in_use(tmp_path: Path) -> None:
    """Two writers on one directory lose acknowledged writes (one writes to a file the other
    deleted and re-created), so the directory belongs to one store at a time."""
    data = tmp_path / "data"
    await _prepare_shared(data)
    async with SQLiteStore(data) as store:
        proc = _spawn_writer(data, "s-1", 1)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode != 0
        assert (
            f"data directory {data} is in use by another EventoDB server (pid {os.getpid()})" in err
        )
        with pytest.raises(BackendError, match=f"pid {os.getpid()}"):
            await SQLiteStore(data).open()  # in this process too
        assert await store.get_stream_messages("shared", "s-1") == []
    proc = _spawn_writer(data, "s-1", 1)  # free again once the first one closed
    out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["0", "1"]


async def test_database_work_runs_off_the_event_loop(tmp_path: Path) -> None:
    """Big writes and a long read do their SQLite work on the store's threads.

    Measured as the event loop thread's share of the process's CPU time while the work runs:
    CPU time does not count the time the machine gives to others, so the figure does not move
    with the load of a shared machine, where a wall-clock stall limit failed now and then.
    Here the loop's share stays near 0.2 for the writes (it encodes their JSON) and under 0.05
    for the read; with the writes or the read on the loop it is 1.
    """
    async with SQLiteStore(tmp_path / "data") as store:
        await store.create_namespace("busy", _hash("busy"))
        big = {"blob": "x" * 200_000}  # far over INLINE_MAX_BYTES: each write goes to the thread

        async def loop_share(work: Awaitable[object]) -> float:
            loop_cpu, process_cpu = time.thread_time(), time.process_time()
            await work
            return (time.thread_time() - loop_cpu) / (time.process_time() - process_cpu)

        async def writes() -> None:
            for wave in range(8):  # waves small enough to be committed on the loop if allowed
                await asyncio.gather(
                    *(store.write_message("busy", f"s-{wave}{i}", "T", big) for i in range(25))
                )

        assert await loop_share(writes()) < 0.35
        # 40 MB of messages: past the inline budget within its first milliseconds.
        assert await loop_share(store.read_category_json("busy", "s", batch_size=-1)) < 0.35


# -- migrations --------------------------------------------------------------------------------


async def test_migrations_are_recorded_by_file_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with SQLiteStore(data) as store:
        await store.create_namespace("m", _hash("m"))
    with sqlite3.connect(data / "m.db") as conn:
        names = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert names == [m.name for m in SHIPPED]
    with sqlite3.connect(data / "metadata.db") as conn:
        registry = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert registry == ["001_namespace_registry.sql"]


async def test_an_upstream_database_with_second_timestamps_is_converted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    upstream_root = migrations_up_to(tmp_path, "sqlite", 2)
    async with SQLiteStore(data, migrations_root=upstream_root) as store:
        await store.create_namespace("old", _hash("old"))
    with sqlite3.connect(data / "old.db") as conn:
        conn.execute(
            "INSERT INTO messages (id, stream_name, type, position, data, metadata, time)"
            " VALUES ('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 's-1', 'T', 0, '{}', NULL, ?)",
            (1_736_935_200,),
        )
    async with SQLiteStore(data) as store:
        assert store.migrations_applied == OURS_AFTER_UPSTREAM
        [msg] = await store.get_stream_messages("old", "s-1")
    assert msg.time.isoformat() == "2025-01-15T10:00:00+00:00"


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}


@pytest.mark.parametrize(("file_mode", "dir_mode"), [(0o600, 0o700), (0o640, 0o750)])
async def test_files_and_directory_are_created_private_unless_relaxed(
    tmp_path: Path, file_mode: int, dir_mode: int
) -> None:
    data = tmp_path / "data"
    async with SQLiteStore(data, file_mode=file_mode) as store:
        await store.create_namespace("tenant", "h")
        await store.write_message("tenant", "s-1", "T", {})
        modes = _modes(data)
    assert data.stat().st_mode & 0o777 == dir_mode
    assert {"metadata.db", "tenant.db", "tenant.db-wal", "tenant.db-shm"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if name != "eventodb.lock"} == {
        name: file_mode for name in modes if name != "eventodb.lock"
    }


async def test_an_existing_directory_keeps_its_permissions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    async with SQLiteStore(data):
        pass
    assert data.stat().st_mode & 0o777 == 0o755
    assert (data / "metadata.db").stat().st_mode & 0o777 == 0o600


def import_group(*gpos: int) -> ImportGroup:
    """Messages ``imp-<g>`` at global positions ``gpos``, as an import's group."""
    when = datetime(2025, 1, 15, tzinfo=UTC)
    messages = [
        Message(f"00000000-0000-4000-8000-{g:012d}", f"imp-{g}", "T", 0, g, {}, None, when)
        for g in gpos
    ]
    return ImportGroup(messages, [validation.encode_payload({}, None)] * len(messages))


@contextlib.asynccontextmanager
async def store_with_namespace(data: Path) -> AsyncIterator[SQLiteStore]:
    """An open store on ``data`` with namespace "ns"."""
    store = SQLiteStore(data)
    await store.open()
    try:
        await store.create_namespace("ns", tokens.hash_token(tokens.TEST_TOKEN), "")
        yield store
    finally:
        await store.close()


async def hold_writer(store: SQLiteStore) -> tuple[asyncio.Future[Any], int]:
    """Keep the writer thread of "ns" busy for 0.3 s, so that the jobs submitted meanwhile
    queue up behind it and run in one transaction. Returns the hold and the commits so far."""
    handle = await store._handle("ns")
    hold = asyncio.ensure_future(handle.write(lambda c: time.sleep(0.3), "hold"))
    await asyncio.sleep(0.05)
    return hold, store.stats.write_batches.cumulative()[-1][1]


def commits_since(store: SQLiteStore, commits: int) -> int:
    return store.stats.write_batches.cumulative()[-1][1] - commits


async def test_an_import_sharing_a_transaction_with_a_write_rolls_back_only_its_colliding_group(
    tmp_path: Path,
) -> None:
    """The writer thread commits the jobs waiting for it together: an import whose second
    group collides keeps its first group, and the write committed beside it stays."""
    async with store_with_namespace(tmp_path) as store:
        hold, commits = await hold_writer(store)
        write = asyncio.ensure_future(store.write_message("ns", "live-1", "T", {}))
        groups = [import_group(10, 11), import_group(12, 10)]
        imported = asyncio.ensure_future(store.import_groups("ns", groups))
        await hold
        with pytest.raises(ImportStopped) as info:
            await imported
        await write
        assert info.value.committed == 1
        assert isinstance(info.value.error, PositionExists)
        assert info.value.error.index == 1
        # The hold, then the write and the import together.
        assert commits_since(store, commits) == 2
        stored = await store.get_category_messages("ns", "")
        assert sorted(m.stream_name for m in stored) == ["imp-10", "imp-11", "live-1"]


# -- global positions ----------------------------------------------------------------------------

BIG = {"pad": "x" * INLINE_MAX_BYTES}
"""Data too big for the event loop's fast path: its write goes to the writer thread."""


async def test_a_write_after_an_import_in_the_same_transaction_takes_the_next_position(
    tmp_path: Path,
) -> None:
    """A write knows the next global position from the write before it in the transaction,
    unless another job changed the database in between: here an import, committed together."""
    async with store_with_namespace(tmp_path) as store:
        hold, commits = await hold_writer(store)
        # Writes on the thread (BIG) queue for it in call order.
        first = asyncio.ensure_future(store.write_message("ns", "live-1", "T", BIG))
        imports = asyncio.ensure_future(store.import_groups("ns", [import_group(2, 3)]))
        second = asyncio.ensure_future(store.write_message("ns", "live-2", "T", BIG))
        await hold
        await imports
        assert [(await first).global_position, (await second).global_position] == [1, 4]
        # The hold, then the two writes and the import in one transaction.
        assert commits_since(store, commits) == 2


@pytest.mark.parametrize("data", [{}, BIG], ids=["on the loop", "on the thread"])
async def test_a_write_after_another_program_wrote_takes_a_position_after_its(
    tmp_path: Path, data: dict[str, str]
) -> None:
    """Between two of the server's transactions another program may write to the file (it
    then holds the write lock itself): the next write reads the next position again."""
    async with store_with_namespace(tmp_path) as store:
        assert (await store.write_message("ns", "ours-1", "T", data)).global_position == 1
        with sqlite3.connect(tmp_path / _registry_paths(tmp_path)["ns"]) as other:
            other.execute(
                "INSERT INTO messages (id, stream_name, type, position, global_position, data,"
                " time) VALUES ('00000000-0000-4000-8000-000000000050', 'theirs-1', 'T', 0, 50,"
                " '{}', 0)"
            )
        assert (await store.write_message("ns", "ours-2", "T", data)).global_position == 51
        positions = [m.global_position for m in await store.get_category_messages("ns", "")]
        assert positions == [1, 50, 51]


NEW = NewMessage("gone-1", "T", {}, None, "{}", None, None, None)


def write_then_fail(c: WriterConnection) -> None:
    """A job that writes a message (at global position 1) and then fails."""
    assert _insert(c, NEW).global_position == 1
    raise RuntimeError("the job fails after its insert")


@pytest.mark.parametrize("data", [{}, BIG], ids=["on the loop", "on the thread"])
async def test_a_rolled_back_write_leaves_no_gap(tmp_path: Path, data: dict[str, str]) -> None:
    """A write whose transaction rolled back gave its global position back, as AUTOINCREMENT
    does: the next transaction's write takes it."""
    async with store_with_namespace(tmp_path) as store:
        handle = await store._handle("ns")
        with pytest.raises(RuntimeError):
            await handle.write(write_then_fail, "write and fail")
        assert (await store.write_message("ns", "kept-1", "T", data)).global_position == 1
        assert [m.stream_name for m in await store.get_category_messages("ns", "")] == ["kept-1"]


async def test_a_write_after_a_rolled_back_job_of_its_transaction_leaves_no_gap(
    tmp_path: Path,
) -> None:
    """A job of a shared transaction that fails after writing a message is undone alone (its
    savepoint): the next write of the transaction takes the position it gave back."""
    async with store_with_namespace(tmp_path) as store:
        handle = await store._handle("ns")
        hold, commits = await hold_writer(store)
        failing = asyncio.ensure_future(handle.write(write_then_fail, "write and fail"))
        write = asyncio.ensure_future(store.write_message("ns", "kept-1", "T", BIG))
        await hold
        with pytest.raises(RuntimeError):
            await failing
        assert (await write).global_position == 1
        assert commits_since(store, commits) == 2  # the hold, then both jobs together
        assert [m.stream_name for m in await store.get_category_messages("ns", "")] == ["kept-1"]
