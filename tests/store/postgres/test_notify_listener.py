"""The LISTEN connection keeping the channels wanted, whatever happens meanwhile: a channel
wanted during a reconnection, two callers wanting one channel at once, a channel no longer
wanted, a connection that stops answering.

Each test holds back the connection's LISTENs at a chosen moment (:class:`Gated`) to make the
interleaving it checks happen every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from eventodb.store.postgres.notify import NotificationListener
from tests.support.postgres import plain_connection

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


class Gated:
    """An asyncpg connection whose LISTENs wait for ``gate`` (UNLISTENs go through)."""

    def __init__(self, conn: Any, gate: asyncio.Event) -> None:
        self.conn = conn
        self.gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def add_listener(self, channel: str, callback: Callable[..., None]) -> None:
        await self.gate.wait()
        await self.conn.add_listener(channel, callback)


class Connections:
    """The ``connect`` of a listener: every connection it opens, each with a gate of its own
    (open unless :meth:`close_next_gate` was called before it was opened)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.opened: list[Gated] = []
        self._next_open = True
        self._changed = asyncio.Condition()

    async def wait_opened(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.opened) >= count)

    def close_next_gate(self) -> None:
        self._next_open = False

    async def __call__(self) -> Gated:
        gate = asyncio.Event()
        if self._next_open:
            gate.set()
        self._next_open = True
        conn = Gated(await asyncpg.connect(self.dsn), gate)
        async with self._changed:
            self.opened.append(conn)
            self._changed.notify_all()
        return conn


class Received:
    def __init__(self) -> None:
        self.payloads: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, payload: str) -> None:
        self.payloads.put_nowait(payload)

    async def next(self) -> str:
        return await asyncio.wait_for(self.payloads.get(), 5)


@pytest.fixture
async def sql(postgres_dsn: str) -> AsyncIterator[Any]:
    async with plain_connection(postgres_dsn) as conn:
        yield conn


@pytest.fixture
def connections(postgres_dsn: str) -> Connections:
    return Connections(postgres_dsn)


@pytest.fixture
async def reconnected() -> asyncio.Queue[float]:
    return asyncio.Queue()


@pytest.fixture
async def listener(
    connections: Connections, reconnected: asyncio.Queue[float]
) -> AsyncIterator[NotificationListener]:
    listener = NotificationListener(
        connections,
        {"always": Received()},
        reconnected.put_nowait,
        check_interval=0.3,
        max_backoff=0.1,
        statement_timeout=0.5,
    )
    await listener.start()
    yield listener
    await listener.stop()
    for conn in connections.opened:
        conn.terminate()


async def test_a_channel_wanted_during_a_reconnection_is_listened_to_on_the_new_connection(
    listener: NotificationListener,
    connections: Connections,
    reconnected: asyncio.Queue[float],
    sql: Any,
) -> None:
    connections.close_next_gate()  # the reconnection will wait at its first LISTEN
    assert await sql.fetchval("SELECT pg_terminate_backend($1)", listener.backend_pid)
    await asyncio.wait_for(connections.wait_opened(2), 5)
    late = Received()
    await listener.listen("late", late)  # returns at once: no connection to LISTEN on yet
    connections.opened[1].gate.set()
    await asyncio.wait_for(reconnected.get(), 5)
    await sql.execute("NOTIFY late, 'x'")
    assert await late.next() == "x"


async def test_a_second_caller_returns_only_once_the_first_callers_listen_is_in_force(
    listener: NotificationListener, connections: Connections, sql: Any
) -> None:
    conn = connections.opened[0]
    conn.gate.clear()
    received = Received()
    first = asyncio.ensure_future(listener.listen("shared", received))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(listener.listen("shared", received))
    await asyncio.sleep(0.1)
    assert not first.done()
    assert not second.done()  # not in force yet: a read now could miss what follows
    conn.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    await sql.execute("NOTIFY shared, 'y'")
    assert await received.next() == "y"


async def test_a_channel_no_longer_wanted_is_unlistened(
    listener: NotificationListener, connections: Connections
) -> None:
    await listener.listen("brief", Received())

    async def listened() -> list[str]:
        rows = await connections.opened[0].conn.fetch("SELECT pg_listening_channels() AS c")
        return sorted(row["c"] for row in rows)

    assert await listened() == ["always", "brief"]
    assert not listener.wants("other")
    await listener.unlisten("brief")
    assert not listener.wants("brief")
    assert await listened() == ["always"]


async def test_a_listen_that_gets_no_answer_gives_up_and_the_connection_is_replaced(
    listener: NotificationListener,
    connections: Connections,
    reconnected: asyncio.Queue[float],
    sql: Any,
) -> None:
    connections.opened[0].gate.clear()  # the connection stops answering LISTENs
    received = Received()
    await asyncio.wait_for(listener.listen("stuck", received), 3)  # timeout 0.5 s
    await asyncio.wait_for(reconnected.get(), 5)
    assert len(connections.opened) == 2
    await sql.execute("NOTIFY stuck, 'z'")
    assert await received.next() == "z"
