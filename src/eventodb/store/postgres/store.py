"""Postgres backend: a registry schema plus one Message-DB-compatible schema per namespace.

Each namespace is a schema ``eventodb_<id>`` holding a ``messages`` table and Message DB's SQL
surface (migrations under ``migrations/postgres/namespace``), so Message DB tooling works when
pointed at it with ``search_path``. The server writes through the schema's ``write_messages`` —
so it takes the same advisory lock as ``write_message`` called by any SQL client or other server
process — and reads with its own SQL (:mod:`~eventodb.store.postgres.statements`), which has
the RPC semantics of docs/API.md and matches :class:`~eventodb.store.sqlite.SQLiteStore`
result for result.

Decisions, each explained where it lives:

* New namespace tables use Message DB's column order; upstream-created ones keep theirs, and the
  server always names its columns (``migrations/postgres/namespace/001_message_db.sql``).
* Migrations are templated: ``{{schema}}`` becomes the quoted schema identifier (names are only
  ever ``[A-Za-z0-9_]``; anything else is refused before quoting,
  :func:`~eventodb.store.postgres.statements.render`); the runner is
  :mod:`~eventodb.store.postgres.migrate`.
* The write lock is Message DB's: ``pg_advisory_xact_lock(hash_64(category))`` taken inside
  ``write_message``, shared with SQL clients and upstream servers on the same database.
* Every write is announced by a NOTIFY, and every change of the registry by a trigger; the
  relay (:mod:`~eventodb.store.postgres.notify`) turns those into pokes and
  :class:`NamespaceChange` events, so other processes' writes reach this one's subscribers and
  their revocations its caches within milliseconds. After a lost LISTEN connection the
  namespaces this process looked up are checked again.
* Concurrent writes of a namespace go to ``write_messages`` together (group commit), and
  concurrent reads of one kind as one statement (:class:`~eventodb.store.batching.Batcher`,
  docs/PERFORMANCE.md, "How reads and writes work").
* Statements run through :class:`~eventodb.store.postgres.pool.Pool`, which translates driver
  errors; a schema dropped behind our back becomes :class:`NamespaceNotFound` or a clear
  :class:`BackendError` (:meth:`PostgresStore._explain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from eventodb.core.tasks import cancel_and_wait
from eventodb.store import migrations
from eventodb.store.base import (
    HEAD_WAIT_SECONDS,
    CategoryInfo,
    ConsumerGroup,
    Head,
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
from eventodb.store.batching import Batcher
from eventodb.store.postgres import adopt, migrate, statements
from eventodb.store.postgres.jsonb import jsonb_spelling
from eventodb.store.postgres.notify import HEAR_WRITES_LINGER, NotificationRelay
from eventodb.store.postgres.pool import (
    CONNECT_TIMEOUT,
    CONNECTION_ERRORS,
    DEFAULT_MAX_POOL,
    MISSING_OBJECT_ERRORS,
    Pool,
)
from eventodb.store.postgres.statements import NamespaceSQL, schema_name

log = logging.getLogger("eventodb.store.postgres")


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


def _timestamp_text(dt: datetime) -> str:
    """``dt`` as the text of a ``timestamp without time zone``, which holds UTC wall-clock time.

    Text rather than a ``datetime``: asyncpg sends ``datetime.min`` and ``datetime.max``
    (0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z, valid times of an import) as
    ``-infinity`` and ``infinity``.
    """
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.isoformat(sep=" ")


# -- what write_messages reports for one item ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Written:
    position: int
    global_position: int


@dataclass(frozen=True, slots=True)
class _Conflict:
    actual: int
    """The stream's version: not the one expected."""


@dataclass(frozen=True, slots=True)
class _Duplicate:
    """The id exists already: an idempotent retry, or a clash (the caller finds out which)."""


@dataclass(frozen=True, slots=True)
class _Busy:
    """Another transaction held the category's lock: not written; write it again, waiting."""


_Outcome = _Written | _Conflict | _Duplicate | _Busy


_Read = tuple[Any, ...]
"""The parameters of one read statement (texts and integers)."""
_Page = tuple[str, int]
"""A read's answer: the JSON array of its messages and how many it holds."""

