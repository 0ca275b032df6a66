"""The SQLite worker threads: every job settles, also when the writer stops around it; reads
run on the event loop within a budget and on a read thread beyond it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eventodb.core.errors import BackendError
from eventodb.store.base import StoreStats
from eventodb.store.sqlite import worker
from eventodb.store.sqlite.worker import Connect, ReadPool, Writer, WriterConnection


def memory() -> WriterConnection:
    conn = sqlite3.connect(
        ":memory:", check_same_thread=False, isolation_level=None, factory=WriterConnection
    )
    conn.execute("CREATE TABLE t (x INTEGER)")
    return conn


def insert(conn: sqlite3.Connection) -> int:
    return int(conn.execute("INSERT INTO t VALUES (1)").lastrowid or 0)


@pytest.mark.parametrize(
    ("small", "first_group", "turns"), [(True, 1, 1), (False, 1, 1), (True, 3, 2)]
)
async def test_a_write_submitted_before_the_writer_stops_is_finished(
    small: bool, first_group: int, turns: int
) -> None:
    """stop() finishes what was submitted before it: queued jobs, and small writes gathered
    for a commit on the loop at the end of the turn (stop() ran before that end came, or,
    after a bigger group, while the commit waited one more turn)."""
    writer = Writer("test-writer", memory)
    calls = (writer.call(insert, small=small) for _ in range(first_group))
    assert await asyncio.gather(*calls)  # the thread and its connection are up
    call = asyncio.ensure_future(writer.call(insert, small=small))
    for _ in range(turns):
        await asyncio.sleep(0)  # the call is now waiting for its answer
    await writer.stop()
    done, _ = await asyncio.wait([call], timeout=5)
    assert done, "the write was never answered"
    assert call.result() == first_group + 1


async def test_every_queued_job_settles_when_the_writer_stops() -> None:
    writer = Writer("test-writer", memory)
    calls = [asyncio.ensure_future(writer.call(insert, small=i % 2 == 0)) for i in range(50)]
    await asyncio.sleep(0)
    await writer.stop()
    done, pending = await asyncio.wait(calls, timeout=5)
    assert not pending
    for call in done:
        if call.exception() is not None:
            assert isinstance(call.exception(), BackendError)


def wal_database(path: Path, table: str, *pragmas: str) -> Connect:
    """Connections to a WAL database file holding ``table`` (its definition)."""

    def connect() -> WriterConnection:
        conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, factory=WriterConnection
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table}")
        for pragma in pragmas:
            conn.execute(pragma)
        return conn

    return connect


def small_disk(path: Path) -> Connect:
    """A database that cannot grow past 20 pages, as on a full disk."""
    return wal_database(path, "t (x BLOB)", "PRAGMA max_page_count = 20")


def insert_blob(size: int) -> Callable[[sqlite3.Connection], int]:
    return lambda c: int(c.execute("INSERT INTO t VALUES (zeroblob(?))", (size,)).lastrowid or 0)


async def test_a_full_disk_fails_the_write_and_the_writer_goes_on(tmp_path: Path) -> None:
    """SQLite may roll a transaction back itself when the disk is full; the writer's own
    ROLLBACK then failed, which ended its thread and left every later write waiting forever."""
    writer = Writer("test-writer", small_disk(tmp_path / "full.db"), inline=False)
    try:
        with pytest.raises(BackendError, match="database or disk is full"):
            await asyncio.wait_for(writer.call(insert_blob(200_000)), 5)
        assert await asyncio.wait_for(writer.call(insert_blob(10)), 5) == 1
    finally:
        await writer.stop()


async def test_a_full_disk_in_a_shared_transaction_answers_every_write_truthfully(
    tmp_path: Path,
) -> None:
    """Writes committed together: when one fills the disk, each gets an answer, and a write
    answered as done is stored."""
    writer = Writer("test-writer", small_disk(tmp_path / "full.db"), inline=False)
    try:
        hold = asyncio.ensure_future(writer.call(lambda c: time.sleep(0.2)))
        await asyncio.sleep(0.05)  # the thread runs the hold; the next two queue together
        small = asyncio.ensure_future(writer.call(insert_blob(10)))
        big = asyncio.ensure_future(writer.call(insert_blob(200_000)))
        await hold
        _, pending = await asyncio.wait([small, big], timeout=5)
        assert not pending, "a write was never answered"
        assert isinstance(big.exception(), BackendError)
        stored = await writer.call(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0])
        assert stored == (0 if small.exception() is not None else 1)
        assert await asyncio.wait_for(writer.call(insert_blob(10)), 5) == stored + 1
    finally:
        await writer.stop()


async def test_an_unexpected_failure_answers_the_batch_and_the_writer_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer = Writer("test-writer", memory, inline=False)
    try:
        assert await writer.call(insert) == 1
        original = Writer._run_writes

        def fail_in_a_transaction(self: Writer, conn: sqlite3.Connection, *a: object) -> None:
            conn.execute("BEGIN IMMEDIATE")
            raise ZeroDivisionError("division by zero")

        monkeypatch.setattr(Writer, "_run_writes", fail_in_a_transaction)
        with pytest.raises(BackendError, match="division by zero"):
            await asyncio.wait_for(writer.call(insert), 5)
        monkeypatch.setattr(Writer, "_run_writes", original)
        assert await asyncio.wait_for(writer.call(insert), 5) == 2
    finally:
        await writer.stop()


# -- small writes: committed together on the event loop ------------------------------------


def unique_table(path: Path) -> Connect:
    """A table whose ``x`` is unique (a statement that fails)."""
    return wal_database(path, "t (x INTEGER UNIQUE)")


class Inserts:
    """Small write jobs inserting given values; records the thread each ran on."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self, x: int) -> Callable[[sqlite3.Connection], int]:
        def insert(conn: sqlite3.Connection) -> int:
            self.threads.append(threading.get_ident())
            return int(conn.execute("INSERT INTO t VALUES (?)", (x,)).lastrowid or 0)

        return insert


