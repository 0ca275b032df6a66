"""Postgres backend: a registry schema plus one Message-DB-compatible schema per namespace.

Each namespace is a schema ``eventodb_<id>`` holding a ``messages`` table and Message DB's SQL
surface (migrations under ``migrations/postgres/namespace``), so Message DB tooling works when
pointed at it with ``search_path``. The server writes through the schema's ``write_message`` —
so it takes the same advisory lock as any SQL client or other server process — and reads with
its own SQL, which implements the RPC semantics of docs/API.md and matches
:class:`~eventodb.store.sqlite.SQLiteStore` result for result.

Decisions, each explained where it lives:

* New namespace tables use Message DB's column order; upstream-created ones keep theirs, and the
  server always names its columns (``migrations/postgres/namespace/001_message_db.sql``).
* Migrations are templated: ``{{schema}}`` becomes the quoted schema identifier (names are only
  ever ``[A-Za-z0-9_]``; anything else is refused before quoting, :func:`postgres_sql.render`).
* The write lock is Message DB's: ``pg_advisory_xact_lock(hash_64(category))`` taken inside
  ``write_message``, shared with SQL clients and upstream servers on the same database.
* ``write_message`` sends ``NOTIFY eventodb`` with ``{"s", "g", "p", "n"}`` (schema, global
  position, position, stream name — null when too long for a payload; then looked up). One LISTEN
  connection per store turns them into pokes; own writes are published at once and their echo
  skipped; a lost LISTEN connection is re-established and announced as a :class:`Gap`.
* A trigger on the registry announces every namespace created, deleted or given another token
  on ``eventodb_registry``; the same connection turns those into :class:`NamespaceChange`
  events, so other processes' revocations reach this one's caches within milliseconds. After a
  lost LISTEN connection the namespaces this process looked up are checked again.

Driver errors are translated here, at the boundary: connection trouble and anything unexpected
become :class:`BackendError` ("Failed to <verb>: ..."), a schema dropped behind our back becomes
:class:`NamespaceNotFound` or a clear :class:`BackendError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg

from eventodb.core import ids, jsoncodec
from eventodb.core.errors import (
    BackendError,
    DuplicateMessageId,
    EventoDBError,
    NamespaceExists,
    NamespaceNotFound,
    PositionExists,
    VersionConflict,
)
from eventodb.store import message_db, migrations
from eventodb.store.base import (
    CategoryInfo,
    ConsumerGroup,
    Gap,
    HealthCheck,
    Located,
    Message,
    NamespaceChange,
    NamespaceRecord,
    NamespaceStats,
    NewMessage,
    Poke,
    PoolUsage,
    Store,
    StreamInfo,
    WriteResult,
)
from eventodb.store.group_commit import GroupCommit
from eventodb.store.postgres_migrate import (
    MIGRATION_LOCK,
    apply_namespace_migration,
    migrate_registry,
    schema_version,
)
from eventodb.store.postgres_notify import NotificationListener
from eventodb.store.postgres_sql import (
    NOTIFY_CHANNEL,
    REGISTRY_CHANNEL,
    REGISTRY_SCHEMA,
    NamespaceSQL,
    quote_ident,
    redact,
    schema_name,
)

log = logging.getLogger("eventodb.store.postgres")

T = TypeVar("T")

DEFAULT_MAX_POOL = 25
"""Upstream's pool: at most 25 open connections."""
CONNECT_TIMEOUT = 5.0
IDLE_LIFETIME = 300.0
"""Seconds an idle pooled connection is kept (upstream: 5 min lifetime)."""

_NAMESPACES = f"{REGISTRY_SCHEMA}.namespaces"
FILL_BATCH = 10_000
"""Global positions per transaction when the fast-path columns of older rows are filled in."""
FILL_VERSION = 5
"""The namespace migration that the fill of older rows must precede."""
_CHANGE_KINDS: dict[str, Literal["created", "deleted", "updated"]] = {
    "INSERT": "created",
    "UPDATE": "updated",
    "DELETE": "deleted",
    "TRUNCATE": "deleted",
}
_SEEN_LIMIT = 10_000

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,  # includes "connection was closed in the middle of operation"
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now
    # Not an InterfaceError: a connection that broke mid-protocol (seen during a Postgres
    # restart: "cannot switch to state 12; another operation (2) is in progress").
    asyncpg.InternalClientError,
)
_MISSING_OBJECT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.InvalidSchemaNameError,
    asyncpg.UndefinedFunctionError,
)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError | TimeoutError):
        return f"Postgres is unreachable ({text})"
    if isinstance(exc, _CONNECTION_ERRORS):
        return f"connection to Postgres lost ({text})"
    return text


def _to_message(r: Sequence[Any]) -> Message:
    return Message(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        jsoncodec.loads(r[5]) if r[5] is not None else {},
        jsoncodec.loads(r[6]) if r[6] is not None else None,
        r[7].replace(tzinfo=UTC),
    )