BATCHED_READ_LIMIT = 1000
"""Reads of at most this many messages are batched; a longer one (or an unlimited one) goes
alone, so that it neither makes the batch that holds it slow nor waits behind one."""
MAX_READ_BATCH = 64
"""Most reads in one statement."""


@dataclass(frozen=True, slots=True)
class _Item:
    """One write in a batch: the validated message and the id it is written with."""

    message: NewMessage
    id: str


_ReadBatch = Callable[
    ["_NamespaceSchema", str, str, str, list[_Read]], Awaitable[list[_Page | BaseException]]
]


class _NamespaceSchema:
    """What the store keeps per namespace: its schema, statements, and the batchers of its
    writes and of its reads (one per kind of read that is batched)."""

    __slots__ = ("_read_batch", "id", "reads", "schema", "sql", "writes")

    def __init__(
        self,
        namespace: str,
        schema: str,
        write_batch: Callable[
            [_NamespaceSchema, list[_Item]], Awaitable[list[_Outcome | BaseException]]
        ],
        read_batch: _ReadBatch,
    ) -> None:
        self.id = namespace
        self.schema = schema
        self.sql = NamespaceSQL(schema)
        self.writes: Batcher[_Item, _Outcome] = Batcher(lambda items: write_batch(self, items))
        self._read_batch = read_batch
        self.reads: dict[str, Batcher[_Read, _Page]] = {}
        """The batcher of each kind of read used so far, by its lone statement."""

    def reads_of(self, verb: str, one: str, many: str) -> Batcher[_Read, _Page]:
        """The batcher of reads by statement ``one``, ``many`` when several go together."""
        batcher = self.reads.get(one)
        if batcher is None:
            batcher = self.reads[one] = Batcher(
                lambda reads: self._read_batch(self, verb, one, many, reads),
                max_batch=MAX_READ_BATCH,
            )
        return batcher


HEAD_FIRST_POLL_SECONDS = 0.002
HEAD_LAST_POLL_SECONDS = 0.1
"""How often :meth:`PostgresStore.settled_head` looks whether the writes it waits for ended:
soon, then less and less often (each look reads every lock of the cluster)."""


