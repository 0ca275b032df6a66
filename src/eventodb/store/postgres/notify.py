"""The notification relay: NOTIFYs from Postgres turned into pokes and registry changes.

Writes made by other server processes, or by SQL clients calling ``write_message`` directly,
reach this process only through Postgres; so do namespaces they create, delete or give a new
token. One dedicated connection per store listens on every channel
(:class:`NotificationListener`); when it is lost it is re-established with backoff, and a
:class:`~eventodb.store.base.Gap` is announced so subscribers re-read, while the store re-checks
what it cached (notifications sent while nobody listened are gone).

``write_message`` sends ``NOTIFY eventodb`` with ``{"s", "g", "p", "n"}`` (schema, global
position, position, stream name — null when too long for a payload; then looked up);
``write_messages`` sends one for a batch, with lists. The store publishes the pokes of its own
writes at once (:meth:`NotificationRelay.own_write`); their echo is then skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
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
    ) -> None:
        self._connect = connect
        self._publish = publish
        self._namespace_of_schema = namespace_of_schema
        self._locate = locate
        self._registry_changed = registry_changed
        self._reconnected = reconnected
        self._check_interval = check_interval
        self._listener: NotificationListener | None = None
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._deliverer: asyncio.Task[None] | None = None
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    @property
    def backend_pid(self) -> int | None:
        """Server pid of the LISTEN connection while it is up (tests terminate it on purpose)."""
        return self._listener.backend_pid if self._listener is not None else None

    async def start(self) -> None:
        """Connect and LISTEN; raises the driver's error when that fails."""
        self._listener = NotificationListener(
            self._connect,
            {NOTIFY_CHANNEL: self._inbox.put_nowait, REGISTRY_CHANNEL: self._registry_notified},
            self._listener_reconnected,
            check_interval=self._check_interval,
        )
        await self._listener.start()
        self._deliverer = asyncio.create_task(self._deliver(), name="eventodb-pg-pokes")

    async def stop(self) -> None:
        await cancel_and_wait(self._deliverer)
        self._deliverer = None
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None

    def own_write(self, poke: Poke) -> None:
        """Publish a write of this store at once (lowest latency); its echo is skipped."""
        if self._first_sighting(poke.namespace, poke.global_position):
            self._publish(poke)

    def forget(self, namespace: str) -> None:
        """Drop what is remembered of ``namespace``'s writes (it was deleted or cleared)."""
        for key in [k for k in self._seen if k[0] == namespace]:
            del self._seen[key]

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

    def _listener_reconnected(self, alive_at: float) -> None:
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
    """Keeps one connection LISTENing on some channels.

    Args:
        connect: opens a new connection.
        channels: channel name → called on the event loop with each notification payload.
        on_reconnect: called after the connection was lost and LISTEN is active again, with
            the event-loop time the connection was last known to work (notifications up to
            then arrived; later ones may be lost).
        check_interval: seconds between liveness checks of an idle connection (a silently
            dead TCP peer gives no termination event).
    """

    def __init__(
        self,
        connect: Connect,
        channels: Mapping[str, Callable[[str], None]],
        on_reconnect: Callable[[float], None],
        *,
        check_interval: float = 10.0,
        max_backoff: float = 2.0,
    ) -> None:
        self._connect = connect
        self._channels = dict(channels)
        self._on_reconnect = on_reconnect
        self._check_interval = check_interval
        self._max_backoff = max_backoff
        self._conn: Any = None
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

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            conn.add_termination_listener(self._terminated)
            for channel in self._channels:
                await conn.add_listener(channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._lost.clear()
        self.alive_at = asyncio.get_running_loop().time()

    def _terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._lost.set()

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.alive_at = asyncio.get_running_loop().time()
        try:
            self._channels[channel](payload)
        except Exception:
            log.exception("handling a notification failed")

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 2)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
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