def _naive_utc(dt: datetime) -> datetime:
    """``timestamp without time zone`` columns hold UTC wall-clock time."""
    if dt.tzinfo is None:
        return dt
    return dt.astimezone(UTC).replace(tzinfo=None)


_POSITIVE_EXPONENT = re.compile(r"[0-9][eE]\+")
_MARK = "\x00eventodb-float-"
"""Placeholder prefix; payloads never contain NUL (validation refuses it), so it cannot clash."""


def jsonb_exact(text: str | None, value: Any) -> str | None:
    """JSON text that jsonb stores without turning big floats into integers.

    jsonb keeps numbers as decimals and prints ``1e+300`` back as a 301-digit integer, which
    reads as a Python ``int`` unequal to the float written. Floats that the encoder spells with
    a positive exponent are written instead as their exact decimal expansion plus ``.0``, which
    jsonb keeps as a non-integer; every other number passes unchanged. Cheap when unneeded: one
    regex search.
    """
    if text is None or not _POSITIVE_EXPONENT.search(text):
        return text
    floats: list[float] = []

    def mark(v: Any) -> Any:
        if isinstance(v, float) and "e+" in repr(v):
            floats.append(v)
            return f"{_MARK}{len(floats) - 1}"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    marked = jsoncodec.dumps_str(mark(value))
    for i, f in enumerate(floats):
        marked = marked.replace(
            jsoncodec.dumps_str(f"{_MARK}{i}"), format(Decimal(f), "f") + ".0", 1
        )
    return marked


def _jsonb_spelling(text: str | None, value: Any) -> str | None:
    """What the jsonb column should be given instead of ``text``; ``None`` when ``text`` will do."""
    exact = jsonb_exact(text, value)
    return None if exact is text else exact


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: our connections keep no session state, so skip asyncpg's reset query.

    (asyncpg still rolls back an open transaction on release.) Saves a round trip per request.
    """


@dataclass(frozen=True, slots=True)
class _Written:
    position: int
    global_position: int


@dataclass(frozen=True, slots=True)
class _Conflict:
    actual: int


class _Duplicate:
    """The id exists already: an idempotent retry, or a clash (the caller finds out which)."""


_DUPLICATE = _Duplicate()


class _Busy:
    """Another transaction held the category's lock: not written; write it again, waiting."""


_BUSY = _Busy()

_Outcome = _Written | _Conflict | _Duplicate | _Busy
"""What ``write_messages`` reports for one item."""


@dataclass(frozen=True, slots=True)
class _Item:
    """One write in a batch: the validated message and the id it is written with."""

    message: NewMessage
    id: str


class _Namespace:
    """What the store keeps per namespace: its schema, statements and write batcher."""

    __slots__ = ("id", "schema", "sql", "writes")

    def __init__(
        self,
        namespace: str,
        schema: str,
        write_batch: Callable[[_Namespace, list[_Item]], Awaitable[list[_Outcome | BaseException]]],
    ) -> None:
        self.id = namespace
        self.schema = schema
        self.sql = NamespaceSQL(schema)
        self.writes: GroupCommit[_Item, _Outcome] = GroupCommit(
            lambda items: write_batch(self, items)
        )


