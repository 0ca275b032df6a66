"""The notification relay: NOTIFYs from Postgres turned into pokes and registry changes.

Writes made by other server processes, or by SQL clients calling ``write_message`` directly,
reach this process only through Postgres; so do namespaces they create, delete or give a new
token. One dedicated connection per store listens on the channels wanted
(:class:`NotificationListener`); when it is lost it is re-established with backoff, and a
:class:`~eventodb.store.base.Gap` is announced so subscribers re-read, while the store re-checks
what it cached (notifications sent while nobody listened are gone).

``write_message`` sends ``NOTIFY eventodb`` with ``{"s", "g", "p", "n"}`` (schema, global
position, position, stream name — null when too long for a payload; then looked up);
``write_messages`` sends one for a batch, with lists. The store publishes the pokes of its own
writes at once (:meth:`NotificationRelay.own_write`); their echo is then skipped.

The channel ``eventodb`` is listened to only while someone needs other processes' writes (an SSE
subscriber: :meth:`NotificationRelay.hear_writes`), and for a while after the last one left:
every batch of this process's own writes would otherwise come back as a notification that this
process reads, parses and drops (about 20 µs of its CPU per batch, 5 per write at 8
connections). The registry
channel is listened to always: token changes must reach every process. (Postgres 15 still wakes
the listening backend for every notification of the database, whatever its channel.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal

import asyncpg

from eventodb.core import jsoncodec
from eventodb.core.errors import EventoDBError
from eventodb.core.tasks import cancel_and_wait
from eventodb.store.base import Gap, Located, NamespaceChange, Poke
from eventodb.store.postgres.statements import NOTIFY_CHANNEL, REGISTRY_CHANNEL

log = logging.getLogger("eventodb.store.postgres")

Connect = Callable[[], Awaitable[Any]]

_CHANGE_KINDS: dict[str, Literal["created", "deleted", "updated"]] = {
    "INSERT": "created",
    "UPDATE": "updated",
    "DELETE": "deleted",
    "TRUNCATE": "deleted",
}
_SEEN_LIMIT = 10_000
"""Own writes remembered until their echo arrives (the oldest are forgotten past this)."""
_SEEN_FOR = 10.0
"""Seconds an own write waits for its echo before it is forgotten. An echo comes within moments;
one that does not come must not be waited for long: should another process clear the namespace,
a later write there could get the same global position, and its notification would be taken
for that echo and dropped. (An echo is awaited only from a write answered while the LISTEN was
in force; it fails to come only if the LISTEN took effect between the write's commit and its
answer.)"""
LISTEN_TIMEOUT = 5.0
"""Seconds a LISTEN, an UNLISTEN or a liveness check may take before the connection is taken
for dead (a silently broken network gives no error, only silence)."""
_CONNECTION_FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What a statement on the LISTEN connection raises when the connection is of no more use."""
HEAR_WRITES_LINGER = 10.0
"""Seconds the write channel stays listened to after the last one who needed it left, so that
subscribers coming and going do not cost a LISTEN and an UNLISTEN each."""