def stored(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x")]
    finally:
        conn.close()


def transactions(stats: StoreStats) -> int:
    return stats.write_batches.cumulative()[-1][1]


async def a_turn_later(writer: Writer, insert: Callable[[sqlite3.Connection], int]) -> int:
    """A small write submitted one turn of the event loop after the caller's own."""
    await asyncio.sleep(0)
    return await writer.call(insert, small=True)


async def test_small_writes_of_one_turn_are_committed_together_on_the_event_loop(
    tmp_path: Path,
) -> None:
    stats = StoreStats()
    writer = Writer("test-writer", unique_table(tmp_path / "db"), stats=stats)
    inserts = Inserts()
    try:
        await writer.call(inserts(0), small=True)  # the thread and its connection are up
        inserts.threads.clear()
        before = transactions(stats)
        calls = [writer.call(inserts(x), small=True) for x in range(1, 6)]
        assert await asyncio.gather(*calls) == [2, 3, 4, 5, 6]
        assert set(inserts.threads) == {threading.get_ident()}
        assert transactions(stats) == before + 1  # one transaction
        assert stored(tmp_path / "db") == [0, 1, 2, 3, 4, 5]
    finally:
        await writer.stop()


@pytest.mark.parametrize(("last_group", "commits"), [(3, 1), (1, 2)])
async def test_after_a_bigger_group_a_commit_waits_a_turn_for_writes_on_their_way(
    tmp_path: Path, last_group: int, commits: int
) -> None:
    """After a group of three, a lone write waits one turn of the loop and a write arriving
    then joins it; after a group of one (a lone writer), it is committed without waiting."""
    stats = StoreStats()
    writer = Writer("test-writer", unique_table(tmp_path / "db"), stats=stats)
    inserts = Inserts()
    try:
        first = range(10, 10 + last_group)
        await asyncio.gather(*(writer.call(inserts(x), small=True) for x in first))
        before = transactions(stats)
        await asyncio.gather(writer.call(inserts(1), small=True), a_turn_later(writer, inserts(2)))
        assert transactions(stats) == before + commits
        assert stored(tmp_path / "db") == [1, 2, *first]
    finally:
        await writer.stop()


async def test_the_wait_after_a_bigger_group_is_for_one_commit_only(tmp_path: Path) -> None:
    """A lone writer after a burst waits one turn, once: its commit is a group of one, and the
    next lone write is committed without waiting for a write a turn behind it."""
    stats = StoreStats()
    writer = Writer("test-writer", unique_table(tmp_path / "db"), stats=stats)
    inserts = Inserts()
    try:
        await asyncio.gather(*(writer.call(inserts(x), small=True) for x in (10, 11, 12)))
        await writer.call(inserts(1), small=True)  # waits a turn, then goes alone
        before = transactions(stats)
        await asyncio.gather(writer.call(inserts(2), small=True), a_turn_later(writer, inserts(3)))
        assert transactions(stats) == before + 2
    finally:
        await writer.stop()


async def test_a_failing_small_write_leaves_nothing_and_its_neighbours_commit(
    tmp_path: Path,
) -> None:
    """Small writes share a transaction without savepoints: SQLite's undo of the failing
    statement is all that stands between its neighbours and a partial write."""
    writer = Writer("test-writer", unique_table(tmp_path / "db"))
    inserts = Inserts()
    try:
        await writer.call(inserts(7), small=True)
        calls = [writer.call(inserts(x), small=True) for x in (1, 7, 2)]
        first, duplicate, last = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(duplicate, BackendError)
        assert "UNIQUE" in duplicate.message
        assert not isinstance(first, BaseException)
        assert not isinstance(last, BaseException)
        assert stored(tmp_path / "db") == [1, 2, 7]
    finally:
        await writer.stop()


async def test_small_writes_do_not_wait_on_the_loop_for_a_lock_held_elsewhere(
    tmp_path: Path,
) -> None:
    """Another process's transaction: the loop is not held while it lasts; the writes wait
    for it on the thread, and the loop's connection still does not wait for locks after."""
    connect = unique_table(tmp_path / "db")
    writer = Writer("test-writer", connect)
    inserts = Inserts()
    await writer.call(inserts(0), small=True)  # the file and its table exist now
    holder = connect()
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        calls = asyncio.ensure_future(
            asyncio.gather(*(writer.call(inserts(x), small=True) for x in (1, 2)))
        )
        await asyncio.sleep(0.3)
        assert time.perf_counter() - started < 3  # the loop went on (not 5 s of busy timeout)
        assert not calls.done()
        holder.execute("COMMIT")
        assert await asyncio.wait_for(calls, 5) == [2, 3]
        assert inserts.threads[-1] != threading.get_ident()  # they ran on the thread
        assert (await writer.call(inserts(3), small=True)) == 4
        assert inserts.threads[-1] == threading.get_ident()  # the loop again
        holder.execute("BEGIN IMMEDIATE")
        writer_conn = writer._conn
        assert writer_conn is not None
        tried = time.perf_counter()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            writer_conn.execute("BEGIN IMMEDIATE")
        assert time.perf_counter() - tried < 1  # busy timeout 0: at once, not after 5 s
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        await writer.stop()


def file_sizes(path: Path) -> tuple[int, int]:
    """Bytes in the database file and in its WAL."""
    return path.stat().st_size, Path(f"{path}-wal").stat().st_size


@pytest.mark.parametrize(("small", "together"), [(True, 1), (False, 1), (True, 30)])
async def test_the_wal_stays_small_under_sustained_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: bool, together: int
) -> None:
    """The writer's connection does not checkpoint by itself (commits on the loop must not):
    the thread does, every CHECKPOINT_EVERY commits or CHECKPOINT_ROWS rows, wherever they
    ran. Writes that all went through the thread used to be left out, and the WAL grew by
    every page they wrote; commits of many writes each would outgrow a count of commits."""
    monkeypatch.setattr(worker, "CHECKPOINT_EVERY", 10)
    monkeypatch.setattr(worker, "CHECKPOINT_ROWS", 50)
    path = tmp_path / "db"
    writer = Writer("test-writer", wal_database(path, "t (x BLOB)"))
    try:
        for _ in range(750 // together):  # about 3 MB of pages
            calls = (writer.call(insert_blob(4000), small=small) for _ in range(together))
            await asyncio.gather(*calls)
        for _ in range(2):  # a checkpoint queued with the first read runs after its answer
            await writer.call(lambda c: None, write=False)
        database, wal = file_sizes(path)
        assert wal < 1_000_000
        assert database > 2_900_000  # the pages reached the database file
    finally:
        await writer.stop()


async def test_a_small_write_that_fails_after_changing_a_row_fails_its_whole_group(
    tmp_path: Path,
) -> None:
    """Small writes share a transaction without savepoints, on the promise that a failing one
    changed nothing. One that raises after its statement ran breaks that promise: nothing of
    the group is committed, and every write of it says so (none is reported failed while
    stored, nor stored while reported failed)."""
    writer = Writer("test-writer", unique_table(tmp_path / "db"))
    inserts = Inserts()

    def insert_then_fail(conn: sqlite3.Connection) -> int:
        inserts(8)(conn)
        raise RuntimeError("after the insert")

    try:
        await writer.call(inserts(0), small=True)
        calls = [
            writer.call(inserts(1), small=True),
            writer.call(insert_then_fail, small=True),
            writer.call(inserts(2), small=True),
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(outcome, RuntimeError) for outcome in outcomes), outcomes
        assert stored(tmp_path / "db") == [0]
    finally:
        await writer.stop()


# -- reads: on the event loop within a budget, else on a read thread ---------------------------


def file_database(path: Path) -> Connect:
    def connect() -> WriterConnection:
        conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, factory=WriterConnection
        )
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    setup = connect()
    setup.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    setup.execute("INSERT INTO t VALUES (1), (2), (3)")
    setup.close()
    return connect


