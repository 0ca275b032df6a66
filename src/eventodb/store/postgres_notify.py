"""The LISTEN connection that turns NOTIFYs into pokes and registry changes.

Writes made by other server processes, or by SQL clients calling ``write_message`` directly,
reach this process only through Postgres; so do namespaces they create, delete or give a new
token. One dedicated connection per store listens on every channel; when it is lost it is
re-established with backoff, and the store is told so it can announce a
:class:`~eventodb.store.base.Gap` and re-check what it cached (notifications sent while nobody
listened are gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

log = logging.getLogger("eventodb.store.postgres")

Connect = Callable[[], Awaitable[Any]]


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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