class NotificationRelay:
    """Publishes the pokes of every write to the store's namespaces, whoever made it, and tells
    the store of registry changes made by other processes.

    Args:
        connect: opens the LISTEN connection.
        publish: the store's :meth:`~eventodb.store.base.Store._publish`.
        namespace_of_schema: the namespace a schema belongs to (``None``: none).
        locate: ``(namespace, global positions)`` → where those messages are (for
            notifications without stream names).
        registry_changed: told of a namespace created, deleted or re-tokened elsewhere.
        reconnected: told that the LISTEN connection was re-established (registry
            notifications may have been missed meanwhile).
        check_interval: seconds between liveness checks of an idle LISTEN connection.
        linger: seconds the write channel stays listened to after the last
            :meth:`hear_writes` ended.
    """

    def __init__(
        self,
        connect: Connect,
        *,
        publish: Callable[[Poke | Gap], None],
        namespace_of_schema: Callable[[str], Awaitable[str | None]],
        locate: Callable[[str, list[int]], Awaitable[list[Located]]],
        registry_changed: Callable[[NamespaceChange], None],
        reconnected: Callable[[], None],
        check_interval: float,
        linger: float = HEAR_WRITES_LINGER,
    ) -> None:
        self._connect = connect
        self._publish = publish
        self._namespace_of_schema = namespace_of_schema
        self._locate = locate
        self._registry_changed = registry_changed
        self._reconnected = reconnected
        self._check_interval = check_interval
        self._linger = linger
        self._listener: NotificationListener | None = None
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._deliverer: asyncio.Task[None] | None = None
        self._seen: OrderedDict[tuple[str, int], float] = OrderedDict()
        """Own writes whose echo is awaited, with the monotonic time each was recorded."""
        self._hearers = 0
        self._release: asyncio.TimerHandle | None = None
        self._unlistens: set[asyncio.Task[None]] = set()

    @property
    def backend_pid(self) -> int | None:
        """Server pid of the LISTEN connection while it is up (tests terminate it on purpose)."""
        return self._listener.backend_pid if self._listener is not None else None

    async def start(self) -> None:
        """Connect and LISTEN; raises the driver's error when that fails."""
        self._listener = NotificationListener(
            self._connect,
            {REGISTRY_CHANNEL: self._registry_notified},
            self._listener_reconnected,
            check_interval=self._check_interval,
        )
        await self._listener.start()
        self._deliverer = asyncio.create_task(self._deliver(), name="eventodb-pg-pokes")

    async def stop(self) -> None:
        listener, self._listener = self._listener, None  # hearers leaving now schedule nothing
        if self._release is not None:
            self._release.cancel()
            self._release = None
        for task in list(self._unlistens):
            await cancel_and_wait(task)
        await cancel_and_wait(self._deliverer)
        self._deliverer = None
        if listener is not None:
            await listener.stop()

    @property
    def hearing_writes(self) -> bool:
        """Whether other processes' writes are being listened for (or about to be)."""
        return self._listener is not None and self._listener.wants(NOTIFY_CHANNEL)

    def _echo_expected(self) -> bool:
        """Whether the notification of a write answered now will reach the relay: the LISTEN
        on its channel is in force (so it was when the write committed, but for a LISTEN that
        took effect in between) and no UNLISTEN has been decided."""
        return self._listener is not None and self._listener.listening(NOTIFY_CHANNEL)

    @contextlib.asynccontextmanager
    async def hear_writes(self) -> AsyncIterator[None]:
        """Within: every write to the store's namespaces is published, whoever made it.

        On entry the write channel is LISTENed to before this returns, so a read made inside
        and the pokes after it leave nothing out. If the LISTEN connection is down, the channel
        is listened to when it comes back, and the reconnection announces a gap as usual.
        """
        self._hearers += 1
        if self._release is not None:
            self._release.cancel()
            self._release = None
        try:
            if self._listener is not None:
                await self._listener.listen(NOTIFY_CHANNEL, self._inbox.put_nowait)
            yield
        finally:
            self._hearers -= 1
            if self._hearers == 0 and self._listener is not None:
                loop = asyncio.get_running_loop()
                self._release = loop.call_later(self._linger, self._stop_hearing)

    def _stop_hearing(self) -> None:
        self._release = None
        if self._hearers == 0 and self._listener is not None:
            task = self._listener.unlisten(NOTIFY_CHANNEL)
            self._unlistens.add(task)
            task.add_done_callback(self._unlistens.discard)
            self._seen.clear()  # from now on notifications on the channel are dropped unread

    def own_write(self, poke: Poke) -> None:
        """Publish a write of this store at once (lowest latency); its echo is skipped."""
        if not self._echo_expected():
            self._publish(poke)  # no echo will come (a duplicate poke, if one does, is harmless)
        elif self._first_sighting(poke.namespace, poke.global_position):
            self._publish(poke)

    def forget(self, namespace: str) -> None:
        """Drop what is remembered of ``namespace``'s writes (it was deleted or cleared)."""
        for key in [k for k in self._seen if k[0] == namespace]:
            del self._seen[key]

    def _first_sighting(self, namespace: str, global_position: int) -> bool:
        """True the first time a write is seen; the second sighting (echo) is consumed."""
        seen = self._seen
        key = (namespace, global_position)
        if key in seen:
            del seen[key]
            return False
        now = time.monotonic()
        seen[key] = now
        oldest, recorded = next(iter(seen.items()))  # one forgotten per write recorded at most
        if now - recorded >= _SEEN_FOR or len(seen) > _SEEN_LIMIT:
            del seen[oldest]
        return True

    def _listener_reconnected(self, alive_at: float) -> None:
        self._seen.clear()  # echoes of writes before the new LISTEN went with the old connection
        self._publish(Gap(None, alive_at))
        self._reconnected()

    def _registry_notified(self, payload: str) -> None:
        """A registry row changed (``002_registry_notify.sql``)."""
        try:
            note = jsoncodec.loads(payload)
            kind = _CHANGE_KINDS[note["op"]]
            namespace = note["id"]
        except (jsoncodec.JSONError, KeyError, TypeError):
            log.warning("ignoring a malformed registry notification: %r", payload)
            return
        self._registry_changed(NamespaceChange(namespace, kind))

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
        namespace = await self._namespace_of_schema(note["s"])
        if namespace is None:
            return
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
        for stream, position, global_position in await self._locate(namespace, missing):
            self._publish(Poke(namespace, stream, position, global_position))