class PostgresStore(Store):
    """Namespaces as schemas of one Postgres database.

    Args:
        dsn: ``postgresql://user:password@host:port/database`` (or libpq ``key=value``).
        min_pool, max_pool: connections kept open / at most open.
        migrations_root: alternative migration files (tests).
    """

    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        min_pool: int = 2,
        max_pool: int = DEFAULT_MAX_POOL,
        connect_timeout: float = CONNECT_TIMEOUT,
        migrations_root: Path | None = None,
        listen_check_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dsn = dsn
        self.min_pool = min(min_pool, max_pool)
        self.max_pool = max_pool
        self._connect_timeout = connect_timeout
        self._listen_check_interval = listen_check_interval
        self._registry_migrations = migrations.load("postgres", "registry", migrations_root)
        self._namespace_migrations = migrations.load("postgres", "namespace", migrations_root)
        self._pool: Any = None
        self._namespaces: dict[str, _Namespace] = {}
        self._schema_owner: dict[str, str] = {}
        self._listener: NotificationListener | None = None
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._deliverer: asyncio.Task[None] | None = None
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._token_hashes: dict[str, str] = {}
        """Token hash of each namespace as last read here: re-checked after a lost LISTEN
        connection, when registry notifications may have been missed."""
        self._recheck: asyncio.Task[None] | None = None
        self.missing_schemas: list[str] = []
        """Namespaces whose schema was found missing at :meth:`open` (left alone, reported)."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Open pooled connections (``sys.health``)."""
        return int(self._pool.get_size()) if self._pool is not None else 0

    def pool_usage(self) -> PoolUsage | None:
        pool = self._pool
        if pool is None:
            return None
        return PoolUsage(pool.get_size(), pool.get_idle_size(), pool.get_max_size())

    def _health_checks(self) -> list[tuple[str, HealthCheck]]:
        return [("database", self._check_database), ("notifications", self._check_listener)]

    async def _check_database(self) -> None:
        """A pooled connection answers a query on the registry."""
        await self._run(
            "check the database", lambda c: c.fetchval(f"SELECT count(*) FROM {_NAMESPACES}")
        )

    async def _check_listener(self) -> None:
        """The LISTEN connection that brings other processes' writes is up."""
        if self.listen_backend_pid is None:
            raise BackendError("the LISTEN connection is down (reconnecting)")

    @property
    def listen_backend_pid(self) -> int | None:
        """Server pid of the LISTEN connection (tests terminate it on purpose)."""
        return self._listener.backend_pid if self._listener is not None else None

    async def _connect(self) -> Any:
        return await asyncpg.connect(
            self.dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": "eventodb-listen"},
        )

    async def open(self) -> None:
        if self._pool is not None:
            return
        where = redact(self.dsn)
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_pool,
                max_size=self.max_pool,
                max_inactive_connection_lifetime=IDLE_LIFETIME,
                timeout=self._connect_timeout,
                statement_cache_size=512,
                reset=_keep_session,
                server_settings={"application_name": "eventodb"},
            )
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError, ValueError) as exc:
            raise BackendError(f"Failed to connect to Postgres at {where}: {exc}") from exc
        self._pool = pool
        try:
            await self._prepare_database()
            self._listener = NotificationListener(
                self._connect,
                {NOTIFY_CHANNEL: self._inbox.put_nowait, REGISTRY_CHANNEL: self._registry_notified},
                self._listener_reconnected,
                check_interval=self._listen_check_interval,
            )
            try:
                await self._listener.start()
            except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                raise BackendError(f"Failed to listen on Postgres at {where}: {exc}") from exc
            self._deliverer = asyncio.create_task(self._deliver(), name="eventodb-pg-pokes")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
            self._recheck = None
        if self._deliverer is not None:
            self._deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deliverer
            self._deliverer = None
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, *_CONNECTION_ERRORS, asyncpg.PostgresError):
                pool.terminate()
        self._namespaces.clear()
        self._schema_owner.clear()
        self._token_hashes.clear()

    async def _prepare_database(self) -> None:
        """Server checks, registry migrations, then every namespace's pending migrations."""

        async def check_server(c: Any) -> None:
            version = int(await c.fetchval("SHOW server_version_num"))
            if version < 130000:
                raise BackendError(
                    f"Failed to open the database: Postgres {version // 10000} is too old,"
                    " EventoDB needs 13 or newer (gen_random_uuid, starts_with)"
                )
            encoding = await c.fetchval("SHOW server_encoding")
            if encoding != "UTF8":
                raise BackendError(
                    f"Failed to open the database: its encoding is {encoding}, EventoDB needs"
                    " UTF8 (hash_64 must hash UTF-8 bytes to match every other backend)"
                )

        await self._run("open the database", check_server)
        await self._run("migrate the registry", self._migrate_registry)
        for namespace, schema in await self._registry_rows():

            async def migrate(c: Any, n: str = namespace, s: str = schema) -> int:
                return await self._migrate_namespace(c, n, s)

            self.migrations_applied += await self._run("migrate namespace", migrate)

    async def _migrate_registry(self, c: Any) -> None:
        await migrate_registry(c, self._registry_migrations)

    async def _migrate_namespace(self, c: Any, namespace: str, schema: str) -> int:
        """Apply pending migrations to one namespace schema, each in its own transaction.

        The fill of older rows (:meth:`_fill_fast_paths`) runs in transactions of its own
        before the migration that records it.
        """
        applied = 0
        filled = False
        while True:
            async with c.transaction():
                await c.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                if not await c.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
                    # Dropped behind our back: leave it; requests for it get a clear error.
                    log.error("namespace %r: schema %s does not exist", namespace, schema)
                    self.missing_schemas.append(namespace)
                    return applied
                current = await schema_version(c, schema)
                pending = [m for m in self._namespace_migrations if m.version > current]
                if not pending:
                    return applied
                fill_first = pending[0].version == FILL_VERSION and not filled
                if not fill_first:
                    await apply_namespace_migration(c, pending[0], schema)
            if fill_first:
                await self._fill_fast_paths(c, namespace, schema)
                filled = True
            else:
                applied += 1

    async def _fill_fast_paths(self, c: Any, namespace: str, schema: str) -> None:
        """Fill ``wire_json`` and ``cardinal_id_hash`` of rows written before migration 004.

        :data:`FILL_BATCH` global positions per statement (each its own transaction), with
        progress reported after each; idempotent, so an interrupted fill simply resumes.
        """
        sql = NamespaceSQL(schema)
        try:
            low, high, total = await c.fetchrow(sql.unfilled_range)
            done = 0
            for start in range(low or 0, (high or -1) + 1, FILL_BATCH):
                status = await c.execute(sql.fill, start, start + FILL_BATCH)
                done += int(status.rsplit(" ", 1)[1])
                self._report_progress(namespace, done, total)
        except asyncpg.PostgresError as exc:
            raise BackendError(
                f"migration of schema {schema} failed while filling older messages: {exc}"
            ) from exc

    # -- running statements ------------------------------------------------------------------

    async def _run(
        self,
        verb: str,
        work: Callable[[Any], Awaitable[T]],
        *,
        ns: _Namespace | None = None,
        retry: bool = False,
    ) -> T:
        """Run ``work(connection)`` on a pooled connection, translating driver errors.

        Args:
            ns: the namespace the work touches, to explain missing schema objects.
            retry: the work is a read: run it once more on a fresh connection when the first
                one turns out to be dead (e.g. after a Postgres restart).
        """
        pool = self._pool
        if pool is None:
            raise BackendError(f"Failed to {verb}: store is not open")
        try:
            return await self._attempt(pool, verb, work, ns, 2 if retry else 1)
        except BackendError:
            self.stats.record_error()
            raise

    async def _attempt(
        self,
        pool: Any,
        verb: str,
        work: Callable[[Any], Awaitable[T]],
        ns: _Namespace | None,
        attempts: int,
    ) -> T:
        stats = self.stats
        for attempt in range(attempts):
            try:
                asked = time.perf_counter()
                async with pool.acquire() as conn:
                    stats.record_pool_wait(time.perf_counter() - asked)
                    return await work(conn)
            except EventoDBError:
                raise
            except _MISSING_OBJECT_ERRORS as exc:
                if ns is None:
                    raise BackendError(f"Failed to {verb}: {exc}") from exc
                raise await self._missing_storage(ns, verb, exc) from exc
            except _CONNECTION_ERRORS as exc:
                if attempt + 1 < attempts:
                    continue
                raise BackendError(f"Failed to {verb}: {_describe(exc)}") from exc
            except asyncpg.PostgresError as exc:
                if ns is not None and await self._deleted_meanwhile(ns):
                    # e.g. "cache lookup failed for function": its schema was being dropped.
                    raise NamespaceNotFound(ns.id) from exc
                raise BackendError(f"Failed to {verb}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _missing_storage(
        self, ns: _Namespace, verb: str, exc: BaseException
    ) -> EventoDBError:
        """A statement met no schema/table/function: deleted namespace, or damaged storage."""
        self._forget(ns.id)
        row = await self._run(
            "get namespace",
            lambda c: c.fetchrow(f"SELECT schema_name FROM {_NAMESPACES} WHERE id = $1", ns.id),
            retry=True,
        )
        if row is None:
            return NamespaceNotFound(ns.id)
        return BackendError(
            f"Failed to {verb}: the storage of namespace '{ns.id}' is missing or damaged"
            f" (schema {row[0]}: {exc})"
        )

    async def _deleted_meanwhile(self, ns: _Namespace) -> bool:
        """After a failed statement: whether the namespace is gone from the registry (then it
        was deleted while the statement ran, and the failure just says so)."""
        try:
            schema = await self._run(
                "get namespace",
                lambda c: c.fetchval(f"SELECT schema_name FROM {_NAMESPACES} WHERE id = $1", ns.id),
                retry=True,
            )
        except BackendError:
            return False  # cannot tell: report the original failure
        if schema is None:
            self._forget(ns.id)
            return True
        return False

    def _forget(self, namespace: str) -> None:
        self._token_hashes.pop(namespace, None)
        ns = self._namespaces.pop(namespace, None)
        if ns is not None:
            self._schema_owner.pop(ns.schema, None)
        for key in [k for k in self._seen if k[0] == namespace]:
            del self._seen[key]

    def _remember(self, namespace: str, schema: str) -> _Namespace:
        ns = self._namespaces.get(namespace)
        if ns is None or ns.schema != schema:
            ns = _Namespace(namespace, schema, self._write_batch)
            self._namespaces[namespace] = ns
            self._schema_owner[schema] = namespace
        return ns

    async def _namespace(self, namespace: str) -> _Namespace:
        ns = self._namespaces.get(namespace)
        if ns is not None:
            return ns
        schema = await self._run(
            "get namespace",
            lambda c: c.fetchval(f"SELECT schema_name FROM {_NAMESPACES} WHERE id = $1", namespace),
            retry=True,
        )
        if schema is None:
            raise NamespaceNotFound(namespace)
        return self._remember(namespace, schema)

    # -- registry ----------------------------------------------------------------------------

    async def _registry_rows(self) -> list[tuple[str, str]]:
        rows = await self._run(
            "list namespaces",
            lambda c: c.fetch(f"SELECT id, schema_name FROM {_NAMESPACES}"),
            retry=True,
        )
        return [(r[0], r[1]) for r in rows]

    async def _get_namespace(self, namespace: str) -> NamespaceRecord:
        row = await self._run(
            "get namespace",
            lambda c: c.fetchrow(
                f"SELECT id, token_hash, description, created_at, schema_name FROM {_NAMESPACES}"
                " WHERE id = $1",
                namespace,
            ),
            retry=True,
        )
        if row is None:
            self._forget(namespace)
            raise NamespaceNotFound(namespace)
        self._remember(namespace, row[4])
        self._token_hashes[namespace] = row[1]
        return NamespaceRecord(row[0], row[1], row[2] or "", row[3])

    async def list_namespaces(self) -> list[NamespaceRecord]:
        rows = await self._run(
            "list namespaces",
            lambda c: c.fetch(
                f"SELECT id, token_hash, description, created_at FROM {_NAMESPACES}"
                ' ORDER BY created_at DESC, id COLLATE "C"'
            ),
            retry=True,
        )
        return [NamespaceRecord(r[0], r[1], r[2] or "", r[3]) for r in rows]

    async def set_token_hash(self, namespace: str, token_hash: str) -> None:
        async def update(c: Any) -> str:
            try:
                return str(
                    await c.execute(
                        f"UPDATE {_NAMESPACES} SET token_hash = $1 WHERE id = $2",
                        token_hash,
                        namespace,
                    )
                )
            except asyncpg.UniqueViolationError:
                raise BackendError("Failed to update token: token already in use") from None

        if await self._run("update token", update) == "UPDATE 0":
            raise NamespaceNotFound(namespace)
        self._token_hashes[namespace] = token_hash

    async def _create_namespace(
        self, namespace: str, token_hash: str, description: str
    ) -> NamespaceRecord:
        schema = schema_name(namespace)
        created_at = int(time.time())

        async def create(c: Any) -> None:
            try:
                async with c.transaction():
                    taken = await c.fetchval(
                        f"SELECT 1 FROM {_NAMESPACES} WHERE id = $1 OR schema_name = $2",
                        namespace,
                        schema,
                    )
                    if taken:
                        raise NamespaceExists(namespace)
                    if await c.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
                        # Its schema name is taken by something else (e.g. ``store`` would be
                        # the registry's own schema): the id is not available.
                        raise NamespaceExists(
                            namespace,
                            f"Namespace '{namespace}' cannot be created: its schema {schema}"
                            " already exists",
                        )
                    await c.execute(f"CREATE SCHEMA {quote_ident(schema)}")
                    for m in self._namespace_migrations:
                        await apply_namespace_migration(c, m, schema)
                    await c.execute(
                        f"INSERT INTO {_NAMESPACES}"
                        " (id, token_hash, schema_name, description, created_at, metadata)"
                        " VALUES ($1, $2, $3, $4, $5, '{}')",
                        namespace,
                        token_hash,
                        schema,
                        description,
                        created_at,
                    )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name and "token_hash" in exc.constraint_name:
                    raise BackendError("Failed to create namespace: token already in use") from None
                raise NamespaceExists(namespace) from None  # a concurrent create won
            except asyncpg.DuplicateSchemaError:
                raise NamespaceExists(namespace) from None

        await self._run("create namespace", create)
        self._forget(namespace)
        self._remember(namespace, schema)
        self._token_hashes[namespace] = token_hash
        return NamespaceRecord(namespace, token_hash, description, created_at)

    async def _delete_namespace(self, namespace: str) -> int:
        async def delete(c: Any) -> int:
            async with c.transaction():
                schema = await c.fetchval(
                    f"SELECT schema_name FROM {_NAMESPACES} WHERE id = $1 FOR UPDATE", namespace
                )
                if schema is None:
                    raise NamespaceNotFound(namespace)
                q = quote_ident(schema)
                count = 0
                if await c.fetchval("SELECT to_regclass($1)", f"{q}.messages") is not None:
                    # Take the table before anything else of the schema: DROP ... CASCADE would
                    # lock the sequence and functions first and deadlock with a running import
                    # (which holds the table and then advances the sequence).
                    await c.execute(f"LOCK TABLE {q}.messages IN ACCESS EXCLUSIVE MODE")
                    count = int(await c.fetchval(f"SELECT count(*) FROM {q}.messages"))
                await c.execute(f"DROP SCHEMA IF EXISTS {q} CASCADE")
                await c.execute(f"DELETE FROM {_NAMESPACES} WHERE id = $1", namespace)
                return count

        try:
            return await self._run("delete namespace", delete)
        finally:
            self._forget(namespace)

    async def _release_namespace(self, namespace: str) -> None:
        async def release(c: Any) -> str:
            return await message_db.release_on(c, namespace)

        try:
            await self._run("release namespace", release)
        finally:
            self._forget(namespace)

    async def namespace_stats(self, namespace: str) -> NamespaceStats:
        ns = await self._namespace(namespace)
        row = await self._run(
            "count messages", lambda c: c.fetchrow(ns.sql.stats), ns=ns, retry=True
        )
        last = row[2].replace(tzinfo=UTC) if row[2] is not None else None
        return NamespaceStats(row[0], row[1], last)

    async def _clear_namespace(self, namespace: str) -> int:
        ns = await self._namespace(namespace)

        async def clear(c: Any) -> int:
            async with c.transaction():
                await c.execute(ns.sql.lock_exclusive)
                count = int(await c.fetchval(ns.sql.count))
                await c.execute(ns.sql.truncate)  # RESTART IDENTITY: next global position is 1
                return count

        count = await self._run("clear namespace", clear, ns=ns)
        for key in [k for k in self._seen if k[0] == namespace]:
            del self._seen[key]
        return count

    # -- writing -----------------------------------------------------------------------------

    async def _write(self, namespace: str, message: NewMessage) -> WriteResult:
        ns = await self._namespace(namespace)
        m = message
        item = _Item(m, m.id or ids.new_id())
        outcome = await ns.writes.submit(item)
        if isinstance(outcome, _Busy):
            # Alone and outside the batches, so that only this write waits for the lock.
            [alone] = await self._write_batch(ns, [item], wait=True)
            if isinstance(alone, BaseException):
                raise alone
            outcome = alone
        if isinstance(outcome, _Written):
            return WriteResult(outcome.position, outcome.global_position)
        # Rare paths. The id is checked before the version (as on SQLite): an identical retry
        # of an expected-version write succeeds even though the stream has moved on since.
        if m.id is not None or isinstance(outcome, _Duplicate):
            existing = await self._message_by_id(ns, item.id)
            if existing is not None:
                if m.id is None:
                    # An id we generated is ours: the batch holding this write committed but
                    # its answer was lost, and the item-by-item retry found the message.
                    return WriteResult(existing.position, existing.global_position)
                if m.same_content(existing):
                    return WriteResult(existing.position, existing.global_position, duplicate=True)
                raise DuplicateMessageId(m.id, existing.stream_name)
        if isinstance(outcome, _Conflict):
            assert m.expected_version is not None
            raise VersionConflict(m.stream_name, m.expected_version, outcome.actual)
        raise BackendError("Failed to write message: message id already exists")

    async def _write_batch(
        self, ns: _Namespace, items: list[_Item], *, wait: bool = False
    ) -> list[_Outcome | BaseException]:
        """One ``write_messages`` call for the batch; item by item if the batch fails as a whole.

        ``write_messages`` reports version conflicts and known ids per item, so the batch only
        fails for reasons outside any one item's control (a concurrent writer of the same new
        id committing between our check and our insert, a lost connection): then each item gets
        its own transaction and its own outcome.

        Args:
            wait: wait for category locks held elsewhere; without it (the batches) the items of
                such a category come back busy, so a held lock stalls only its own writes.
        """
        try:
            written = await self._run(
                "write message", lambda c: self._call_batch(c, ns, items, wait), ns=ns
            )
        except BackendError as exc:
            if len(items) == 1:
                if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                    return [_DUPLICATE]  # a concurrent write with the same id won
                return [exc]
        else:
            self.stats.record_write_batch(len(items))
            return list(written)
        outcomes: list[_Outcome | BaseException] = []
        for item in items:
            outcomes.extend(await self._write_batch(ns, [item], wait=True))
        return outcomes

    @staticmethod
    async def _call_batch(c: Any, ns: _Namespace, items: list[_Item], wait: bool) -> list[_Outcome]:
        messages = [item.message for item in items]
        rows = await c.fetch(
            ns.sql.write_batch,
            [item.id for item in items],
            [m.stream_name for m in messages],
            [m.type for m in messages],
            [m.data_json for m in messages],
            [m.metadata_json for m in messages],
            [_jsonb_spelling(m.data_json, m.data) for m in messages],
            [_jsonb_spelling(m.metadata_json, m.metadata) for m in messages],
            [m.expected_version for m in messages],
            wait,
        )
        outcomes: list[_Outcome] = []
        for outcome, position, global_position in rows:
            if outcome == "ok":
                outcomes.append(_Written(position, global_position))
            elif outcome == "conflict":
                outcomes.append(_Conflict(position))
            elif outcome == "busy":
                outcomes.append(_BUSY)
            else:
                outcomes.append(_DUPLICATE)
        return outcomes

    async def _message_by_id(self, ns: _Namespace, message_id: str) -> Message | None:
        row = await self._run(
            "read message", lambda c: c.fetchrow(ns.sql.by_id, message_id), ns=ns, retry=True
        )
        return _to_message(row) if row is not None else None

    def _after_write(self, namespace: str, stream_name: str, result: WriteResult) -> None:
        # Publish at once (lowest latency); the NOTIFY echo of this write is then skipped.
        if self._first_sighting(namespace, result.global_position):
            self._publish(Poke(namespace, stream_name, result.position, result.global_position))

    def _first_sighting(self, namespace: str, global_position: int) -> bool:
        """True the first time a write is seen; the second sighting (echo) is consumed."""
        key = (namespace, global_position)
        if key in self._seen:
            del self._seen[key]
            return False
        self._seen[key] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
        return True

    async def _import(
        self,
        namespace: str,
        messages: Sequence[Message],
        payloads: Sequence[tuple[str, str | None]],
    ) -> None:
        ns = await self._namespace(namespace)
        data = [d for d, _ in payloads]
        metadata = [md for _, md in payloads]
        columns = (
            [m.id for m in messages],
            [m.stream_name for m in messages],
            [m.type for m in messages],
            [m.position for m in messages],
            [m.global_position for m in messages],
            data,
            metadata,
            [_jsonb_spelling(d, m.data) for d, m in zip(data, messages, strict=True)],
            [_jsonb_spelling(d, m.metadata) for d, m in zip(metadata, messages, strict=True)],
            [_naive_utc(m.time) for m in messages],
        )
        highest = max(m.global_position for m in messages)

        async def insert(c: Any) -> bool:
            try:
                async with c.transaction():
                    await c.execute(ns.sql.lock_for_import)
                    await c.execute(ns.sql.import_rows, *columns)
                    await c.execute(ns.sql.raise_sequence, highest)
            except asyncpg.UniqueViolationError:
                return False
            return True

        if not await self._run("import messages", insert, ns=ns):
            raise await self._import_collision(ns, messages)

    async def _import_collision(self, ns: _Namespace, messages: Sequence[Message]) -> EventoDBError:
        """Name the first record that collides, checking constraints in SQLite's order."""
        rows = await self._run(
            "import messages",
            lambda c: c.fetch(
                ns.sql.collisions,
                [m.global_position for m in messages],
                [m.id for m in messages],
                [m.stream_name for m in messages],
                [m.position for m in messages],
            ),
            ns=ns,
            retry=True,
        )
        global_positions = {r[0] for r in rows}
        message_ids = {r[1] for r in rows}
        stream_positions = {(r[2], r[3]) for r in rows}
        for index, m in enumerate(messages):
            canonical = ids.canonical_uuid(m.id) or m.id
            if m.global_position in global_positions:
                return PositionExists(f"global position already exists: {m.global_position}", index)
            if (m.stream_name, m.position) in stream_positions:
                return PositionExists(
                    f"stream position already exists: {m.stream_name}@{m.position}", index
                )
            if canonical in message_ids:
                return PositionExists(f"message id already exists: {m.id}", index)
            global_positions.add(m.global_position)
            stream_positions.add((m.stream_name, m.position))
            message_ids.add(canonical)
        return BackendError("Failed to import messages: a concurrent write collided; retry")

    # -- reading -----------------------------------------------------------------------------

    async def _read_stream_json(
        self,
        namespace: str,
        stream_name: str,
        position: int,
        global_position: int | None,
        batch_size: int,
    ) -> tuple[str, int]:
        ns = await self._namespace(namespace)
        limit = None if batch_size == -1 else batch_size
        if global_position is not None:
            sql, start = ns.sql.read_stream_global, global_position
        else:
            sql, start = ns.sql.read_stream, position
        row = await self._run(
            "read stream", lambda c: c.fetchrow(sql, stream_name, start, limit), ns=ns, retry=True
        )
        return row[0], row[1]

    async def _read_category_json(
        self,
        namespace: str,
        category: str,
        position: int,
        batch_size: int,
        correlation: str | None,
        consumer_group: ConsumerGroup | None,
    ) -> tuple[str, int]:
        ns = await self._namespace(namespace)
        args: list[Any] = [position, None if batch_size == -1 else batch_size]
        if category:
            args.append(category)
        if correlation is not None:
            args.append(correlation)
        if consumer_group is not None:
            args.extend((consumer_group.size, consumer_group.member))
        sql = ns.sql.read_category(
            bool(category), correlation is not None, consumer_group is not None
        )
        row = await self._run("read category", lambda c: c.fetchrow(sql, *args), ns=ns, retry=True)
        return row[0], row[1]

    async def _last_message_json(
        self, namespace: str, stream_name: str, message_type: str | None
    ) -> tuple[str, int]:
        ns = await self._namespace(namespace)
        args: tuple[str, ...]
        if message_type is None:
            sql, args = ns.sql.last, (stream_name,)
        else:
            sql, args = ns.sql.last_of_type, (stream_name, message_type)
        body: str | None = await self._run(
            "read last message", lambda c: c.fetchval(sql, *args), ns=ns, retry=True
        )
        return ("null", 0) if body is None else (body, 1)

    async def _stream_positions(
        self, namespace: str, stream_name: str, position: int, batch_size: int
    ) -> list[Located]:
        ns = await self._namespace(namespace)
        rows = await self._run(
            "read stream",
            lambda c: c.fetch(ns.sql.stream_positions, stream_name, position, batch_size),
            ns=ns,
            retry=True,
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def _category_positions(
        self,
        namespace: str,
        category: str,
        position: int,
        batch_size: int,
        consumer_group: ConsumerGroup | None,
    ) -> list[Located]:
        ns = await self._namespace(namespace)
        args: list[Any] = [position, batch_size]
        if category:
            args.append(category)
        if consumer_group is not None:
            args.extend((consumer_group.size, consumer_group.member))
        sql = ns.sql.category_positions(bool(category), consumer_group is not None)
        rows = await self._run("read category", lambda c: c.fetch(sql, *args), ns=ns, retry=True)
        return [(r[0], r[1], r[2]) for r in rows]

    async def _stream_version(self, namespace: str, stream_name: str) -> int | None:
        ns = await self._namespace(namespace)
        version = await self._run(
            "read stream version",
            lambda c: c.fetchval(ns.sql.version, stream_name),
            ns=ns,
            retry=True,
        )
        return None if version is None else int(version)

    async def _list_streams(
        self, namespace: str, prefix: str, cursor: str, limit: int
    ) -> list[StreamInfo]:
        ns = await self._namespace(namespace)
        rows = await self._run(
            "list streams",
            lambda c: c.fetch(ns.sql.list_streams, cursor, prefix, limit),
            ns=ns,
            retry=True,
        )
        return [StreamInfo(r[0], r[1], r[2].replace(tzinfo=UTC)) for r in rows]

    async def list_categories(self, namespace: str) -> list[CategoryInfo]:
        ns = await self._namespace(namespace)
        rows = await self._run(
            "list categories", lambda c: c.fetch(ns.sql.list_categories), ns=ns, retry=True
        )
        return [CategoryInfo(r[0], r[1], r[2]) for r in rows]

    # -- pokes from Postgres -----------------------------------------------------------------

    def _listener_reconnected(self, alive_at: float) -> None:
        self._publish(Gap(None, alive_at))
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.create_task(
                self._recheck_registry(), name="eventodb-pg-recheck"
            )

    # -- registry changes from Postgres ------------------------------------------------------

    def _registry_notified(self, payload: str) -> None:
        """A registry row changed (``002_registry_notify.sql``): drop what we cached, tell."""
        try:
            note = jsoncodec.loads(payload)
            kind = _CHANGE_KINDS[note["op"]]
            namespace = note["id"]
        except (jsoncodec.JSONError, KeyError, TypeError):
            log.warning("ignoring a malformed registry notification: %r", payload)
            return
        if namespace is None:  # TRUNCATE: every namespace is gone
            self._namespaces.clear()
            self._schema_owner.clear()
            self._token_hashes.clear()
        elif kind != "created":
            self._forget(namespace)
        self._namespace_changed(NamespaceChange(namespace, kind))

    async def _recheck_registry(self) -> None:
        """After a lost LISTEN connection: report namespaces deleted or re-tokened meanwhile."""
        known = dict(self._token_hashes)
        if not known:
            return
        try:
            rows = await self._run(
                "check the registry",
                lambda c: c.fetch(
                    f"SELECT id, token_hash FROM {_NAMESPACES} WHERE id = ANY($1::text[])",
                    list(known),
                ),
                retry=True,
            )
        except EventoDBError as exc:
            # Cached tokens still expire (the authenticator's TTL); log and carry on.
            log.warning("could not re-check the registry after a lost connection: %s", exc)
            return
        current = {r[0]: r[1] for r in rows}
        for namespace, token_hash in known.items():
            now = current.get(namespace)
            if now == token_hash:
                continue
            self._forget(namespace)
            self._namespace_changed(
                NamespaceChange(namespace, "deleted" if now is None else "updated")
            )

    async def _deliver(self) -> None:
        """Turn NOTIFY payloads into pokes, in arrival order."""
        while True:
            payload = await self._inbox.get()
            try:
                await self._poke_from(payload)
            except EventoDBError as exc:
                log.warning("could not resolve a notification (%s); announcing a gap", exc)
                self._publish(Gap(None))
            except Exception:
                log.exception("delivering a notification failed")

    async def _poke_from(self, payload: str) -> None:
        """Publish the pokes of one NOTIFY: ``write_message``'s (one write, with its stream
        name unless too long) or ``write_messages``' (a batch: global positions only)."""
        note = jsoncodec.loads(payload)
        schema = note["s"]
        namespace = self._schema_owner.get(schema)
        if namespace is None:
            namespace = await self._run(
                "resolve namespace",
                lambda c: c.fetchval(
                    f"SELECT id FROM {_NAMESPACES} WHERE schema_name = $1", schema
                ),
                retry=True,
            )
            if namespace is None:
                return
            self._remember(namespace, schema)
        written = note["g"]
        if isinstance(written, int):  # write_message: one write
            entries = [(note.get("n"), int(note["p"]), written)]
        elif note.get("n") is not None:  # write_messages: a batch, names included
            entries = list(zip(note["n"], note["p"], written, strict=True))
        else:  # a batch whose names did not fit in the payload
            entries = [(None, 0, g) for g in written]
        missing: list[int] = []
        for stream, position, global_position in entries:
            if not self._first_sighting(namespace, global_position):
                continue  # our own write: published already
            if stream is None:
                missing.append(global_position)
            else:
                self._publish(Poke(namespace, stream, position, global_position))
        if not missing:
            return
        ns = await self._namespace(namespace)
        rows = await self._run(
            "resolve pokes", lambda c: c.fetch(ns.sql.written, missing), ns=ns, retry=True
        )
        for stream, position, global_position in rows:
            self._publish(Poke(namespace, stream, position, global_position))