class PostgresStore(Store):
    """Namespaces as schemas of one Postgres database.

    Args:
        dsn: ``postgresql://user:password@host:port/database`` (or libpq ``key=value``).
        min_pool, max_pool: connections kept open / at most open.
        migrations_root: alternative migration files (tests).
        listen_check_interval: seconds between liveness checks of the idle LISTEN connection.
        hear_writes_linger: seconds the channel of every write stays listened to after the last
            :meth:`hear_other_writers` ended.
    """

    backend = "postgres"
    import_needs_the_loop = True  # BEGIN, LOCK, INSERT, setval, COMMIT

    def __init__(
        self,
        dsn: str,
        *,
        min_pool: int = 2,
        max_pool: int = DEFAULT_MAX_POOL,
        connect_timeout: float = CONNECT_TIMEOUT,
        migrations_root: Path | None = None,
        listen_check_interval: float = 10.0,
        hear_writes_linger: float = HEAR_WRITES_LINGER,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dsn = dsn
        self._registry_migrations = migrations.load("postgres", "registry", migrations_root)
        self._namespace_migrations = migrations.load("postgres", "namespace", migrations_root)
        self._pool = Pool(
            dsn,
            min_size=min_pool,
            max_size=max_pool,
            connect_timeout=connect_timeout,
            stats=self.stats,
            explain=self._explain,
        )
        self._relay = NotificationRelay(
            self._pool.connect_listener,
            publish=self._publish,
            namespace_of_schema=self._namespace_of_schema,
            locate=self._locate,
            registry_changed=self._registry_changed,
            reconnected=self._listener_reconnected,
            check_interval=listen_check_interval,
            linger=hear_writes_linger,
        )
        self._namespaces: dict[str, _NamespaceSchema] = {}
        self._schema_owner: dict[str, str] = {}
        self._token_hashes: dict[str, str] = {}
        """Token hash of each namespace as last read here: re-checked after a lost LISTEN
        connection, when registry notifications may have been missed."""
        self._recheck: asyncio.Task[None] | None = None
        self.missing_schemas: list[str] = []
        """Namespaces whose schema was found missing at :meth:`open` (left alone, reported)."""

    # -- lifecycle ---------------------------------------------------------------------------

    def pool_usage(self) -> PoolUsage | None:
        return self._pool.usage()

    def _health_checks(self) -> list[tuple[str, HealthCheck]]:
        return [("database", self._check_database), ("notifications", self._check_listener)]

    async def _check_database(self) -> None:
        """A pooled connection answers a query on the registry."""
        await self._pool.run(
            "check the database", lambda c: c.fetchval(statements.COUNT_NAMESPACES)
        )

    async def _check_listener(self) -> None:
        """The LISTEN connection that brings other processes' writes is up."""
        if self.listen_backend_pid is None:
            raise BackendError("the LISTEN connection is down (reconnecting)")

    @property
    def listen_backend_pid(self) -> int | None:
        """Server pid of the LISTEN connection (tests terminate it on purpose)."""
        return self._relay.backend_pid

    def hear_other_writers(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._relay.hear_writes()

    @property
    def hearing_other_writers(self) -> bool:
        """Whether the channel of every write is listened to now (or about to be)."""
        return self._relay.hearing_writes

    async def open(self) -> None:
        if self._pool.is_open:
            return
        await self._pool.open()
        try:
            await self._prepare_database()
            try:
                await self._relay.start()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                where = statements.redact(self.dsn)
                raise BackendError(f"Failed to listen on Postgres at {where}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await cancel_and_wait(self._recheck)
        self._recheck = None
        await self._relay.stop()
        await self._pool.close()
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

        await self._pool.run("open the database", check_server)
        await self._pool.run(
            "migrate the registry",
            lambda c: migrate.migrate_registry(c, self._registry_migrations),
        )
        for namespace, schema in await self._registry_rows():

            async def migrate_one(c: Any, n: str = namespace, s: str = schema) -> int:
                return await self._migrate_namespace(c, n, s)

            self.migrations_applied += await self._pool.run("migrate namespace", migrate_one)

    async def _migrate_namespace(self, c: Any, namespace: str, schema: str) -> int:
        def report(done: int, total: int) -> None:
            self._report_progress(namespace, done, total)

        try:
            return await migrate.migrate_namespace(c, self._namespace_migrations, schema, report)
        except migrate.SchemaMissing as missing:
            # Dropped behind our back: leave it; requests for it get a clear error.
            log.error("namespace %r: schema %s does not exist", namespace, schema)
            self.missing_schemas.append(namespace)
            return missing.applied

    # -- failures ----------------------------------------------------------------------------

    async def _explain(self, namespace: str, verb: str, exc: BaseException) -> EventoDBError | None:
        """Why a statement on ``namespace`` failed, when its namespace is the reason."""
        if isinstance(exc, MISSING_OBJECT_ERRORS):
            return await self._missing_storage(namespace, verb, exc)
        if await self._deleted_meanwhile(namespace):
            # e.g. "cache lookup failed for function": its schema was being dropped.
            return NamespaceNotFound(namespace)
        return None

    async def _missing_storage(
        self, namespace: str, verb: str, exc: BaseException
    ) -> EventoDBError:
        """A statement met no schema/table/function: deleted namespace, or damaged storage."""
        self._forget(namespace)
        schema = await self._pool.run(
            "get namespace",
            lambda c: c.fetchval(statements.SCHEMA_OF, namespace),
            retry=True,
        )
        if schema is None:
            return NamespaceNotFound(namespace)
        return BackendError(
            f"Failed to {verb}: the storage of namespace '{namespace}' is missing or damaged"
            f" (schema {schema}: {exc})"
        )

    async def _deleted_meanwhile(self, namespace: str) -> bool:
        """After a failed statement: whether the namespace is gone from the registry (then it
        was deleted while the statement ran, and the failure just says so)."""
        try:
            schema = await self._pool.run(
                "get namespace",
                lambda c: c.fetchval(statements.SCHEMA_OF, namespace),
                retry=True,
            )
        except BackendError:
            return False  # cannot tell: report the original failure
        if schema is None:
            self._forget(namespace)
            return True
        return False

    # -- namespaces known here ---------------------------------------------------------------

    def _forget(self, namespace: str) -> None:
        self._token_hashes.pop(namespace, None)
        ns = self._namespaces.pop(namespace, None)
        if ns is not None:
            self._schema_owner.pop(ns.schema, None)
        self._relay.forget(namespace)

    def _remember(self, namespace: str, schema: str) -> _NamespaceSchema:
        ns = self._namespaces.get(namespace)
        if ns is None or ns.schema != schema:
            ns = _NamespaceSchema(namespace, schema, self._write_batch, self._read_together)
            self._namespaces[namespace] = ns
            self._schema_owner[schema] = namespace
        return ns

    async def _namespace(self, namespace: str) -> _NamespaceSchema:
        ns = self._namespaces.get(namespace)
        if ns is not None:
            return ns
        schema = await self._pool.run(
            "get namespace",
            lambda c: c.fetchval(statements.SCHEMA_OF, namespace),
            retry=True,
        )
        if schema is None:
            raise NamespaceNotFound(namespace)
        return self._remember(namespace, schema)

    # -- registry ----------------------------------------------------------------------------

    async def _registry_rows(self) -> list[tuple[str, str]]:
        rows = await self._pool.run(
            "list namespaces", lambda c: c.fetch(statements.SCHEMAS), retry=True
        )
        return [(r[0], r[1]) for r in rows]

    async def _get_namespace(self, namespace: str) -> NamespaceRecord:
        row = await self._pool.run(
            "get namespace",
            lambda c: c.fetchrow(statements.GET_NAMESPACE, namespace),
            retry=True,
        )
        if row is None:
            self._forget(namespace)
            raise NamespaceNotFound(namespace)
        self._remember(namespace, row[4])
        self._token_hashes[namespace] = row[1]
        return NamespaceRecord(row[0], row[1], row[2] or "", row[3])

    async def list_namespaces(self) -> list[NamespaceRecord]:
        rows = await self._pool.run(
            "list namespaces", lambda c: c.fetch(statements.LIST_NAMESPACES), retry=True
        )
        return [NamespaceRecord(r[0], r[1], r[2] or "", r[3]) for r in rows]

    async def set_token_hash(self, namespace: str, token_hash: str) -> None:
        async def update(c: Any) -> str:
            try:
                return str(await c.execute(statements.SET_TOKEN_HASH, token_hash, namespace))
            except asyncpg.UniqueViolationError:
                raise BackendError("Failed to update token: token already in use") from None

        if await self._pool.run("update token", update) == "UPDATE 0":
            raise NamespaceNotFound(namespace)
        self._token_hashes[namespace] = token_hash

    async def _create_namespace(
        self, namespace: str, token_hash: str, description: str
    ) -> NamespaceRecord:
        schema = schema_name(namespace)
        sql = NamespaceSQL(schema)
        created_at = int(time.time())

        async def create(c: Any) -> None:
            try:
                async with c.transaction():
                    if await c.fetchval(statements.NAMESPACE_OR_SCHEMA_TAKEN, namespace, schema):
                        raise NamespaceExists(namespace)
                    if await c.fetchval(statements.SCHEMA_EXISTS, schema):
                        # Its schema name is taken by something else (e.g. ``store`` would be
                        # the registry's own schema): the id is not available.
                        raise NamespaceExists(
                            namespace,
                            f"Namespace '{namespace}' cannot be created: its schema {schema}"
                            " already exists",
                        )
                    await c.execute(sql.create_schema)
                    for m in self._namespace_migrations:
                        await migrate.apply_namespace_migration(c, m, schema)
                    await c.execute(
                        statements.INSERT_NAMESPACE,
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

        await self._pool.run("create namespace", create)
        self._forget(namespace)
        self._remember(namespace, schema)
        self._token_hashes[namespace] = token_hash
        return NamespaceRecord(namespace, token_hash, description, created_at)

    async def _delete_namespace(self, namespace: str) -> int:
        async def delete(c: Any) -> int:
            async with c.transaction():
                schema = await c.fetchval(statements.LOCK_NAMESPACE, namespace)
                if schema is None:
                    raise NamespaceNotFound(namespace)
                sql = NamespaceSQL(schema)
                count = 0
                if await c.fetchval("SELECT to_regclass($1)", sql.messages) is not None:
                    # Take the table before anything else of the schema: DROP ... CASCADE would
                    # lock the sequence and functions first and deadlock with a running import
                    # (which holds the table and then advances the sequence).
                    await c.execute(sql.lock_exclusive)
                    count = int(await c.fetchval(sql.count))
                await c.execute(sql.drop_schema)
                await c.execute(statements.DELETE_NAMESPACE, namespace)
                return count

        try:
            return await self._pool.run("delete namespace", delete)
        finally:
            self._forget(namespace)

    async def _release_namespace(self, namespace: str) -> None:
        async def release(c: Any) -> str:
            return await adopt.release_on(c, namespace)

        try:
            await self._pool.run("release namespace", release)
        finally:
            self._forget(namespace)

    async def namespace_stats(self, namespace: str) -> NamespaceStats:
        ns = await self._namespace(namespace)
        row = await self._pool.run(
            "count messages", lambda c: c.fetchrow(ns.sql.stats), namespace=ns.id, retry=True
        )
        last = row[2].replace(tzinfo=UTC) if row[2] is not None else None
        return NamespaceStats(row[0], row[1], last)

    async def settled_head(self, namespace: str, wait: float = HEAD_WAIT_SECONDS) -> Head:
        """Global positions are drawn from a sequence before the write commits, so commits land
        out of order. Every position up to the last one drawn was drawn by a transaction that
        held the table's write lock while drawing; once the transactions holding it now have
        ended (listed after reading the sequence), nothing can still appear up to there. New
        writers are not held up: only the ones in flight are waited for."""
        ns = await self._namespace(namespace)
        sql = ns.sql

        async def fetch(verb: str, query: str, *args: Any) -> Any:
            return await self._pool.run(
                verb, lambda c: c.fetchrow(query, *args), namespace=ns.id, retry=True
            )

        committed, drawn, cache = await fetch("read head", sql.head_start)
        if committed > drawn or cache > 1:
            # Messages placed above the sequence without moving it (our import moves it), or a
            # sequence whose sessions draw ahead of it: the sequence no longer says where
            # writes will land.
            return Head(committed, settled=False)
        [in_flight] = await fetch("list writes in flight", sql.writers_in_flight, None)
        deadline = time.monotonic() + wait
        pause = HEAD_FIRST_POLL_SECONDS
        while in_flight and time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, HEAD_LAST_POLL_SECONDS)
            [in_flight] = await fetch("list writes in flight", sql.writers_in_flight, in_flight)
        [last] = await fetch("read head", sql.last_at_or_below, drawn)
        return Head(last, settled=not in_flight)

    async def _clear_namespace(self, namespace: str) -> int:
        ns = await self._namespace(namespace)

        async def clear(c: Any) -> int:
            async with c.transaction():
                await c.execute(ns.sql.lock_exclusive)
                count = int(await c.fetchval(ns.sql.count))
                await c.execute(ns.sql.truncate)  # RESTART IDENTITY: next global position is 1
                return count

        count = await self._pool.run("clear namespace", clear, namespace=ns.id)
        self._relay.forget(namespace)
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
        self, ns: _NamespaceSchema, items: list[_Item], *, wait: bool = False
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
            written = await self._pool.run(
                "write message", lambda c: self._call_batch(c, ns, items, wait), namespace=ns.id
            )
        except BackendError as exc:
            if len(items) == 1:
                if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                    return [_Duplicate()]  # a concurrent write with the same id won
                return [exc]
        else:
            self.stats.record_write_batch(len(items))
            return list(written)
        outcomes: list[_Outcome | BaseException] = []
        for item in items:
            outcomes.extend(await self._write_batch(ns, [item], wait=True))
        return outcomes

    @staticmethod
    async def _call_batch(
        c: Any, ns: _NamespaceSchema, items: list[_Item], wait: bool
    ) -> list[_Outcome]:
        messages = [item.message for item in items]
        rows = await c.fetch(
            ns.sql.write_batch,
            [item.id for item in items],
            [m.stream_name for m in messages],
            [m.type for m in messages],
            [m.data_json for m in messages],
            [m.metadata_json for m in messages],
            [jsonb_spelling(m.data_json, m.data) for m in messages],
            [jsonb_spelling(m.metadata_json, m.metadata) for m in messages],
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
                outcomes.append(_Busy())
            else:
                outcomes.append(_Duplicate())
        return outcomes

    async def _message_by_id(self, ns: _NamespaceSchema, message_id: str) -> Message | None:
        row = await self._pool.run(
            "read message",
            lambda c: c.fetchrow(ns.sql.by_id, message_id),
            namespace=ns.id,
            retry=True,
        )
        return _to_message(row) if row is not None else None

    def _after_write(self, namespace: str, stream_name: str, result: WriteResult) -> None:
        self._relay.own_write(Poke(namespace, stream_name, result.position, result.global_position))

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
            [jsonb_spelling(d, m.data) for d, m in zip(data, messages, strict=True)],
            [jsonb_spelling(d, m.metadata) for d, m in zip(metadata, messages, strict=True)],
            [_timestamp_text(m.time) for m in messages],
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

        if not await self._pool.run("import messages", insert, namespace=ns.id):
            raise await self._import_collision(ns, messages)

    async def _import_collision(
        self, ns: _NamespaceSchema, messages: Sequence[Message]
    ) -> EventoDBError:
        """Name the first record that collides, checking constraints in SQLite's order."""
        rows = await self._pool.run(
            "import messages",
            lambda c: c.fetch(
                ns.sql.collisions,
                [m.global_position for m in messages],
                [m.id for m in messages],
                [m.stream_name for m in messages],
                [m.position for m in messages],
            ),
            namespace=ns.id,
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
        sql = ns.sql
        if global_position is not None:
            # Not batched: a read from a global position late in a long stream may take long.
            read = (stream_name, global_position, limit)
            return await self._read_alone(ns, "read stream", sql.read_stream_global, read)
        read = (stream_name, position, limit)
        return await self._read_page(
            ns, "read stream", sql.read_stream, sql.read_streams, read, limit
        )

    async def _read_page(
        self, ns: _NamespaceSchema, verb: str, one: str, many: str, read: _Read, limit: int | None
    ) -> _Page:
        """A read of ``ns`` by statement ``one`` (parameters ``read``, at most ``limit``
        messages): together with the concurrent reads of the same statement (``many``), unless
        it may return more than :data:`BATCHED_READ_LIMIT` messages."""
        if limit is None or limit > BATCHED_READ_LIMIT:
            return await self._read_alone(ns, verb, one, read)
        return await ns.reads_of(verb, one, many).submit(read)

    async def _read_alone(self, ns: _NamespaceSchema, verb: str, sql: str, read: _Read) -> _Page:
        row = await self._pool.run(
            verb, lambda c: c.fetchrow(sql, *read), namespace=ns.id, retry=True
        )
        return row[0], row[1]

    async def _read_together(
        self, ns: _NamespaceSchema, verb: str, one: str, many: str, reads: list[_Read]
    ) -> list[_Page | BaseException]:
        """Reads of ``ns`` in one statement: ``one`` for a lone read, else ``many`` (``one``
        for each element of its parameter arrays, one row per read).

        Each read sees the database as of its batch's statement, which starts after the read's
        request arrived: what was committed before it is there, as when it runs alone.
        """
        if len(reads) == 1:
            page = await self._read_alone(ns, verb, one, reads[0])
            self.stats.record_read_batch(1)
            return [page]
        columns = [list(column) for column in zip(*reads, strict=True)]
        try:
            rows = await self._pool.run(
                verb, lambda c: c.fetch(many, *columns), namespace=ns.id, retry=True
            )
        except BackendError as exc:
            if not isinstance(exc.__cause__, asyncpg.PostgresError):
                raise  # Postgres unreachable: each read alone would only fail again, slowly
            # One read's rows may be what failed (e.g. a row another program wrote): each
            # read alone, with its own outcome.
            return [await self._read_or_error(ns, verb, one, read) for read in reads]
        self.stats.record_read_batch(len(reads))
        return [(row[0], row[1]) for row in rows]

    async def _read_or_error(
        self, ns: _NamespaceSchema, verb: str, one: str, read: _Read
    ) -> _Page | BaseException:
        try:
            return await self._read_alone(ns, verb, one, read)
        except EventoDBError as exc:
            return exc

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
        limit = None if batch_size == -1 else batch_size
        args: list[Any] = [position, limit]
        if category:
            args.append(category)
        if correlation is not None:
            args.append(correlation)
        if consumer_group is not None:
            args.extend((consumer_group.size, consumer_group.member))
        group = consumer_group is not None
        one = ns.sql.read_category(bool(category), correlation is not None, group)
        if correlation is not None:
            # Not batched: a correlation that matches little makes the read scan far.
            return await self._read_alone(ns, "read category", one, tuple(args))
        many = ns.sql.read_category_batched(bool(category), group)
        return await self._read_page(ns, "read category", one, many, tuple(args), limit)

    async def _last_message_json(
        self, namespace: str, stream_name: str, message_type: str | None
    ) -> tuple[str, int]:
        ns = await self._namespace(namespace)
        args: tuple[str, ...]
        if message_type is None:
            sql, args = ns.sql.last, (stream_name,)
        else:
            sql, args = ns.sql.last_of_type, (stream_name, message_type)
        body: str | None = await self._pool.run(
            "read last message", lambda c: c.fetchval(sql, *args), namespace=ns.id, retry=True
        )
        return ("null", 0) if body is None else (body, 1)

    async def _stream_positions(
        self, namespace: str, stream_name: str, position: int, batch_size: int
    ) -> list[Located]:
        ns = await self._namespace(namespace)
        rows = await self._pool.run(
            "read stream",
            lambda c: c.fetch(ns.sql.stream_positions, stream_name, position, batch_size),
            namespace=ns.id,
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
        rows = await self._pool.run(
            "read category", lambda c: c.fetch(sql, *args), namespace=ns.id, retry=True
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def _stream_version(self, namespace: str, stream_name: str) -> int | None:
        ns = await self._namespace(namespace)
        version = await self._pool.run(
            "read stream version",
            lambda c: c.fetchval(ns.sql.version, stream_name),
            namespace=ns.id,
            retry=True,
        )
        return None if version is None else int(version)

    async def _list_streams(
        self, namespace: str, prefix: str, cursor: str, limit: int
    ) -> list[StreamInfo]:
        ns = await self._namespace(namespace)
        rows = await self._pool.run(
            "list streams",
            lambda c: c.fetch(ns.sql.list_streams, cursor, prefix, limit),
            namespace=ns.id,
            retry=True,
        )
        return [StreamInfo(r[0], r[1], r[2].replace(tzinfo=UTC)) for r in rows]

    async def list_categories(self, namespace: str) -> list[CategoryInfo]:
        ns = await self._namespace(namespace)
        rows = await self._pool.run(
            "list categories",
            lambda c: c.fetch(ns.sql.list_categories),
            namespace=ns.id,
            retry=True,
        )
        return [CategoryInfo(r[0], r[1], r[2]) for r in rows]

    # -- what the notification relay asks and tells ------------------------------------------

    async def _namespace_of_schema(self, schema: str) -> str | None:
        namespace = self._schema_owner.get(schema)
        if namespace is None:
            namespace = await self._pool.run(
                "resolve namespace",
                lambda c: c.fetchval(statements.NAMESPACE_OF_SCHEMA, schema),
                retry=True,
            )
            if namespace is None:
                return None
            self._remember(namespace, schema)
        return namespace

    async def _locate(self, namespace: str, global_positions: list[int]) -> list[Located]:
        ns = await self._namespace(namespace)
        rows = await self._pool.run(
            "resolve pokes",
            lambda c: c.fetch(ns.sql.written, global_positions),
            namespace=ns.id,
            retry=True,
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def _registry_changed(self, change: NamespaceChange) -> None:
        """Another process changed the registry: drop what we cached, tell."""
        if change.namespace is None:  # TRUNCATE: every namespace is gone
            self._namespaces.clear()
            self._schema_owner.clear()
            self._token_hashes.clear()
        elif change.kind != "created":
            self._forget(change.namespace)
        self._namespace_changed(change)

    def _listener_reconnected(self) -> None:
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.create_task(
                self._recheck_registry(), name="eventodb-pg-recheck"
            )

    async def _recheck_registry(self) -> None:
        """After a lost LISTEN connection: report namespaces deleted or re-tokened meanwhile."""
        known = dict(self._token_hashes)
        if not known:
            return
        try:
            rows = await self._pool.run(
                "check the registry",
                lambda c: c.fetch(statements.TOKEN_HASHES, list(known)),
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
