"""The store interface every backend implements, and the records it speaks in.

Public methods validate their arguments (through :mod:`eventodb.core.validation`, so both
backends refuse the same inputs with the same messages) and then call the backend's
``_``-prefixed primitive. Backends translate driver errors into :mod:`eventodb.core.errors`
exceptions at their boundary; nothing else escapes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self

from eventodb.core import ids, jsoncodec, validation
from eventodb.core.errors import (
    EventoDBError,
    InvalidArgument,
    NamespaceNotFound,
    VersionConflict,
)
from eventodb.core.stats import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram
from eventodb.core.timefmt import parse_time

DEFAULT_BATCH_SIZE = 1000

HEALTH_TIMEOUT = 2.0
"""Seconds :meth:`Store.check_health` waits for the database before calling it down."""

log = logging.getLogger("eventodb.store")


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message. ``time`` is aware UTC with microsecond precision on every backend."""

    id: str
    stream_name: str
    type: str
    position: int
    global_position: int
    data: dict[str, Any]
    metadata: dict[str, Any] | None
    time: datetime

    @classmethod
    def from_stream_json(cls, stream_name: str, element: list[Any]) -> Message:
        """From one element of a ``stream.get`` response (the stream name is not in it)."""
        id, type, position, global_position, data, metadata, time = element
        return cls(
            id, stream_name, type, position, global_position, data, metadata, parse_time(time)
        )

    @classmethod
    def from_category_json(cls, element: list[Any]) -> Message:
        """From one element of a ``category.get`` response."""
        id, stream_name, type, position, global_position, data, metadata, time = element
        return cls(
            id, stream_name, type, position, global_position, data, metadata, parse_time(time)
        )


def check_import(message: Message, max_message_bytes: int) -> tuple[str, str | None]:
    """An imported message's rules: those of a write (name, type, payload), its positions, a
    canonical id; checked once for both the import endpoint (:meth:`Store.import_groups`) and
    :meth:`Store.import_messages`.

    Returns:
        The JSON text of its data and of its metadata, as
        :func:`~eventodb.core.validation.encode_payload` gives it.

    Raises:
        InvalidArgument: the first rule it breaks.
    """
    validation.check_imported_positions(message.position, message.global_position)
    validation.check_stream_name(message.stream_name, "stream")
    validation.check_message_type(message.type)
    payload = validation.encode_payload(message.data, message.metadata, max_message_bytes)
    if ids.canonical_uuid(message.id) != message.id:
        raise InvalidArgument("id must be a canonical lowercase UUID")
    return payload


@dataclass(frozen=True, slots=True)
class ImportGroup:
    """Records imported all or nothing, already checked: ``payloads`` holds what
    :func:`check_import` returned for each message."""

    messages: Sequence[Message]
    payloads: Sequence[tuple[str, str | None]]


class ImportStopped(Exception):
    """A group of :meth:`Store.import_groups` failed: the groups before it are committed, it
    and the groups after it are not.

    Args:
        committed: how many groups were committed (the index of the failing one).
        error: why the group failed (:class:`~eventodb.core.errors.PositionExists` names the
            record within it).
    """

    def __init__(self, committed: int, error: EventoDBError) -> None:
        super().__init__(error.message)
        self.committed = committed
        self.error = error


Located = tuple[str, int, int]
"""Where a message is: ``(stream name, position, global position)``."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A validated write request, with its JSON already serialised once for the backend."""

    stream_name: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] | None
    data_json: str
    metadata_json: str | None
    id: str | None
    expected_version: int | None

    def same_content(self, existing: Message) -> bool:
        """Whether ``existing`` (found under the same id) makes this write an idempotent retry."""
        return (
            existing.stream_name == self.stream_name
            and existing.type == self.type
            and existing.data == self.data
            and existing.metadata == self.metadata
        )


@dataclass(frozen=True, slots=True)
class WriteResult:
    position: int
    global_position: int
    duplicate: bool = False
    """True when an identical message with the same id already existed: nothing was written."""


@dataclass(frozen=True, slots=True)
class ConsumerGroup:
    member: int
    size: int


