"""Fixtures of the client tests: the real server (SQLite files and Postgres) in a subprocess, a
fresh namespace per test, and the client under test — blocking or asyncio, so that one test
body checks both (``db`` runs every test that uses it once per client).

Test bodies are ``async`` and wrap every client call in :func:`do` (and iterations in
:func:`collect`): the asyncio client's calls are awaited, the blocking client's run as they
are. Subscriptions go through :class:`Pokes`, which reads a blocking subscription in a worker
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from eventodb.client import (
    AsyncEventoDB,
    AsyncSubscription,
    ClientOptions,
    EventoDB,
    Poke,
    Subscription,
)
from tests.client.proxy import Proxy
from tests.support.server import ADMIN_TOKEN, Server, serve_per_param, server_args, unique
from tests.support.server import Tenant as ServerTenant

T = TypeVar("T")

HEARTBEAT = 0.5
"""Seconds between the test servers' ``: ping`` comments (``--sse-heartbeat``)."""

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

transport_only = pytest.mark.parametrize("server", ["sqlite"], indirect=True)
"""For tests of the client's own connection handling (retries, reconnects, heartbeats through
a proxy): the storage behind the server plays no part, so they run on one backend."""

Client = EventoDB | AsyncEventoDB


def start_server(kind: str, request: pytest.FixtureRequest, workdir: Path, **kw: Any) -> Server:
    """The CLI server of ``kind`` (``sqlite`` files or ``postgres``) with a short heartbeat."""
    args = [*server_args(kind, request, workdir), f"--sse-heartbeat={HEARTBEAT}"]
    return Server(args, workdir=workdir, kind=kind, **kw)


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per backend for the whole client suite (tests use their own namespaces)."""
    yield from serve_per_param(request, tmp_path_factory, "client", f"--sse-heartbeat={HEARTBEAT}")


class Tenant(ServerTenant):
    """A namespace of one test, with the clients under test on it."""

    def sync(self, **options: Any) -> EventoDB:
        return EventoDB(self.url, self.token, **options)

    def async_(self, **options: Any) -> AsyncEventoDB:
        return AsyncEventoDB(self.url, self.token, **options)


def make_tenant(server: Server) -> Tenant:
    namespace = unique("sdk")
    with EventoDB(server.url, ADMIN_TOKEN) as admin:
        created = admin.create_namespace(namespace)
    return Tenant(server, namespace, created.token)


@pytest.fixture
def tenant(server: Server) -> Iterator[Tenant]:
    t = make_tenant(server)
    yield t
    with EventoDB(server.url, ADMIN_TOKEN) as admin:
        admin.delete_namespace(t.namespace)


def open_client(kind: str, url: str, token: str | None, **options: Any) -> Client:
    return (EventoDB if kind == "sync" else AsyncEventoDB)(url, token, **options)


async def close_client(client: Client) -> None:
    if isinstance(client, AsyncEventoDB):
        await client.aclose()
    else:
        client.close()


CLIENT_KINDS = ["sync", "async"]


@pytest.fixture(params=CLIENT_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """``sync`` or ``async``: which client a test body drives."""
    return str(request.param)


@pytest.fixture
async def db(kind: str, tenant: Tenant) -> AsyncIterator[Client]:
    """The client under test on the test's namespace."""
    client = open_client(kind, tenant.url, tenant.token)
    yield client
    await close_client(client)


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    p = Proxy(server.port)
    yield p
    p.close()


async def do(value: Awaitable[T] | T) -> T:
    """The result of a client call, whichever client made it."""
    if inspect.isawaitable(value):
        return await value
    return value


async def collect(items: AsyncIterator[T] | Iterator[T]) -> list[T]:
    """Everything an iterator of either client yields."""
    if isinstance(items, AsyncIterator):
        return [item async for item in items]
    return list(items)


class Pokes:
    """Reads a subscription of either client from an async test body, with timeouts.

    A blocking subscription is iterated by one worker thread for its whole life (a timeout must
    not leave a second reader behind); its pokes reach the test through a queue.
    """

    def __init__(self, subscription: Subscription | AsyncSubscription) -> None:
        self.subscription = subscription
        self._queue: asyncio.Queue[Poke | BaseException | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        if isinstance(subscription, Subscription):
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._pump, args=(subscription, loop), daemon=True
            )
            self._thread.start()

    def _pump(self, sub: Subscription, loop: asyncio.AbstractEventLoop) -> None:
        def hand_over(item: Poke | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the test is over and its loop closed
                loop.call_soon_threadsafe(self._queue.put_nowait, item)

        try:
            for poke in sub:
                hand_over(poke)
        except Exception as exc:  # noqa: BLE001 (handed to the test)
            hand_over(exc)
        else:
            hand_over(None)

    async def next(self, timeout: float = 10.0) -> Poke | None:  # noqa: ASYNC109
        """The next poke; ``None`` when the iteration ended; raises what the iteration raised."""
        sub = self.subscription
        if isinstance(sub, AsyncSubscription):
            return await asyncio.wait_for(anext(sub, None), timeout)
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def take(self, count: int, timeout: float = 10.0) -> list[Poke]:  # noqa: ASYNC109
        """The next ``count`` pokes, all within ``timeout``."""
        deadline = time.monotonic() + timeout
        pokes: list[Poke] = []
        for _ in range(count):
            poke = await self.next(max(0.01, deadline - time.monotonic()))
            assert poke is not None, f"the subscription ended after {pokes}"
            pokes.append(poke)
        return pokes

    async def quiet(self, seconds: float) -> None:
        """Assert that no poke arrives for ``seconds``."""
        try:
            poke = await self.next(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {poke}")

    def join(self, timeout: float = 10.0) -> bool:
        """For a blocking subscription: whether its reader thread has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def reconnects(self) -> int:
        return self.subscription.reconnects

    @property
    def position(self) -> int:
        return self.subscription.position


class opened:
    """Connect a subscription of either client; close it at the end of the block."""

    def __init__(self, subscription: Subscription | AsyncSubscription) -> None:
        self.subscription = subscription

    async def __aenter__(self) -> Pokes:
        sub = self.subscription
        if isinstance(sub, AsyncSubscription):
            await sub.connect()
        else:
            await asyncio.to_thread(sub.connect)
        return Pokes(sub)

    async def __aexit__(self, *exc: object) -> None:
        sub = self.subscription
        if isinstance(sub, AsyncSubscription):
            await sub.aclose()
        else:
            sub.close()


__all__ = [
    "ADMIN_TOKEN",
    "ClientOptions",
    "Tenant",
    "close_client",
    "collect",
    "do",
    "make_tenant",
    "open_client",
    "opened",
]
