"""SQLite backend: a registry database plus one database per namespace (docs/STORAGE.md).

All Message DB logic (versions, categories, consumer groups) lives here in Python and SQL
(:mod:`~eventodb.store.sqlite.statements`), since SQLite has no stored functions. Database work
runs on threads (:mod:`~eventodb.store.sqlite.worker`): one writer thread per namespace, a
shared read pool for file-backed namespaces; in memory every namespace lives on its writer's
connection. Migrations: :mod:`~eventodb.store.sqlite.migrate`; the data directory's files and
lock: :mod:`~eventodb.store.sqlite.files`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eventodb.core import ids, jsoncodec, timefmt
from eventodb.core.errors import (
    BackendError,
    DuplicateMessageId,
    NamespaceExists,
    NamespaceNotFound,
    PositionExists,
    VersionConflict,
)
from eventodb.core.hashing import cardinal_hash
from eventodb.store import migrations
from eventodb.store.base import (
    HEAD_WAIT_SECONDS,
    CategoryInfo,
    ConsumerGroup,
    Head,
    HealthCheck,
    ImportGroup,
    ImportStopped,
    Located,
    Message,
    NamespaceRecord,
    NamespaceStats,
    NewMessage,
    Store,
    StreamInfo,
    WriteResult,
)
from eventodb.store.sqlite import migrate, statements
from eventodb.store.sqlite.files import (
    REGISTRY_FILE,
    DataDirLock,
    create_file,
    db_file_name,
    make_data_dir,
    registered_file_name,
    remove_db_files,
)
from eventodb.store.sqlite.worker import BUSY_TIMEOUT_MS, ReadPool, Writer, WriterConnection

INLINE_MAX_BYTES = 16 * 1024
"""Writes up to this payload size may run on the event loop (see ``Writer``)."""


def default_read_threads() -> int:
    """As many read threads as cores, at most 4.

    SQLite works without Python's global lock, but the Python around each query holds it, so
    more threads than cores only fight the event loop for it (docs/PERFORMANCE.md, "How reads
    work").
    """
    return max(1, min(4, os.cpu_count() or 1))


def _configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    _add_functions(conn)


def _add_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("eventodb_cardinal_hash", 1, cardinal_hash, deterministic=True)


def _to_message(row: tuple[Any, ...]) -> Message:
    return Message(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        jsoncodec.loads(row[5]) if row[5] is not None else {},
        jsoncodec.loads(row[6]) if row[6] is not None else None,
        timefmt.from_micros(row[7]),
    )


def _now_micros() -> int:
    return time.time_ns() // 1000


def _category_args(
    category: str,
    position: int,
    correlation: str | None,
    consumer_group: ConsumerGroup | None,
    batch_size: int,
) -> tuple[Any, ...]:
    """The parameters of a category read (:func:`~eventodb.store.sqlite.statements.read_category`,
    :func:`~eventodb.store.sqlite.statements.category_positions`)."""
    args: list[Any] = [category, position] if category else [position]
    if correlation is not None:
        args.append(correlation)
    if consumer_group is not None:
        args.extend((consumer_group.size, consumer_group.member))
    args.append(batch_size)
    return tuple(args)


class _NamespaceDatabase:
    """Open handles to one namespace database, and the work in progress on them.

    Deleting a namespace *retires* its handle: work that starts afterwards is refused with
    :class:`NamespaceNotFound`, work in progress finishes, and only then are the connections
    closed and the files removed — so no request racing ``ns.delete`` hangs, fails with a
    half-deleted database, or recreates a file behind it.
    """

    def __init__(self, name: str, writer: Writer, reader: ReadPool | None) -> None:
        self.name = name
        self.writer = writer
        self.reader = reader
        self.retired = False
        self._busy = 0
        self._idle: asyncio.Event | None = None

    def _enter(self) -> None:
        if self.retired:
            raise NamespaceNotFound(self.name)
        self._busy += 1

    def _leave(self) -> None:
        self._busy -= 1
        if self._busy == 0 and self._idle is not None:
            self._idle.set()

    async def read(self, fn: Callable[[sqlite3.Connection], Any], verb: str) -> Any:
        self._enter()
        try:
            if self.reader is not None:
                return await self.reader.call(fn, verb=verb)
            return await self.writer.call(fn, write=False, verb=verb)
        finally:
            self._leave()

    async def write(
        self, fn: Callable[[WriterConnection], Any], verb: str, *, small: bool = False
    ) -> Any:
        self._enter()
        try:
            return await self.writer.call(fn, write=True, verb=verb, small=small)
        finally:
            self._leave()

    async def retire(self) -> None:
        """Refuse new work, let the work in progress finish, then close."""
        self.retired = True
        if self._busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
        await self.close()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        await self.writer.stop()


class SQLiteStore(Store):
    """Namespaces as SQLite databases: files under ``data_dir``, or in memory when it is None.

    Args:
        data_dir: directory for ``metadata.db`` and one ``<namespace>.db`` per namespace;
            ``None`` keeps everything in memory for the life of this object (test mode).
        synchronous: ``NORMAL`` (default; WAL is fsynced at checkpoints: acknowledged writes
            survive a process crash, an OS crash may lose the last ones) or ``FULL`` (fsync at
            every commit).
        file_mode: permissions of the database files this store creates (SQLite gives their
            ``-wal``/``-shm`` files the same); a data directory it creates gets ``x`` where
            ``r`` is set (0600 → 0700). Existing files and directories are left as they are.
        migrations_root: alternative migration files (tests).
    """

    import_groups_per_transaction = 5
    """Each transaction of an import costs a commit and, on the writer thread, waits for
    Python's global lock, which the event loop holds while it parses the next records (up to
    5 ms per wait): about as long as inserting 1,000 records. Five groups share that cost and
    hold the write lock for about 50 ms on a 2-core machine, the longest a live write waits
    behind an import."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        registry_file: str = REGISTRY_FILE,
        synchronous: str = "NORMAL",
        read_threads: int | None = None,
        file_mode: int = 0o600,
        migrations_root: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._file_mode = file_mode
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA", "OFF"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.backend = "sqlite" if self.data_dir is not None else "memory"
        self._registry_file = registry_file or REGISTRY_FILE
        self._synchronous = synchronous.upper()
        self._registry_migrations = migrations.load("sqlite", "registry", migrations_root)
        self._namespace_migrations = migrations.load("sqlite", "namespace", migrations_root)
        self._registry: Writer | None = None
        self._handles: dict[str, _NamespaceDatabase] = {}
        self._lifecycle = asyncio.Lock()
        """Held while a namespace handle is opened, a namespace created or deleted: a handle
        is never opened for a namespace being deleted."""
        self._dir_lock: DataDirLock | None = None
        self._executor = (
            ThreadPoolExecutor(
                max_workers=read_threads or default_read_threads(),
                thread_name_prefix="eventodb-read",
            )
            if self.data_dir is not None
            else None
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect(self, target: str) -> WriterConnection:
        """A connection to an existing database file (never creating one: files are created
        on purpose, see :func:`~eventodb.store.sqlite.files.create_file`), or to a new
        in-memory database (of the kind writers need; readers use it as a plain one)."""
        if target == ":memory:":
            conn = sqlite3.connect(
                target,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
                factory=WriterConnection,
            )
            _add_functions(conn)
            return conn
        conn = sqlite3.connect(
            f"{Path(target).resolve().as_uri()}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
            factory=WriterConnection,
        )
        _configure(conn, self._synchronous)
        return conn

    async def open(self) -> None:
        if self._registry is not None:
            return
        if self.data_dir is not None:
            try:
                make_data_dir(self.data_dir, self._file_mode)
            except OSError as exc:
                raise BackendError(
                    f"Failed to create data directory {self.data_dir}: {exc}"
                ) from None
            self._dir_lock = DataDirLock.acquire(self.data_dir)
            try:
                create_file(self.data_dir / self._registry_file, self._file_mode)
            except OSError as exc:
                self._release_dir()
                raise BackendError(f"Failed to create the registry: {exc}") from None
            target = str(self.data_dir / self._registry_file)
        else:
            target = ":memory:"
        self._registry = Writer(
            "eventodb-registry", lambda: self._connect(target), stats=self.stats
        )
        await self._registry.call(
            lambda c: migrate.migrate_registry(c, self._registry_migrations, target),
            write=False,
            verb="migrate registry",
        )
        for record in await self.list_namespaces():
            db_path = await self._db_path(record.id)
            if self.data_dir is not None:
                # The Go server creates namespace files on first use: some may not exist yet.
                create_file(self.data_dir / db_path, self._file_mode)
            handle = self._open_handle(record.id, db_path)
            self.migrations_applied += await self._migrate_namespace(handle)

    async def _migrate_namespace(self, handle: _NamespaceDatabase) -> int:
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:  # on the writer thread
            loop.call_soon_threadsafe(self._report_progress, handle.name, done, total)

        applied: int = await handle.writer.call(
            lambda c: migrate.migrate_namespace(c, self._namespace_migrations, handle.name, report),
            write=False,
            verb="migrate namespace",
        )
        return applied

    async def close(self) -> None:
        handles, self._handles = self._handles, {}
        for handle in handles.values():
            await handle.close()
        if self._registry is not None:
            await self._registry.stop()
            self._registry = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._release_dir()

    def _release_dir(self) -> None:
        if self._dir_lock is not None:
            self._dir_lock.release()
            self._dir_lock = None

    def _health_checks(self) -> list[tuple[str, HealthCheck]]:
        return [("registry", self._check_registry)]

    async def _check_registry(self) -> None:
        """The registry file is where it was and answers a query."""
        if self.data_dir is not None:
            path = self.data_dir / self._registry_file
            if not path.is_file():
                raise BackendError(f"Failed to check the registry: {path} is missing")
        await self._reg(
            lambda c: c.execute(statements.COUNT_NAMESPACES).fetchone(),
            "check the registry",
            write=False,
        )

    # -- registry ----------------------------------------------------------------------------

    async def _reg(self, fn: Callable[[sqlite3.Connection], Any], verb: str, write: bool) -> Any:
        if self._registry is None:
            raise BackendError(f"Failed to {verb}: store is not open")
        return await self._registry.call(fn, write=write, verb=verb)

    async def _namespace_row(self, statement: str, namespace: str) -> Any:
        """The registry row of ``namespace`` that ``statement`` selects.

        Raises:
            NamespaceNotFound: the registry has no such namespace.
        """
        row = await self._reg(
            lambda c: c.execute(statement, (namespace,)).fetchone(), "get namespace", write=False
        )
        if row is None:
            raise NamespaceNotFound(namespace)
        return row

    async def _get_namespace(self, namespace: str) -> NamespaceRecord:
        row = await self._namespace_row(statements.GET_NAMESPACE, namespace)
        return NamespaceRecord(row[0], row[1], row[2] or "", row[3])

    async def list_namespaces(self) -> list[NamespaceRecord]:
        rows = await self._reg(
            lambda c: c.execute(statements.LIST_NAMESPACES).fetchall(),
            "list namespaces",
            write=False,
        )
        return [NamespaceRecord(r[0], r[1], r[2] or "", r[3]) for r in rows]

    async def set_token_hash(self, namespace: str, token_hash: str) -> None:
        def update(c: sqlite3.Connection) -> int:
            return c.execute(statements.SET_TOKEN_HASH, (token_hash, namespace)).rowcount

        if not await self._reg(update, "update token", write=True):
            raise NamespaceNotFound(namespace)

    async def _db_path(self, namespace: str) -> str:
        row = await self._namespace_row(statements.DB_PATH, namespace)
        return registered_file_name(str(row[0]))

    def _open_handle(self, namespace: str, db_path: str) -> _NamespaceDatabase:
        handle = self._handles.get(namespace)
        if handle is not None:
            return handle
        if self.data_dir is None:
            writer = Writer(
                f"eventodb-ns-{namespace}", lambda: self._connect(":memory:"), stats=self.stats
            )
            handle = _NamespaceDatabase(namespace, writer, None)
        else:
            path = str(self.data_dir / db_path)
            # With fsync at every commit a write is no longer quick: keep it off the loop.
            inline = self._synchronous not in ("FULL", "EXTRA")
            writer = Writer(
                f"eventodb-ns-{namespace}",
                lambda: self._connect(path),
                inline=inline,
                stats=self.stats,
            )
            assert self._executor is not None
            reader = ReadPool(lambda: self._connect(path), self._executor, self.stats)
            handle = _NamespaceDatabase(namespace, writer, reader)
        self._handles[namespace] = handle
        return handle

    async def _handle(self, namespace: str) -> _NamespaceDatabase:
        handle = self._handles.get(namespace)
        if handle is not None:
            return handle
        async with self._lifecycle:
            handle = self._handles.get(namespace)
            if handle is None:
                handle = self._open_handle(namespace, await self._db_path(namespace))
            return handle

    async def _create_namespace(
        self, namespace: str, token_hash: str, description: str
    ) -> NamespaceRecord:
        created_at = int(time.time())

        def reserve(c: sqlite3.Connection) -> str:
            if c.execute(statements.NAMESPACE_EXISTS, (namespace,)).fetchone():
                raise NamespaceExists(namespace)
            if self.data_dir is None:
                db_path = f"memory:{namespace}"
            else:
                taken = {registered_file_name(r[0]).lower() for r in c.execute(statements.DB_PATHS)}
                db_path = db_file_name(namespace, taken, self._registry_file)
            c.execute(
                statements.INSERT_NAMESPACE,
                (namespace, token_hash, db_path, description, created_at),
            )
            return db_path

        async with self._lifecycle:
            try:
                db_path = await self._reg(reserve, "create namespace", write=True)
            except BackendError as exc:
                if "UNIQUE constraint failed: namespaces.token_hash" in exc.message:
                    raise BackendError("Failed to create namespace: token already in use") from None
                raise
            try:
                if self.data_dir is not None:
                    remove_db_files(self.data_dir / db_path)  # stale files of an earlier one
                    create_file(self.data_dir / db_path, self._file_mode)
                handle = self._open_handle(namespace, db_path)
                try:
                    await self._migrate_namespace(handle)
                except BaseException:
                    self._handles.pop(namespace, None)
                    await handle.close()
                    raise
            except BaseException:
                await self._reg(
                    lambda c: c.execute(statements.DELETE_NAMESPACE, (namespace,)),
                    "create namespace",
                    write=True,
                )
                if self.data_dir is not None:
                    remove_db_files(self.data_dir / db_path)
                raise
        return NamespaceRecord(namespace, token_hash, description, created_at)

    async def _delete_namespace(self, namespace: str) -> int:
        async with self._lifecycle:
            db_path = await self._db_path(namespace)
            handle = self._open_handle(namespace, db_path)  # the open one, if any
            try:
                count = await handle.read(
                    lambda c: c.execute(statements.COUNT).fetchone()[0], "count"
                )
            except BackendError:
                count = 0
            deleted = await self._reg(
                lambda c: c.execute(statements.DELETE_NAMESPACE, (namespace,)).rowcount,
                "delete namespace",
                write=True,
            )
            if self._handles.get(namespace) is handle:
                del self._handles[namespace]
            # Requests already running finish first (as if before the delete); later ones
            # find no namespace. Only then are the files removed, so none is recreated.
            await handle.retire()
            if not deleted:
                raise NamespaceNotFound(namespace)
            if self.data_dir is not None:
                remove_db_files(self.data_dir / db_path)
        return int(count)

    async def namespace_stats(self, namespace: str) -> NamespaceStats:
        handle = await self._handle(namespace)
        row = await handle.read(
            lambda c: c.execute(statements.STATS).fetchone(),
            "count messages",
        )
        last = timefmt.from_micros(row[2]) if row[2] is not None else None
        return NamespaceStats(row[0], row[1], last)

    async def settled_head(self, namespace: str, wait: float = HEAD_WAIT_SECONDS) -> Head:
        # A write draws its global position inside the file's write lock and commits before
        # the next one draws: what is visible is always a prefix.
        handle = await self._handle(namespace)
        head = await handle.read(lambda c: c.execute(statements.HEAD).fetchone()[0], "read head")
        return Head(int(head), settled=True)

    async def _clear_namespace(self, namespace: str) -> int:
        def clear(c: sqlite3.Connection) -> int:
            count = c.execute(statements.CLEAR).rowcount
            c.execute(statements.RESTART_GLOBAL_POSITIONS)
            return int(count)

        handle = await self._handle(namespace)
        return int(await handle.write(clear, "clear namespace"))

    # -- writing -----------------------------------------------------------------------------

    async def _write(self, namespace: str, message: NewMessage) -> WriteResult:
        handle = await self._handle(namespace)
        size = len(message.data_json) + len(message.metadata_json or "")
        result: WriteResult = await handle.write(
            lambda c: _insert(c, message), "write message", small=size <= INLINE_MAX_BYTES
        )
        return result

    async def _import(
        self,
        namespace: str,
        messages: Sequence[Message],
        payloads: Sequence[tuple[str, str | None]],
    ) -> None:
        try:
            await self._import_groups(namespace, [ImportGroup(messages, payloads)])
        except ImportStopped as exc:
            raise exc.error from None

    async def _import_groups(self, namespace: str, groups: Sequence[ImportGroup]) -> None:
        """Every group in one transaction, inserted by one statement: each call into SQLite
        on the writer thread may wait for Python's global lock, held by the event loop while
        it parses the next records, so the fewer the better. When a record collides (the
        statement then leaves nothing behind), the groups are inserted again one by one, each
        in a savepoint: the colliding group is rolled back and the ones before it are
        committed, as if each had had a transaction of its own. Any other failure rolls the
        whole transaction back: then no group went in."""
        messages = [m for g in groups for m in g.messages]
        payloads = [p for g in groups for p in g.payloads]
        rows = _import_json(messages, payloads)

        def insert_groups(c: sqlite3.Connection) -> ImportStopped | None:
            try:
                c.execute(statements.IMPORT_ROWS, (rows,))
                return None
            except sqlite3.IntegrityError:
                pass
            for index, group in enumerate(groups):
                c.execute("SAVEPOINT import_group")
                try:
                    _insert_one_by_one(c, group.messages, group.payloads)
                except PositionExists as exc:
                    c.execute("ROLLBACK TO import_group")
                    c.execute("RELEASE import_group")
                    return ImportStopped(index, exc)
                c.execute("RELEASE import_group")
            return None

        handle = await self._handle(namespace)
        stopped = await handle.write(insert_groups, "import messages")
        if stopped is not None:
            raise stopped

    # -- reading -----------------------------------------------------------------------------

    async def _read_stream_json(
        self,
        namespace: str,
        stream_name: str,
        position: int,
        global_position: int | None,
        batch_size: int,
    ) -> tuple[str, int]:
        if global_position is not None:
            sql = statements.READ_STREAM_GLOBAL
            args: tuple[Any, ...] = (stream_name, global_position, batch_size)
        else:
            sql = statements.READ_STREAM
            args = (stream_name, position, batch_size)
        handle = await self._handle(namespace)
        body, count = await handle.read(lambda c: c.execute(sql, args).fetchone(), "read stream")
        return body, count

    async def _read_category_json(
        self,
        namespace: str,
        category: str,
        position: int,
        batch_size: int,
        correlation: str | None,
        consumer_group: ConsumerGroup | None,
    ) -> tuple[str, int]:
        sql = statements.read_category(
            bool(category), correlation is not None, consumer_group is not None
        )
        args = _category_args(category, position, correlation, consumer_group, batch_size)
        handle = await self._handle(namespace)
        body, count = await handle.read(lambda c: c.execute(sql, args).fetchone(), "read category")
        return body, count

    async def _last_message_json(
        self, namespace: str, stream_name: str, message_type: str | None
    ) -> tuple[str, int]:
        args: tuple[str, ...]
        if message_type is None:
            sql, args = statements.LAST, (stream_name,)
        else:
            sql, args = statements.LAST_OF_TYPE, (stream_name, message_type)
        handle = await self._handle(namespace)
        row = await handle.read(lambda c: c.execute(sql, args).fetchone(), "read last message")
        return ("null", 0) if row is None else (str(row[0]), 1)

    async def _stream_positions(
        self, namespace: str, stream_name: str, position: int, batch_size: int
    ) -> list[Located]:
        handle = await self._handle(namespace)
        args = (stream_name, position, batch_size)
        rows: list[Located] = await handle.read(
            lambda c: c.execute(statements.STREAM_POSITIONS, args).fetchall(), "read stream"
        )
        return rows

    async def _category_positions(
        self,
        namespace: str,
        category: str,
        position: int,
        batch_size: int,
        consumer_group: ConsumerGroup | None,
    ) -> list[Located]:
        sql = statements.category_positions(bool(category), consumer_group is not None)
        args = _category_args(category, position, None, consumer_group, batch_size)
        handle = await self._handle(namespace)
        rows: list[Located] = await handle.read(
            lambda c: c.execute(sql, args).fetchall(), "read category"
        )
        return rows

    async def _stream_version(self, namespace: str, stream_name: str) -> int | None:
        handle = await self._handle(namespace)
        version: int | None = await handle.read(
            lambda c: _version(c, stream_name), "read stream version"
        )
        return version

    async def _list_streams(
        self, namespace: str, prefix: str, cursor: str, limit: int
    ) -> list[StreamInfo]:
        args = (cursor, prefix, len(prefix), prefix, limit)
        handle = await self._handle(namespace)
        rows = await handle.read(
            lambda c: c.execute(statements.LIST_STREAMS, args).fetchall(), "list streams"
        )
        return [StreamInfo(r[0], r[1], timefmt.from_micros(r[2])) for r in rows]

    async def list_categories(self, namespace: str) -> list[CategoryInfo]:
        handle = await self._handle(namespace)
        rows = await handle.read(
            lambda c: c.execute(statements.LIST_CATEGORIES).fetchall(), "list categories"
        )
        return [CategoryInfo(r[0], r[1], r[2]) for r in rows]


# -- run on the namespace's writer thread -------------------------------------------------------


def _version(c: sqlite3.Connection, stream_name: str) -> int | None:
    row = c.execute(statements.VERSION, (stream_name,)).fetchone()
    return None if row[0] is None else int(row[0])


def _insert(c: WriterConnection, m: NewMessage) -> WriteResult:
    """Runs inside the namespace writer's transaction, so check and insert are atomic."""
    message_id = m.id
    if message_id is not None:
        row = c.execute(statements.BY_ID, (message_id,)).fetchone()
        if row is not None:
            existing = _to_message(row)
            if m.same_content(existing):
                return WriteResult(existing.position, existing.global_position, duplicate=True)
            raise DuplicateMessageId(message_id, existing.stream_name)
    else:
        message_id = ids.new_id()
    current = _version(c, m.stream_name)
    actual = -1 if current is None else current
    if m.expected_version is not None and m.expected_version != actual:
        raise VersionConflict(m.stream_name, m.expected_version, actual)
    position = actual + 1
    global_position = _next_global_position(c)
    c.execute(
        statements.WRITE,
        {
            "id": message_id,
            "stream": m.stream_name,
            "type": m.type,
            "position": position,
            "global": global_position,
            "data": m.data_json,
            "metadata": m.metadata_json,
            "time": _now_micros(),
            "hash": cardinal_hash(m.stream_name),
        },
    )
    c.next_global_position = (c.epoch, c.total_changes, global_position + 1)
    return WriteResult(position, global_position)


def _next_global_position(c: WriterConnection) -> int:
    """The global position of the next message, as AUTOINCREMENT would give it.

    Read from the database at the first write of a transaction; the next writes of the
    transaction take the one the write before them left, unless the writer has rolled anything
    back or anything else has changed the database since (see :class:`WriterConnection`).
    Drawing it in every write's INSERT cost about a tenth of the server's CPU per write at 8
    connections (docs/DESIGN.md, "Performance decisions").
    """
    assert c.in_transaction, "a message write runs in the writer's transaction"
    kept = c.next_global_position
    if kept is not None and kept[0] == c.epoch and kept[1] == c.total_changes:
        return kept[2]
    position: int = c.execute(statements.NEXT_GLOBAL_POSITION).fetchone()[0]
    return position


def _import_rows(
    messages: Sequence[Message], payloads: Sequence[tuple[str, str | None]]
) -> list[list[Any]]:
    """Each message's columns in the order of :data:`statements.IMPORT_ONE`."""
    return [
        [
            m.id,
            m.stream_name,
            m.type,
            m.position,
            m.global_position,
            data,
            metadata,
            timefmt.to_micros(m.time),
        ]
        for m, (data, metadata) in zip(messages, payloads, strict=True)
    ]


def _import_json(messages: Sequence[Message], payloads: Sequence[tuple[str, str | None]]) -> str:
    """The rows of :data:`statements.IMPORT_ROWS`: one JSON array, each message's columns
    followed by its cardinal id's hash."""
    rows = _import_rows(messages, payloads)
    hashes: dict[str, int | None] = {}
    for row, m in zip(rows, messages, strict=True):
        stream = m.stream_name
        if stream not in hashes:
            hashes[stream] = cardinal_hash(stream)
        row.append(hashes[stream])
    return jsoncodec.dumps(rows).decode()


def _insert_one_by_one(
    c: sqlite3.Connection, messages: Sequence[Message], payloads: Sequence[tuple[str, str | None]]
) -> None:
    """Insert the messages one statement each, to find which one collides.

    Raises:
        PositionExists: naming the first colliding record (the rows before it went in: the
            caller rolls them back, with the transaction or to a savepoint).
    """
    rows = _import_rows(messages, payloads)
    before = c.total_changes
    try:
        c.executemany(statements.IMPORT_ONE, rows)
    except sqlite3.IntegrityError as exc:
        # The rows before the failing one went in: their count is the failing row's index.
        index = c.total_changes - before
        raise PositionExists(_collision_message(str(exc), messages[index]), index) from None


def _collision_message(error: str, m: Message) -> str:
    if "global_position" in error:
        return f"global position already exists: {m.global_position}"
    if "messages.id" in error:
        return f"message id already exists: {m.id}"
    return f"stream position already exists: {m.stream_name}@{m.position}"