@dataclass(frozen=True, slots=True)
class NamespaceRecord:
    id: str
    token_hash: str
    description: str
    created_at: int
    """Unix seconds (UTC), as upstream stores it."""


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    message_count: int
    stream_count: int
    last_activity: datetime | None


@dataclass(frozen=True, slots=True)
class Head:
    """Where a namespace's global order stands: ``ns.head`` (docs/API.md)."""

    global_position: int
    """The highest global position such that every message at or below it is committed and
    no other can still appear there (0: none yet)."""
    settled: bool
    """``False`` when writes that may hold lower positions were still in flight when the
    server stopped waiting for them."""


HEAD_WAIT_SECONDS = 5.0
"""How long :meth:`Store.settled_head` waits for writes in flight to finish."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream: str
    version: int
    last_activity: datetime


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    category: str
    stream_count: int
    message_count: int


@dataclass(frozen=True, slots=True)
class Poke:
    """A committed write, as subscribers learn of it."""

    namespace: str
    stream: str
    position: int
    global_position: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Pokes may have been missed (e.g. a LISTEN connection was lost and re-established).

    Subscribers should re-read from the database from their last known position.
    ``namespace`` is ``None`` when every namespace is affected.
    """

    namespace: str | None = None
    alive_at: float | None = None
    """Event-loop time up to which notifications are known to have arrived (``None``: the
    store cannot tell). Pokes the store publishes for its own writes say nothing about
    writes of other processes, so only the notification path itself can date a gap."""


Listener = Callable[[Poke | Gap], None]
"""Called on the event loop for every committed write the store learns of, or for a gap."""

Progress = Callable[[str, int, int], None]
"""``(namespace, done, total)``: rows a long migration step of a namespace has done so far."""


@dataclass(frozen=True, slots=True)
class NamespaceChange:
    """A namespace was created, deleted or given another token by *another* process.

    Caches of tokens and live subscriptions must not outlive a revocation: a store that shares
    its registry with other processes reports their changes (Postgres: a trigger on the registry
    table sends a notification). Changes made through this process are not reported; the API
    acts on them itself.
    """

    namespace: str | None
    """``None``: every namespace (the registry was emptied)."""
    kind: Literal["created", "deleted", "updated"]
    """``updated``: its token hash was replaced."""


NamespaceListener = Callable[[NamespaceChange], None]


OTHER_NAMESPACES = "/other"
"""The key under which :class:`StoreStats` sums namespaces past its cap (no namespace id can
contain ``/``, so it never collides with a real one)."""


class StoreStats:
    """Counters a store keeps about its work, for monitoring; plain numbers, never reset.

    The store only records; whoever exposes metrics reads these attributes when asked
    (``GET /metrics``, :mod:`eventodb.api.metrics`). Per-namespace counts are capped at
    ``max_namespaces`` keys, the first ones seen; later namespaces are summed under
    :data:`OTHER_NAMESPACES`, so a server with many tenants keeps a bounded number of series.
    Record methods run on the event loop, except :meth:`record_write_batch`, which may run on a
    writer thread.
    """

    def __init__(self, max_namespaces: int = 100) -> None:
        self.max_namespaces = max_namespaces
        self.writes: dict[str, int] = {}
        """Messages written per namespace (idempotent retries not counted)."""
        self.messages_read: dict[str, int] = {}
        """Messages returned by reads per namespace (subscription replays included)."""
        self.version_conflicts = 0
        """Writes refused because the stream was not at the expected version."""
        self.errors = 0
        """Operations that failed in the database (``BackendError``)."""
        self.messages_imported = 0
        self.write_batches = Histogram(SIZE_BUCKETS)
        """Writes committed per transaction (group commit batch sizes)."""
        self.read_batches = Histogram(SIZE_BUCKETS)
        """Reads answered per statement (Postgres batches concurrent reads)."""
        self.pool_waits = Histogram(LATENCY_BUCKETS)
        """Seconds spent waiting for a pooled connection (backends with a pool)."""

    def _key(self, counts: dict[str, int], namespace: str) -> str:
        if namespace in counts or len(counts) < self.max_namespaces:
            return namespace
        return OTHER_NAMESPACES

    def record_write(self, namespace: str) -> None:
        counts = self.writes
        try:
            counts[namespace] += 1
        except KeyError:
            key = self._key(counts, namespace)
            counts[key] = counts.get(key, 0) + 1

    def record_read(self, namespace: str, count: int) -> None:
        counts = self.messages_read
        try:
            counts[namespace] += count
        except KeyError:
            key = self._key(counts, namespace)
            counts[key] = counts.get(key, 0) + count

    def record_write_batch(self, size: int) -> None:
        """One transaction committed ``size`` writes together (thread-safe)."""
        self.write_batches.observe(size)

    def record_read_batch(self, size: int) -> None:
        """One statement answered ``size`` reads together."""
        self.read_batches.observe(size)

    def record_pool_wait(self, seconds: float) -> None:
        self.pool_waits.observe(seconds)

    def record_error(self) -> None:
        self.errors += 1


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """Connections of a pool right now."""

    size: int
    """Open connections."""
    idle: int
    """Open connections not lent out."""
    max: int


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """The outcome of checking one part of the store (see :meth:`Store.check_health`)."""

    name: str
    ok: bool
    seconds: float
    """How long the check took."""
    error: str | None = None
    """Why the component is down: exception class and message (never a password)."""


