"""SQLite backend: a registry database plus one database per namespace (docs/STORAGE.md).

All Message DB logic (versions, categories, consumer groups) lives here in Python and SQL,
since SQLite has no stored functions. Database work runs on threads
(:mod:`eventodb.store.sqlite_worker`): one writer thread per namespace, a shared read pool for
file-backed namespaces; in memory every namespace lives on its writer's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath
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
    CategoryInfo,
    ConsumerGroup,
    HealthCheck,
    Located,
    Message,
    NamespaceRecord,
    NamespaceStats,
    NewMessage,
    Store,
    StreamInfo,
    WriteResult,
)
from eventodb.store.sqlite_worker import BUSY_TIMEOUT_MS, ReadPool, Writer

REGISTRY_FILE = "metadata.db"
LOCK_FILE = "eventodb.lock"
"""Held by the store that has a data directory open (see :class:`DataDirLock`)."""

INLINE_MAX_BYTES = 16 * 1024
"""Writes up to this payload size may run on the event loop (see ``Writer``)."""

_PLAIN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _category_sql(expr: str) -> str:
    return (
        f"(CASE WHEN instr({expr}, '-') > 0 THEN substr({expr}, 1, instr({expr}, '-') - 1) "
        f"ELSE {expr} END)"
    )


# Spelled like the messages_category index expression so SQLite uses the index.
_CATEGORY = _category_sql("stream_name")
_CORRELATION_CATEGORY = _category_sql("(metadata ->> '$.correlationStreamName')")
_COLUMNS = "id, stream_name, type, position, global_position, data, metadata, time"


def _render_wire_json(
    type: str, position: str, global_position: str, data: str, metadata: str, time: str
) -> str:
    """SQL rendering the message as RPC responses show it from `type` on (namespace migration
    004): the JSON text `"type",position,global_position,data,metadata,"time"`, with ``time``
    (Unix microseconds) in RFC 3339 without trailing zeros in the fraction. The arguments are
    SQL operands (columns or parameters). Floor division keeps times before 1970 exact.
    """
    micros = f"((({time}) % 1000000) + 1000000) % 1000000"
    return (
        f"json_quote({type}) || ',' || {position} || ',' || {global_position} || ','"
        f" || coalesce({data}, '{{}}') || ',' || coalesce({metadata}, 'null') || ',\"'"
        f" || strftime('%Y-%m-%dT%H:%M:%S', (({time}) - {micros}) / 1000000, 'unixepoch')"
        f" || rtrim(rtrim('.' || printf('%06d', {micros}), '0'), '.') || 'Z\"'"
    )


_RENDER_WIRE_JSON = _render_wire_json(
    "type", "position", "global_position", "data", "metadata", "time"
)
# Stored for everything the server writes; rendered for rows another program inserted.
_WIRE_JSON = f"coalesce(wire_json, {_RENDER_WIRE_JSON})"
_CARDINAL_HASH = "coalesce(cardinal_id_hash, eventodb_cardinal_hash(stream_name))"
_STREAM_ELEMENT = f"id || '\",' || {_WIRE_JSON}"
_CATEGORY_ELEMENT = f"id || '\",' || json_quote(stream_name) || ',' || {_WIRE_JSON}"
# A write takes the global position AUTOINCREMENT would give it, so that one INSERT stores the
# message with its wire_json.
_NEXT_GLOBAL_POSITION = (
    "max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),"
    " coalesce((SELECT max(global_position) FROM messages), 0)) + 1"
)
_INSERT = (
    "INSERT INTO messages (id, stream_name, type, position, global_position, data, metadata,"
    " time, cardinal_id_hash, wire_json)"
    " SELECT :id, :stream, :type, :position, g, :data, :metadata, :time, :hash,"
    f" {_render_wire_json(':type', ':position', 'g', ':data', ':metadata', ':time')}"
    f" FROM (SELECT {_NEXT_GLOBAL_POSITION} AS g)"
)
# An imported message is stored with its fast-path columns in the same INSERT.
_IMPORT = (
    "INSERT INTO messages (id, stream_name, type, position, global_position, data, metadata,"
    " time, cardinal_id_hash, wire_json)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, eventodb_cardinal_hash(?2),"
    f" {_render_wire_json('?3', '?4', '?5', '?6', '?7', '?8')})"
)
_FILL = (
    f"UPDATE messages SET wire_json = {_RENDER_WIRE_JSON},"
    " cardinal_id_hash = eventodb_cardinal_hash(stream_name)"
    " WHERE global_position >= ? AND global_position < ? AND wire_json IS NULL"
)
FILL_BATCH = 10_000
"""Global positions per transaction when the fast-path columns of older rows are filled in."""
FILL_VERSION = 5
"""The namespace migration that the fill of older rows must precede."""


def _json_array(element: str, source: str) -> str:
    """A query whose one row is the JSON array of ``element`` over the rows of ``source`` and
    the number of elements.

    ``element`` is one array element after its leading ``["``. SQLite's group_concat takes
    the rows in the order the subquery delivers them.
    """
    return (
        "SELECT coalesce('[[\"' || group_concat(e, '],[\"') || ']]', '[]'), count(*)"
        f" FROM (SELECT {element} AS e FROM {source})"
    )


def default_read_threads() -> int:
    """As many read threads as cores, at most 4.

    Building ``Message`` objects holds the GIL, so more threads than cores only fight the event
    loop for it: on the 2-core reference machine 4 threads made a 100-message read cost 3.7 ms
    of CPU at 8 connections against 1.8 ms with 2 (docs/PERFORMANCE.md, "Read threads").
    """
    return max(1, min(4, os.cpu_count() or 1))


def db_file_name(namespace: str, taken: set[str], registry_file: str = REGISTRY_FILE) -> str:
    """The file name of a namespace database inside the data directory.

    Ordinary ids (``[A-Za-z0-9_.-]``, not starting with ``.``) keep upstream's ``<id>.db``.
    Any other id, or one whose ``<id>.db`` would clash case-insensitively with an existing file
    or the registry, gets ``ns-<sanitised>-<sha256 prefix>.db`` (``-2.db``, ``-3.db``... should
    an ordinary id already use that name): never a path, never shared.

    Args:
        taken: lower-cased file names already in use.
    """
    plain = f"{namespace}.db"
    if (
        _PLAIN_ID.fullmatch(namespace)
        and plain.lower() not in taken
        and plain.lower() != registry_file.lower()
    ):
        return plain
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)[:24]
    digest = hashlib.sha256(namespace.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    hashed = f"ns-{safe}-{digest}"
    # An ordinary id may spell exactly this name: then count up until a name is free.
    name, n = f"{hashed}.db", 1
    while name.lower() in taken:
        n += 1
        name = f"{hashed}-{n}.db"
    return name


def _file_name(db_path: str) -> str:
    """The namespace database's file name inside the data directory, from a registry ``db_path``.

    The Go server recorded the path it opened (``<data-dir>/<id>.db``, absolute or relative to
    its working directory); we record the bare file name. Namespace files always live in the
    data directory, so only the name counts, and a data directory that was moved, restored
    elsewhere or mounted at another path still opens.
    """
    return PurePath(db_path).name


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


class DataDirLock:
    """An exclusive lock on a data directory, held as long as a store has it open.

    Two processes writing one directory lose acknowledged writes (one keeps writing to a file
    the other has deleted and re-created), so the second is refused, naming the first
    (docs/STORAGE.md, "One server per data directory"). ``flock`` on :data:`LOCK_FILE`, which
    holds the owner's pid; the kernel drops the lock when its process ends, even by
    ``kill -9``, so a leftover file never blocks a restart.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Raises: BackendError naming the holder when another store has the directory."""
        import fcntl  # POSIX only, like the rest of the server's process handling

        path = data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise BackendError(f"Failed to lock data directory {data_dir}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BackendError(f"Failed to lock data directory {data_dir}: {exc}") from None
            raise BackendError(
                f"data directory {data_dir} is in use by another EventoDB server (pid {holder}):"
                " only one server may use a SQLite data directory; stop that one, or give this"
                " one another --data-dir (several servers can share a Postgres database)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(fd)

    def release(self) -> None:
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the lock


class _Namespace:
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
        self, fn: Callable[[sqlite3.Connection], Any], verb: str, *, small: bool = False
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
        self._migrations_root = migrations_root
        self._registry_migrations = migrations.load("sqlite", "registry", migrations_root)
        self._namespace_migrations = migrations.load("sqlite", "namespace", migrations_root)
        self._registry: Writer | None = None
        self._handles: dict[str, _Namespace] = {}
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

    def _connect(self, target: str) -> sqlite3.Connection:
        """A connection to an existing database file (never creating one: files are created
        on purpose, see :meth:`_create_file`), or to a new in-memory database."""
        if target == ":memory:":
            conn = sqlite3.connect(
                target, isolation_level=None, check_same_thread=False, cached_statements=256
            )
            _add_functions(conn)
            return conn
        conn = sqlite3.connect(
            f"{Path(target).resolve().as_uri()}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        _configure(conn, self._synchronous)
        return conn

    async def open(self) -> None:
        if self._registry is not None:
            return
        if self.data_dir is not None:
            try:
                self._make_data_dir(self.data_dir)
            except OSError as exc:
                raise BackendError(
                    f"Failed to create data directory {self.data_dir}: {exc}"
                ) from None
            self._dir_lock = DataDirLock.acquire(self.data_dir)
            try:
                self._create_file(self.data_dir / self._registry_file)
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
            lambda c: _migrate(c, self._registry_migrations, "registry", target),
            write=False,
            verb="migrate registry",
        )
        for record in await self.list_namespaces():
            db_path = await self._db_path(record.id)
            if self.data_dir is not None:
                # The Go server creates namespace files on first use: some may not exist yet.
                self._create_file(self.data_dir / db_path)
            handle = self._open_handle(record.id, db_path)
            self.migrations_applied += await self._migrate_namespace(handle)

    def _make_data_dir(self, path: Path) -> None:
        if path.is_dir():
            return
        mode = self._file_mode | (self._file_mode & 0o444) >> 2  # x wherever r is set
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(path, mode)  # exactly: the umask may have narrowed it

    def _create_file(self, path: Path) -> None:
        """An empty database file with our permissions, unless it exists: SQLite keeps the
        permissions of a file it opens and gives its ``-wal``/``-shm`` files the same."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, self._file_mode)
        except FileExistsError:
            return
        try:
            os.fchmod(fd, self._file_mode)
        finally:
            os.close(fd)

    async def _migrate_namespace(self, handle: _Namespace) -> int:
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:  # on the writer thread
            loop.call_soon_threadsafe(self._report_progress, handle.name, done, total)

        applied: int = await handle.writer.call(
            lambda c: _migrate(c, self._namespace_migrations, "namespace", handle.name, report),
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
            lambda c: c.execute("SELECT count(*) FROM namespaces").fetchone(),
            "check the registry",
            write=False,
        )

    # -- registry ----------------------------------------------------------------------------

    async def _reg(self, fn: Callable[[sqlite3.Connection], Any], verb: str, write: bool) -> Any:
        if self._registry is None:
            raise BackendError(f"Failed to {verb}: store is not open")
        return await self._registry.call(fn, write=write, verb=verb)

    async def _get_namespace(self, namespace: str) -> NamespaceRecord:
        row = await self._reg(
            lambda c: c.execute(
                "SELECT id, token_hash, description, created_at FROM namespaces WHERE id = ?",
                (namespace,),
            ).fetchone(),
            "get namespace",
            write=False,
        )
        if row is None:
            raise NamespaceNotFound(namespace)
        return NamespaceRecord(row[0], row[1], row[2] or "", row[3])

    async def list_namespaces(self) -> list[NamespaceRecord]:
        rows = await self._reg(
            lambda c: c.execute(
                "SELECT id, token_hash, description, created_at FROM namespaces "
                "ORDER BY created_at DESC, id"
            ).fetchall(),
            "list namespaces",
            write=False,
        )
        return [NamespaceRecord(r[0], r[1], r[2] or "", r[3]) for r in rows]

    async def set_token_hash(self, namespace: str, token_hash: str) -> None:
        def update(c: sqlite3.Connection) -> int:
            return c.execute(
                "UPDATE namespaces SET token_hash = ? WHERE id = ?", (token_hash, namespace)
            ).rowcount

        if not await self._reg(update, "update token", write=True):
            raise NamespaceNotFound(namespace)

    async def _db_path(self, namespace: str) -> str:
        row = await self._reg(
            lambda c: c.execute(
                "SELECT db_path FROM namespaces WHERE id = ?", (namespace,)
            ).fetchone(),
            "get namespace",
            write=False,
        )
        if row is None:
            raise NamespaceNotFound(namespace)
        return _file_name(str(row[0]))

    def _open_handle(self, namespace: str, db_path: str) -> _Namespace:
        handle = self._handles.get(namespace)
        if handle is not None:
            return handle
        if self.data_dir is None:
            writer = Writer(
                f"eventodb-ns-{namespace}", lambda: self._connect(":memory:"), stats=self.stats
            )
            handle = _Namespace(namespace, writer, None)
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
            handle = _Namespace(namespace, writer, reader)
        self._handles[namespace] = handle
        return handle

    async def _handle(self, namespace: str) -> _Namespace:
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
            if c.execute("SELECT 1 FROM namespaces WHERE id = ?", (namespace,)).fetchone():
                raise NamespaceExists(namespace)
            if self.data_dir is None:
                db_path = f"memory:{namespace}"
            else:
                taken = {
                    _file_name(r[0]).lower() for r in c.execute("SELECT db_path FROM namespaces")
                }
                db_path = db_file_name(namespace, taken, self._registry_file)
            c.execute(
                "INSERT INTO namespaces"
                " (id, token_hash, db_path, description, created_at, metadata)"
                " VALUES (?, ?, ?, ?, ?, '{}')",
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
                    _remove_db_files(self.data_dir / db_path)  # stale files of an earlier one
                    self._create_file(self.data_dir / db_path)
                handle = self._open_handle(namespace, db_path)
                try:
                    await self._migrate_namespace(handle)
                except BaseException:
                    self._handles.pop(namespace, None)
                    await handle.close()
                    raise
            except BaseException:
                await self._reg(
                    lambda c: c.execute("DELETE FROM namespaces WHERE id = ?", (namespace,)),
                    "create namespace",
                    write=True,
                )
                if self.data_dir is not None:
                    _remove_db_files(self.data_dir / db_path)
                raise
        return NamespaceRecord(namespace, token_hash, description, created_at)

    async def _delete_namespace(self, namespace: str) -> int:
        async with self._lifecycle:
            db_path = await self._db_path(namespace)
            handle = self._open_handle(namespace, db_path)  # the open one, if any
            try:
                count = await handle.read(
                    lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0], "count"
                )
            except BackendError:
                count = 0
            deleted = await self._reg(
                lambda c: c.execute("DELETE FROM namespaces WHERE id = ?", (namespace,)).rowcount,
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
                _remove_db_files(self.data_dir / db_path)
        return int(count)

    async def namespace_stats(self, namespace: str) -> NamespaceStats:
        handle = await self._handle(namespace)
        row = await handle.read(
            lambda c: c.execute(
                "SELECT count(*), count(DISTINCT stream_name), max(time) FROM messages"
            ).fetchone(),
            "count messages",
        )
        last = timefmt.from_micros(row[2]) if row[2] is not None else None
        return NamespaceStats(row[0], row[1], last)

    async def _clear_namespace(self, namespace: str) -> int:
        def clear(c: sqlite3.Connection) -> int:
            count = c.execute("DELETE FROM messages").rowcount
            c.execute("DELETE FROM sqlite_sequence WHERE name = 'messages'")
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
        rows = [
            (
                m.id,
                m.stream_name,
                m.type,
                m.position,
                m.global_position,
                data,
                metadata,
                timefmt.to_micros(m.time),
            )
            for m, (data, metadata) in zip(messages, payloads, strict=True)
        ]

        def insert_all(c: sqlite3.Connection) -> None:
            before = c.total_changes
            try:
                c.executemany(_IMPORT, rows)
            except sqlite3.IntegrityError as exc:
                # The rows before the failing one went in (the writer rolls the whole batch
                # back): their count is the failing row's index.
                index = c.total_changes - before
                raise PositionExists(_collision_message(str(exc), messages[index]), index) from None

        handle = await self._handle(namespace)
        await handle.write(insert_all, "import messages")

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
            sql = _READ_STREAM_GLOBAL
            args: tuple[Any, ...] = (stream_name, global_position, batch_size)
        else:
            sql = _READ_STREAM
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
        where, args = _category_filter(category, position, correlation, consumer_group)
        sql = _json_array(
            _CATEGORY_ELEMENT, f"messages WHERE {where} ORDER BY global_position LIMIT ?"
        )
        handle = await self._handle(namespace)
        body, count = await handle.read(
            lambda c: c.execute(sql, (*args, batch_size)).fetchone(), "read category"
        )
        return body, count

    async def _last_message_json(
        self, namespace: str, stream_name: str, message_type: str | None
    ) -> tuple[str, int]:
        args: tuple[str, ...]
        if message_type is None:
            sql, args = _LAST, (stream_name,)
        else:
            sql, args = _LAST_OF_TYPE, (stream_name, message_type)
        handle = await self._handle(namespace)
        row = await handle.read(lambda c: c.execute(sql, args).fetchone(), "read last message")
        return ("null", 0) if row is None else (str(row[0]), 1)

    async def _stream_positions(
        self, namespace: str, stream_name: str, position: int, batch_size: int
    ) -> list[Located]:
        handle = await self._handle(namespace)
        rows: list[Located] = await handle.read(
            lambda c: c.execute(_STREAM_POSITIONS, (stream_name, position, batch_size)).fetchall(),
            "read stream",
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
        where, args = _category_filter(category, position, None, consumer_group)
        sql = (
            "SELECT stream_name, position, global_position FROM messages"
            f" WHERE {where} ORDER BY global_position LIMIT ?"
        )
        handle = await self._handle(namespace)
        rows: list[Located] = await handle.read(
            lambda c: c.execute(sql, (*args, batch_size)).fetchall(), "read category"
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
        sql = (
            "SELECT stream_name, max(position), max(time) FROM messages"
            " WHERE stream_name > ? AND stream_name >= ? AND substr(stream_name, 1, ?) = ?"
            " GROUP BY stream_name ORDER BY stream_name LIMIT ?"
        )
        args = (cursor, prefix, len(prefix), prefix, limit)
        handle = await self._handle(namespace)
        rows = await handle.read(lambda c: c.execute(sql, args).fetchall(), "list streams")
        return [StreamInfo(r[0], r[1], timefmt.from_micros(r[2])) for r in rows]

    async def list_categories(self, namespace: str) -> list[CategoryInfo]:
        sql = (
            f"SELECT {_CATEGORY} AS category, count(DISTINCT stream_name), count(*)"
            " FROM messages GROUP BY category ORDER BY category"
        )
        handle = await self._handle(namespace)
        rows = await handle.read(lambda c: c.execute(sql).fetchall(), "list categories")
        return [CategoryInfo(r[0], r[1], r[2]) for r in rows]


# -- statements run on worker threads ----------------------------------------------------------

_READ_STREAM = _json_array(
    _STREAM_ELEMENT,
    "messages WHERE stream_name = ? AND position >= ? ORDER BY position LIMIT ?",
)
_READ_STREAM_GLOBAL = _json_array(
    _STREAM_ELEMENT,
    "messages WHERE stream_name = ? AND global_position >= ? ORDER BY position LIMIT ?",
)
_STREAM_POSITIONS = (
    "SELECT stream_name, position, global_position FROM messages"
    " WHERE stream_name = ? AND position >= ? ORDER BY position LIMIT ?"
)
_LAST = (
    f"SELECT '[\"' || {_STREAM_ELEMENT} || ']' FROM messages WHERE stream_name = ?"
    " ORDER BY position DESC LIMIT 1"
)
_LAST_OF_TYPE = (
    f"SELECT '[\"' || {_STREAM_ELEMENT} || ']' FROM messages WHERE stream_name = ? AND type = ?"
    " ORDER BY position DESC LIMIT 1"
)


def _category_filter(
    category: str, position: int, correlation: str | None, consumer_group: ConsumerGroup | None
) -> tuple[str, list[Any]]:
    """The WHERE condition of a category read and its parameters."""
    where = ["global_position >= ?"]
    args: list[Any] = [position]
    if category:
        where.insert(0, f"{_CATEGORY} = ?")
        args.insert(0, category)
    if correlation is not None:
        where.append(f"{_CORRELATION_CATEGORY} = ?")
        args.append(correlation)
    if consumer_group is not None:
        where.append(f"abs({_CARDINAL_HASH}) % ? = ?")
        args.extend((consumer_group.size, consumer_group.member))
    return " AND ".join(where), args


def _version(c: sqlite3.Connection, stream_name: str) -> int | None:
    row = c.execute(
        "SELECT max(position) FROM messages WHERE stream_name = ?", (stream_name,)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def _insert(c: sqlite3.Connection, m: NewMessage) -> WriteResult:
    """Runs inside the namespace writer's transaction, so check and insert are atomic."""
    message_id = m.id
    if message_id is not None:
        row = c.execute(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
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
    cur = c.execute(
        _INSERT,
        {
            "id": message_id,
            "stream": m.stream_name,
            "type": m.type,
            "position": position,
            "data": m.data_json,
            "metadata": m.metadata_json,
            "time": _now_micros(),
            "hash": cardinal_hash(m.stream_name),
        },
    )
    assert cur.lastrowid is not None
    return WriteResult(position, cur.lastrowid)


def _collision_message(error: str, m: Message) -> str:
    if "global_position" in error:
        return f"global position already exists: {m.global_position}"
    if "messages.id" in error:
        return f"message id already exists: {m.id}"
    return f"stream position already exists: {m.stream_name}@{m.position}"


def fill_fast_paths(c: sqlite3.Connection, report: Callable[[int, int], None]) -> None:
    """Fill ``wire_json`` and ``cardinal_id_hash`` of rows written before migration 004.

    One transaction per :data:`FILL_BATCH` global positions; ``report(done, total)`` after each.
    """
    low, high, total = c.execute(
        "SELECT min(global_position), max(global_position), count(*) FROM messages"
        " WHERE wire_json IS NULL"
    ).fetchone()
    if not total:
        return
    done = 0
    for start in range(low, high + 1, FILL_BATCH):
        c.execute("BEGIN IMMEDIATE")
        try:
            done += c.execute(_FILL, (start, start + FILL_BATCH)).rowcount
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        report(done, total)


def _migrate(
    c: sqlite3.Connection,
    pending_from: list[migrations.Migration],
    level: str,
    target: str,
    report: Callable[[int, int], None] | None = None,
) -> int:
    """Apply pending migrations, each in its own transaction; returns how many ran.

    Args:
        report: progress of long data steps (namespace level), ``(done, total)``.
    """
    if level == "registry":
        try:
            done = {r[0] for r in c.execute("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError:
            done = set()
        pending = [m for m in pending_from if m.name not in done]
    else:
        try:
            current = c.execute("SELECT max(version) FROM _schema_version").fetchone()[0] or 0
        except sqlite3.OperationalError:
            current = 0
        pending = [m for m in pending_from if m.version > current]
    for m in pending:
        if level == "namespace" and m.version == FILL_VERSION:
            try:
                fill_fast_paths(c, report or (lambda done, total: None))
            except sqlite3.Error as exc:
                raise BackendError(str(migrations.MigrationError(target, m.name, exc))) from None
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
            )
            for statement in migrations.split_sqlite_statements(m.sql):
                c.execute(statement)
            now = int(time.time())
            if level == "namespace":
                c.execute(
                    "INSERT OR IGNORE INTO _schema_version (version, applied_at) VALUES (?, ?)",
                    (m.version, now),
                )
            c.execute(
                "INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (m.name, now),
            )
            c.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - any failure must roll the migration back
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise BackendError(str(migrations.MigrationError(target, m.name, exc))) from None
    return len(pending)


def _remove_db_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")