class Attempts:
    """A read that records the thread of every attempt."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.threads: list[int] = []

    def __call__(self, conn: sqlite3.Connection) -> int:
        self.threads.append(threading.get_ident())
        return int(conn.execute(self.sql).fetchone()[0])


@pytest.fixture
def roomy_budget(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to give reads a budget that a quick read cannot miss, even on a busy machine."""
    return lambda: monkeypatch.setattr(worker, "INLINE_READ_SECONDS", 5.0)


async def test_a_quick_read_runs_on_the_event_loop(
    tmp_path: Path, roomy_budget: Callable[[], None]
) -> None:
    roomy_budget()
    with ThreadPoolExecutor(2) as executor:
        pool = ReadPool(file_database(tmp_path / "db"), executor)
        read = Attempts("SELECT sum(x) FROM t")
        assert await pool.call(read) == 6
        assert read.threads == [threading.get_ident()]
        pool.close()


async def test_a_read_past_the_budget_finishes_on_a_read_thread(
    tmp_path: Path, roomy_budget: Callable[[], None]
) -> None:
    """Interrupted on the loop after INLINE_READ_SECONDS, run again in full on a thread."""
    count = 3_000_000
    slow = Attempts(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < "
        f"{count}) SELECT count(*) FROM n"
    )
    with ThreadPoolExecutor(2) as executor:
        pool = ReadPool(file_database(tmp_path / "db"), executor)
        loop_thread = threading.get_ident()
        started = time.perf_counter()
        assert await pool.call(slow) == count
        assert slow.threads[0] == loop_thread
        assert len(slow.threads) == 2
        assert slow.threads[1] != loop_thread
        assert time.perf_counter() - started > worker.INLINE_READ_SECONDS
        # The loop connection is usable again afterwards.
        roomy_budget()
        quick = Attempts("SELECT count(*) FROM t")
        assert await pool.call(quick) == 3
        assert quick.threads == [loop_thread]
        pool.close()