HealthCheck = Callable[[], Awaitable[None]]


async def _probe(name: str, check: HealthCheck, within: float) -> ComponentHealth:
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(within) as deadline:
            await check()
    except Exception as exc:  # noqa: BLE001 - any failure means "down", reported with its cause
        if isinstance(exc, TimeoutError) and deadline.expired():
            error = f"TimeoutError: no answer within {within:g}s"
        else:
            error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    return ComponentHealth(name, error is None, time.perf_counter() - started, error)


class Store(abc.ABC):
    """An event store holding a registry of namespaces, each with its own message store."""

    backend: str
    """Name reported by ``sys.health``: ``sqlite``, ``memory`` or ``postgres``."""
    import_needs_the_loop = False
    """Whether an import batch's transaction takes several round trips to a database server,
    each waiting for a turn of the event loop: the import endpoint then gives the loop turns
    while it parses the next batch (elsewhere those turns only slow the parse)."""
    import_groups_per_transaction = 1
    """How many groups of :meth:`import_groups` may share one transaction. One where a
    transaction costs little more than its rows (a database server), more where each one has a
    fixed cost worth sharing (SQLite)."""

    def __init__(
        self,
        *,
        max_message_bytes: int = validation.DEFAULT_MAX_MESSAGE_BYTES,
        on_progress: Progress | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.on_progress = on_progress
        """Told how far long migration steps have come (the CLI shows a progress bar)."""
        self._listeners: list[Listener] = []
        self._namespace_listeners: list[NamespaceListener] = []
        self.migrations_applied = 0
        """How many namespace migrations :meth:`open` applied (logged at start-up)."""
        self.stats = StoreStats()
        """Counters for monitoring; the server sets ``stats.max_namespaces`` from its flags."""

    # -- lifecycle ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations to the registry and to every namespace.

        Raises:
            BackendError: the database is unreachable or a migration failed (the database is
                left as it was before that migration).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads. Idempotent."""

    async def check_health(self, within: float = HEALTH_TIMEOUT) -> list[ComponentHealth]:
        """Check for real that the store can serve requests: one result per component.

        Never raises: a component whose check fails, or does not finish ``within`` seconds, is
        reported down with the reason.
        """
        return [await _probe(name, check, within) for name, check in self._health_checks()]

    @abc.abstractmethod
    def _health_checks(self) -> list[tuple[str, HealthCheck]]:
        """``(component, check)`` pairs; a check does real work and raises when it fails."""

    def pool_usage(self) -> PoolUsage | None:
        """Connections of the backend's pool, or ``None`` for a backend without one."""
        return None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _report_progress(self, namespace: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(namespace, done, total)

    # -- change notification -----------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener`` for pokes; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def hear_other_writers(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Within (``async with``): writes made elsewhere (another server process, a SQL client)
        are published to the listeners too, from the moment it is entered.

        A subscriber enters it before its first read. Outside it a store may ignore writes it
        did not make: on Postgres, hearing them means hearing the echo of every own write too.
        A store that no one else writes to has nothing to do (this default).
        """
        return contextlib.nullcontext()

    def _publish(self, poke: Poke | Gap) -> None:
        # The write has committed by now: a failing listener must neither fail it nor starve
        # the listeners after it.
        for listener in list(self._listeners):
            try:
                listener(poke)
            except Exception:
                log.exception("poke listener failed")

    def add_namespace_listener(self, listener: NamespaceListener) -> Callable[[], None]:
        """Register ``listener`` for registry changes made by other processes; returns a
        function that unregisters it."""
        self._namespace_listeners.append(listener)
        return lambda: self._namespace_listeners.remove(listener)

    def _namespace_changed(self, change: NamespaceChange) -> None:
        for listener in list(self._namespace_listeners):
            try:
                listener(change)
            except Exception:
                log.exception("namespace listener failed")

    # -- namespaces --------------------------------------------------------------------------

    async def create_namespace(
        self, namespace: str, token_hash: str, description: str = ""
    ) -> NamespaceRecord:
        """Register a namespace and create its physical store.

        Raises:
            InvalidArgument: the id is unsafe for storage (docs/API.md, "ns.create").
            NamespaceExists: the id, or on Postgres its schema name, is taken.
        """
        validation.check_namespace_id(namespace)
        validation.check_description(description)
        return await self._create_namespace(namespace, token_hash, description)

    async def delete_namespace(self, namespace: str) -> int:
        """Drop a namespace and all its messages.

        Returns:
            The number of messages deleted.

        Raises:
            NamespaceNotFound: no such namespace.
        """
        if not validation.storable(namespace):
            raise NamespaceNotFound(namespace)
        return await self._delete_namespace(namespace)

    async def release_namespace(self, namespace: str) -> None:
        """Unregister a namespace but keep its storage and messages (``ns.release``): the
        reverse of adopting a Message DB schema (docs/MIGRATION.md, "Rolling back").

        Raises:
            NamespaceNotFound: no such namespace.
            InvalidArgument: the backend keeps no storage apart from its registry (only
                Postgres schemas can be released).
        """
        if not validation.storable(namespace):
            raise NamespaceNotFound(namespace)
        await self._release_namespace(namespace)

    async def _release_namespace(self, namespace: str) -> None:
        raise InvalidArgument(
            f"ns.release needs the Postgres backend (the {self.backend} backend keeps no"
            " namespace storage apart from its registry): use ns.delete"
        )

    async def get_namespace(self, namespace: str) -> NamespaceRecord:
        """The registry entry of ``namespace``.

        Raises:
            NamespaceNotFound: no such namespace — also, without asking the database, for an
                id no database can hold (a NUL, an unpaired surrogate): tokens and ``ns.info``
                carry arbitrary ids.
        """
        if not validation.storable(namespace):
            raise NamespaceNotFound(namespace)
        return await self._get_namespace(namespace)

    @abc.abstractmethod
    async def _get_namespace(self, namespace: str) -> NamespaceRecord: ...

    @abc.abstractmethod
    async def list_namespaces(self) -> list[NamespaceRecord]:
        """Every namespace, newest first."""

    async def namespace_exists(self, namespace: str) -> bool:
        try:
            await self.get_namespace(namespace)
        except NamespaceNotFound:
            return False
        return True

    @abc.abstractmethod
    async def set_token_hash(self, namespace: str, token_hash: str) -> None:
        """Replace the stored token hash. Raises: NamespaceNotFound."""

    @abc.abstractmethod
    async def namespace_stats(self, namespace: str) -> NamespaceStats:
        """Message count, distinct streams, newest message time. Raises: NamespaceNotFound."""

    @abc.abstractmethod
    async def settled_head(self, namespace: str, wait: float = HEAD_WAIT_SECONDS) -> Head:
        """The namespace's settled head: a copy or export that reads up to it reads a true
        prefix of the global order, which ``--resume`` can continue without missing anything.

        Where concurrent transactions draw global positions before they commit (Postgres), a
        write still in flight may commit below the highest position already visible; the head
        then waits up to ``wait`` seconds for such writes. Raises: NamespaceNotFound.
        """

    async def clear_namespace(self, namespace: str) -> int:
        """Delete every message and restart global positions at 1 (``/import?force=true``).

        Returns:
            The number of messages deleted.
        """
        return await self._clear_namespace(namespace)

    # -- writing -----------------------------------------------------------------------------

    async def write_message(
        self,
        namespace: str,
        stream_name: str,
        message_type: str,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        *,
        message_id: str | None = None,
        expected_version: int | None = None,
    ) -> WriteResult:
        """Append a message at the stream's next position (docs/API.md, "stream.write").

        Args:
            message_id: a UUID in any spelling Go accepts; ``None`` or ``""`` generates a UUIDv7.
            expected_version: the stream version the caller saw; -1 means "no messages yet".

        Returns:
            The position and global position; for an idempotent retry (same id and content as an
            existing message) the original ones, with ``duplicate`` set.

        Raises:
            InvalidArgument: bad name, type, payload or id.
            VersionConflict: the stream is not at ``expected_version``; nothing was written.
            DuplicateMessageId: the id exists with different content.
            NamespaceNotFound: no such namespace.
        """
        validation.check_stream_name(stream_name)
        validation.check_message_type(message_type)
        data_json, meta_json = validation.encode_payload(data, metadata, self.max_message_bytes)
        canonical: str | None = None
        if message_id:
            canonical = ids.canonical_uuid(message_id)
            if canonical is None:
                raise InvalidArgument("options.id must be a UUID")
        if expected_version is not None:
            validation.check_int64(expected_version, "options.expectedVersion")
        new = NewMessage(
            stream_name,
            message_type,
            data,
            metadata,
            data_json,
            meta_json,
            canonical,
            expected_version,
        )
        try:
            result = await self._write(namespace, new)
        except VersionConflict:
            self.stats.version_conflicts += 1
            raise
        if not result.duplicate:
            self.stats.record_write(namespace)
            self._after_write(namespace, stream_name, result)
        return result

    def _after_write(self, namespace: str, stream_name: str, result: WriteResult) -> None:
        """Tell listeners. Backends with a database-side notification override this."""
        self._publish(Poke(namespace, stream_name, result.position, result.global_position))

    async def import_messages(self, namespace: str, messages: Sequence[Message]) -> None:
        """Insert messages with their given positions, ids and times, all or nothing.

        Global positions are preserved; afterwards new writes get global positions above every
        existing one. Imports publish no pokes.

        Raises:
            InvalidArgument: a record breaks a write rule (name, type, payload, id) or its
                positions are out of range (``pos`` < 0, ``gpos`` < 1, either above
                :data:`~eventodb.core.validation.MAX_IMPORTED_POSITION`).
            PositionExists: a record collides with an existing global position, id or stream
                position (``index`` names it); nothing of the batch was written.
            NamespaceNotFound: no such namespace.
        """
        payloads: list[tuple[str, str | None]] = []
        for index, m in enumerate(messages):
            try:
                payloads.append(check_import(m, self.max_message_bytes))
            except InvalidArgument as exc:
                raise InvalidArgument(f"record {index}: {exc.message}") from None
        if messages:
            await self._import(namespace, messages, payloads)
            self.stats.messages_imported += len(messages)

    async def import_groups(self, namespace: str, groups: Sequence[ImportGroup]) -> None:
        """Import groups of checked records in order, each all or nothing, up to the first one
        that fails; the import endpoint's groups are its batches of 1,000 records. A backend
        may commit several groups in one transaction (:attr:`import_groups_per_transaction`);
        what a failure leaves committed is the same either way.

        Raises:
            ImportStopped: a group failed (``committed`` says how many went in before it).
        """
        try:
            await self._import_groups(namespace, groups)
        except ImportStopped as exc:
            self.stats.messages_imported += sum(len(g.messages) for g in groups[: exc.committed])
            raise
        except EventoDBError as exc:  # before any group (no such namespace, say)
            raise ImportStopped(0, exc) from exc
        self.stats.messages_imported += sum(len(g.messages) for g in groups)

    async def _import_groups(self, namespace: str, groups: Sequence[ImportGroup]) -> None:
        """Each group in a transaction of its own; backends that share one override this."""
        for index, group in enumerate(groups):
            try:
                await self._import(namespace, group.messages, group.payloads)
            except EventoDBError as exc:
                raise ImportStopped(index, exc) from exc

    # -- reading -----------------------------------------------------------------------------
    #
    # Reads return the JSON text of the RPC response, built by the database from text stored
    # when each message was written: the server copies it into the HTTP response without
    # decoding a message. The ``get_*`` methods decode it for Python callers.

    async def read_stream_json(
        self,
        namespace: str,
        stream_name: str,
        *,
        position: int = 0,
        global_position: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> str:
        """Messages of one stream from ``position`` (or ``global_position``), by position.

        Args:
            batch_size: at most this many; -1 unlimited, 0 none.

        Returns:
            The JSON array of ``stream.get``: ``[id, type, position, global position, data,
            metadata, time]`` per message (docs/API.md).

        Raises:
            InvalidArgument: bad name or batch size.
            NamespaceNotFound: no such namespace.
        """
        validation.check_stream_name(stream_name)
        validation.check_batch_size(batch_size)
        validation.check_int64(position, "options.position")
        if global_position is not None:
            validation.check_int64(global_position, "options.globalPosition")
        if batch_size == 0:
            await self.get_namespace(namespace)
            return "[]"
        body, count = await self._read_stream_json(
            namespace, stream_name, position, global_position, batch_size
        )
        self.stats.record_read(namespace, count)
        return body

    async def read_category_json(
        self,
        namespace: str,
        category: str,
        *,
        position: int = 1,
        batch_size: int = DEFAULT_BATCH_SIZE,
        correlation: str | None = None,
        consumer_group: ConsumerGroup | None = None,
    ) -> str:
        """Messages of a category (``""`` = the whole namespace) from global ``position``.

        Filters: ``correlation`` keeps messages whose ``metadata.correlationStreamName`` has
        that category; ``consumer_group`` keeps streams owned by the member (the hash of the
        stream's cardinal id, docs/API.md). The batch limit applies after the filters.

        Returns:
            The JSON array of ``category.get``: ``[id, stream name, type, position, global
            position, data, metadata, time]`` per message, by global position.

        Raises:
            InvalidArgument: bad category, correlation, group or batch size.
            NamespaceNotFound: no such namespace.
        """
        validation.check_text(category, "categoryName")
        validation.check_batch_size(batch_size)
        validation.check_int64(position, "options.position")
        if correlation is not None:
            validation.check_text(correlation, "options.correlation")
            if correlation == "":
                correlation = None
        if consumer_group is not None:
            validation.check_consumer_group(consumer_group.member, consumer_group.size)
        if batch_size == 0:
            await self.get_namespace(namespace)
            return "[]"
        body, count = await self._read_category_json(
            namespace, category, position, batch_size, correlation, consumer_group
        )
        self.stats.record_read(namespace, count)
        return body

    async def read_last_json(
        self, namespace: str, stream_name: str, message_type: str | None = None
    ) -> str:
        """The message with the highest position, optionally among those of one type.

        An empty ``message_type`` means no filter.

        Returns:
            The JSON of ``stream.last``: one ``stream.get`` element, or ``null``.
        """
        validation.check_stream_name(stream_name)
        if message_type is not None:
            validation.check_text(message_type, "options.type")
        body, count = await self._last_message_json(namespace, stream_name, message_type or None)
        self.stats.record_read(namespace, count)
        return body

    async def get_stream_messages(
        self,
        namespace: str,
        stream_name: str,
        *,
        position: int = 0,
        global_position: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[Message]:
        """:meth:`read_stream_json`, decoded."""
        body = await self.read_stream_json(
            namespace,
            stream_name,
            position=position,
            global_position=global_position,
            batch_size=batch_size,
        )
        return [Message.from_stream_json(stream_name, e) for e in jsoncodec.loads(body)]

    async def get_category_messages(
        self,
        namespace: str,
        category: str,
        *,
        position: int = 1,
        batch_size: int = DEFAULT_BATCH_SIZE,
        correlation: str | None = None,
        consumer_group: ConsumerGroup | None = None,
    ) -> list[Message]:
        """:meth:`read_category_json`, decoded."""
        body = await self.read_category_json(
            namespace,
            category,
            position=position,
            batch_size=batch_size,
            correlation=correlation,
            consumer_group=consumer_group,
        )
        return [Message.from_category_json(e) for e in jsoncodec.loads(body)]

    async def get_last_stream_message(
        self, namespace: str, stream_name: str, message_type: str | None = None
    ) -> Message | None:
        """:meth:`read_last_json`, decoded."""
        element = jsoncodec.loads(await self.read_last_json(namespace, stream_name, message_type))
        return None if element is None else Message.from_stream_json(stream_name, element)

    async def stream_positions(
        self, namespace: str, stream_name: str, *, position: int, batch_size: int
    ) -> list[Located]:
        """Where the messages of :meth:`read_stream_json` are, without their content.

        For readers that only need to know that messages exist (live subscriptions replaying
        from the database), so that nothing is rendered or decoded.
        """
        validation.check_stream_name(stream_name)
        return await self._stream_positions(namespace, stream_name, position, batch_size)

    async def category_positions(
        self,
        namespace: str,
        category: str,
        *,
        position: int,
        batch_size: int,
        consumer_group: ConsumerGroup | None = None,
    ) -> list[Located]:
        """Where the messages of :meth:`read_category_json` are, without their content."""
        validation.check_text(category, "categoryName")
        return await self._category_positions(
            namespace, category, position, batch_size, consumer_group
        )

    async def stream_version(self, namespace: str, stream_name: str) -> int | None:
        """Position of the stream's last message; ``None`` for a stream with no messages."""
        validation.check_stream_name(stream_name)
        return await self._stream_version(namespace, stream_name)

    async def list_streams(
        self, namespace: str, *, prefix: str = "", cursor: str = "", limit: int = 100
    ) -> list[StreamInfo]:
        """Streams whose name starts with ``prefix`` (literally) and sorts after ``cursor``.

        Names are compared and sorted by code point on every backend.
        """
        validation.check_text(prefix, "prefix")
        validation.check_text(cursor, "cursor")
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self._list_streams(namespace, prefix, cursor, limit)

    @abc.abstractmethod
    async def list_categories(self, namespace: str) -> list[CategoryInfo]:
        """Categories with their distinct stream and message counts, sorted by code point."""

    # -- backend primitives ------------------------------------------------------------------

    @abc.abstractmethod
    async def _create_namespace(
        self, namespace: str, token_hash: str, description: str
    ) -> NamespaceRecord: ...

    @abc.abstractmethod
    async def _delete_namespace(self, namespace: str) -> int: ...

    @abc.abstractmethod
    async def _clear_namespace(self, namespace: str) -> int: ...

    @abc.abstractmethod
    async def _write(self, namespace: str, message: NewMessage) -> WriteResult: ...

    @abc.abstractmethod
    async def _import(
        self,
        namespace: str,
        messages: Sequence[Message],
        payloads: Sequence[tuple[str, str | None]],
    ) -> None:
        """Insert ``messages``; ``payloads`` holds the JSON text of each one's data and
        metadata (serialised once, by the validation)."""

    @abc.abstractmethod
    async def _read_stream_json(
        self,
        namespace: str,
        stream_name: str,
        position: int,
        global_position: int | None,
        batch_size: int,
    ) -> tuple[str, int]: ...

    @abc.abstractmethod
    async def _read_category_json(
        self,
        namespace: str,
        category: str,
        position: int,
        batch_size: int,
        correlation: str | None,
        consumer_group: ConsumerGroup | None,
    ) -> tuple[str, int]: ...

    @abc.abstractmethod
    async def _last_message_json(
        self, namespace: str, stream_name: str, message_type: str | None
    ) -> tuple[str, int]: ...

    @abc.abstractmethod
    async def _stream_positions(
        self, namespace: str, stream_name: str, position: int, batch_size: int
    ) -> list[Located]: ...

    @abc.abstractmethod
    async def _category_positions(
        self,
        namespace: str,
        category: str,
        position: int,
        batch_size: int,
        consumer_group: ConsumerGroup | None,
    ) -> list[Located]: ...

    @abc.abstractmethod
    async def _stream_version(self, namespace: str, stream_name: str) -> int | None: ...

    @abc.abstractmethod
    async def _list_streams(
        self, namespace: str, prefix: str, cursor: str, limit: int
    ) -> list[StreamInfo]: ...