class NotificationListener:
    """Keeps one connection LISTENing on the channels wanted.

    Args:
        connect: opens a new connection.
        channels: channel name → called on the event loop with each notification payload;
            more are added with :meth:`listen` and removed with :meth:`unlisten`.
        on_reconnect: called after the connection was lost and LISTEN is active again, with
            the event-loop time the connection was last known to work (notifications up to
            then arrived; later ones may be lost).
        check_interval: seconds between liveness checks of an idle connection (a silently
            dead TCP peer gives no termination event).
        statement_timeout: seconds a LISTEN, UNLISTEN or liveness check may take before the
            connection is taken for dead.
    """

    def __init__(
        self,
        connect: Connect,
        channels: Mapping[str, Callable[[str], None]],
        on_reconnect: Callable[[float], None],
        *,
        check_interval: float = 10.0,
        max_backoff: float = 2.0,
        statement_timeout: float = LISTEN_TIMEOUT,
    ) -> None:
        self._connect = connect
        self._timeout = statement_timeout
        self._wanted = dict(channels)
        self._on_reconnect = on_reconnect
        self._check_interval = check_interval
        self._max_backoff = max_backoff
        self._conn: Any = None
        self._listened: set[str] = set()
        """Channels LISTENed on ``_conn``."""
        self._using = asyncio.Lock()
        """Held while a statement runs on ``_conn`` (a connection runs one at a time)."""
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.reconnects = 0
        """How many times the connection was re-established (tests, diagnostics)."""
        self.alive_at = 0.0
        """Event-loop time the connection last proved to work (a notification or a check)."""

    @property
    def backend_pid(self) -> int | None:
        """Server process id of the LISTEN connection, while it is up."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return None
        return int(conn.get_server_pid())

    def wants(self, channel: str) -> bool:
        """Whether ``channel`` is wanted (LISTENed, or about to be)."""
        return channel in self._wanted

    def listening(self, channel: str) -> bool:
        """Whether ``channel`` is wanted and LISTENed on the connection now: its notifications
        committed from now on reach the handler, unless the connection is lost."""
        return channel in self._wanted and channel in self._listened and self._conn is not None

    async def start(self) -> None:
        """Connect and LISTEN; raises the driver's error when that fails."""
        await self._listen()
        self._task = asyncio.create_task(self._supervise(), name="eventodb-pg-listen")

    async def stop(self) -> None:
        self._stopping = True
        self._lost.set()
        await cancel_and_wait(self._task)
        self._task = None
        await self._discard()

    async def listen(self, channel: str, handler: Callable[[str], None]) -> None:
        """LISTEN on ``channel`` too; returns once it is active (or the connection is down:
        then the reconnection LISTENs on it, and announces its gap as always)."""
        self._wanted[channel] = handler
        await asyncio.shield(self._match_wanted())  # a cancelled caller leaves it consistent

    def unlisten(self, channel: str) -> asyncio.Task[None]:
        """Stop listening on ``channel``: unwanted at once (a :meth:`listen` after this call
        LISTENs again), UNLISTENed by the future returned."""
        self._wanted.pop(channel, None)
        return asyncio.create_task(self._match_wanted(), name="eventodb-pg-unlisten")

    async def _match_wanted(self) -> None:
        async with self._using:
            conn, listened = self._conn, self._listened
            if conn is None or conn.is_closed():
                return
            try:
                for channel in [c for c in self._wanted if c not in listened]:
                    await self._listen_on(conn, channel)
                    listened.add(channel)
                for channel in [c for c in listened if c not in self._wanted]:
                    await asyncio.wait_for(
                        conn.remove_listener(channel, self._notified), self._timeout
                    )
                    listened.discard(channel)
            except _CONNECTION_FAILURES as exc:
                log.debug("changing what is listened to failed: %s", exc)
                if conn is self._conn:
                    self._lost.set()  # the reconnection LISTENs on what is wanted then

    async def _listen(self) -> None:
        conn = await self._connect()
        listened: set[str] = set()
        try:
            conn.add_termination_listener(self._terminated)
            # Channels wanted while this ran are LISTENed too: from the last check to the
            # connection's publication below there is no await, so nothing is missed.
            while todo := [c for c in self._wanted if c not in listened]:
                for channel in todo:
                    await self._listen_on(conn, channel)
                    listened.add(channel)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._listened = listened
        self._lost.clear()
        self.alive_at = asyncio.get_running_loop().time()

    def _terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._lost.set()

    async def _listen_on(self, conn: Any, channel: str) -> None:
        """LISTEN on ``channel``; a connection that does not answer in time raises TimeoutError."""
        await asyncio.wait_for(conn.add_listener(channel, self._notified), self._timeout)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.alive_at = asyncio.get_running_loop().time()
        handler = self._wanted.get(channel)
        if handler is None:
            return  # no longer wanted; its UNLISTEN is on its way
        try:
            handler(payload)
        except Exception:
            log.exception("handling a notification failed")

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        self._listened = set()
        if conn is None:
            return
        if conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 2)
        except _CONNECTION_FAILURES:
            conn.terminate()

    async def _alive(self) -> bool:
        async with self._using:
            conn = self._conn
            if conn is None or conn.is_closed():
                return False
            try:
                started = asyncio.get_running_loop().time()
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._timeout)
            except _CONNECTION_FAILURES:
                return False
        self.alive_at = started  # the answer proves every notification sent before was seen
        return True

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._lost.wait(), self._check_interval)
            except TimeoutError:
                if await self._alive():
                    continue
            if self._stopping:
                return
            log.warning("LISTEN connection lost; reconnecting")
            alive_at = self.alive_at
            await self._discard()
            delay = 0.05
            while not self._stopping:
                try:
                    await self._listen()
                except (
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    log.debug("LISTEN reconnect failed: %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                    continue
                break
            if self._stopping:
                return
            self.reconnects += 1
            log.warning("LISTEN connection re-established; subscribers re-read (gap)")
            self._on_reconnect(alive_at)