async def test_a_read_that_finds_the_database_locked_waits_on_a_thread(tmp_path: Path) -> None:
    """The loop never waits for a lock: the read goes to a thread, which waits for it."""
    connect = file_database(tmp_path / "db")
    holder = connect()
    holder.execute("BEGIN EXCLUSIVE")  # rollback journal: readers are locked out
    with ThreadPoolExecutor(2) as executor:
        pool = ReadPool(connect, executor)
        read = Attempts("SELECT count(*) FROM t")
        call = asyncio.ensure_future(pool.call(read))
        await asyncio.sleep(0.2)
        assert not call.done()
        holder.execute("ROLLBACK")
        assert await asyncio.wait_for(call, 10) == 3
        assert read.threads[0] == threading.get_ident()
        assert read.threads[-1] != read.threads[0]
        pool.close()
    holder.close()


async def test_a_failing_inline_read_reports_its_verb(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as executor:
        pool = ReadPool(file_database(tmp_path / "db"), executor)
        with pytest.raises(BackendError, match="Failed to read things: no such table: nope"):
            await pool.call(Attempts("SELECT count(*) FROM nope"), verb="read things")
        pool.close()


async def test_closing_the_pool_closes_the_loop_connection(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as executor:
        pool = ReadPool(file_database(tmp_path / "db"), executor)
        assert await pool.call(Attempts("SELECT count(*) FROM t")) == 3
        loop_conn = pool._loop_conn
        assert loop_conn is not None
        pool.close()
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            loop_conn.execute("SELECT 1")
        with pytest.raises(BackendError, match="closed"):
            await pool.call(Attempts("SELECT count(*) FROM t"))


async def test_a_database_that_cannot_be_opened_is_reported_with_the_verb(tmp_path: Path) -> None:
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(f"file:{tmp_path / 'missing.db'}?mode=rw", uri=True)

    with ThreadPoolExecutor(1) as executor:
        pool = ReadPool(connect, executor)
        for _ in range(2):  # the loop's connection is tried again, and fails again the same way
            with pytest.raises(BackendError, match="Failed to read things: unable to open"):
                await pool.call(Attempts("SELECT 1"), verb="read things")
        pool.close()


async def test_reads_on_the_loop_let_other_tasks_run_between_them(
    tmp_path: Path, roomy_budget: Callable[[], None]
) -> None:
    """A task reading page after page (a subscription catching up) must not starve others."""
    roomy_budget()
    with ThreadPoolExecutor(1) as executor:
        pool = ReadPool(file_database(tmp_path / "db"), executor)
        await pool.call(Attempts("SELECT 1"))  # the loop connection is open
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.ensure_future(other())
        await asyncio.sleep(0)
        read = Attempts("SELECT count(*) FROM t")
        for _ in range(20):
            await pool.call(read)
        ticker.cancel()
        assert set(read.threads) == {threading.get_ident()}
        assert ticks >= 20
        pool.close()
