"""Subscription lifecycle and resources: disconnects, slow clients, shutdown, namespace deletion.

The first tests run the real app under uvicorn inside the test's event loop (real sockets), so
they can look inside the broker and count tasks; the rest drive the real CLI in a subprocess
and measure it from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from eventodb.api.app import create_app
from eventodb.api.broker import MAX_PENDING, Broker, Subscription
from eventodb.core import tokens
from eventodb.store.base import Store
from eventodb.store.sqlite import SQLiteStore
from tests.subscriptions.conftest import HEARTBEAT, start_server
from tests.support.polling import eventually_async
from tests.support.ports import free_port
from tests.support.raw_http import KeptAliveConnection
from tests.support.server import ADMIN_TOKEN, Server, unique
from tests.support.sseclient import Collector, subscribe

pytestmark = pytest.mark.timeout(120)


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers (the test runner owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class InProcess:
    store: Store
    broker: Broker
    port: int

    def subscriptions(self) -> list[Subscription]:
        return self.broker.subscriptions()


@pytest.fixture
async def app_server() -> AsyncIterator[InProcess]:
    """The app over an in-memory store, served by uvicorn on a real socket in this loop."""
    store = SQLiteStore(None)
    await store.open()
    await store.create_namespace("default", tokens.hash_token(ADMIN_TOKEN))
    broker = Broker(store)
    await broker.start()
    app = create_app(store, test_mode=True, sse_heartbeat=HEARTBEAT, broker=broker)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, http="httptools"
    )
    server = _QuietServer(config)
    serving = asyncio.ensure_future(server.serve())
    await eventually_async(lambda: server.started, 10)
    try:
        yield InProcess(store, broker, port)
    finally:
        await broker.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        await store.close()


PAD = "x" * 900
"""Long stream names make pokes about 1 KB, so a client that stops reading fills the socket
buffers (several MB on loopback) with a modest number of writes."""


WRITE_HEADERS = [f"Authorization: Bearer {ADMIN_TOKEN}", "Content-Type: application/json"]
STALL_WRITES = 6000
"""Pokes of about 1 KB each: more than the kernel's socket buffers on loopback hold (up to 4 MiB
for the sender with autotuning), so the server's writes to a client that stopped reading stall."""


async def test_disconnect_is_noticed_within_one_heartbeat(app_server: InProcess) -> None:
    response = await subscribe(app_server.port, {"all": "true"})
    assert app_server.broker.subscriber_count() == 1
    started = time.monotonic()
    response.close()
    await eventually_async(lambda: app_server.broker.subscriber_count() == 0, HEARTBEAT)
    assert time.monotonic() - started < HEARTBEAT


async def test_connect_disconnect_cycles_leave_no_tasks_subscriptions_or_memory(
    app_server: InProcess,
) -> None:
    store, broker = app_server.store, app_server.broker
    stop = asyncio.Event()
    last = (0, 1)
    """The writer's latest (position, global position): subscriptions start there, so each
    replay is a message or two and what the store keeps of its last read stays small."""

    async def writer() -> None:
        nonlocal last
        while not stop.is_set():
            result = await store.write_message("default", "c-1", "T", {})
            last = (result.position, result.global_position)
            await asyncio.sleep(0.005)

    async def cycles(count: int) -> None:
        for i in range(count):
            position, gp = last
            params: dict[str, Any] = [
                {"all": "true", "position": gp},
                {"stream": "c-1", "position": position},
                {"category": "c", "position": gp},
                {"category": "c", "size": 2, "position": gp},
            ][i % 4]
            response = await subscribe(app_server.port, params)
            if i % 2:
                await response.next_block()  # sometimes read a poke first
            await response.aclose()

    writing = asyncio.ensure_future(writer())
    await cycles(50)  # warm caches and allocator pools
    await eventually_async(lambda: broker.subscriber_count() == 0, 2.0)
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    tracemalloc.start()
    try:
        memory_before = tracemalloc.get_traced_memory()[0]
        await cycles(500)
        await eventually_async(lambda: broker.subscriber_count() == 0, 2.0)
        stop.set()
        await writing
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - memory_before
    finally:
        tracemalloc.stop()
    assert broker.namespaces_indexed() == 0
    # The writer has finished; connection tasks end a moment after their subscription.
    await eventually_async(lambda: len(asyncio.all_tasks()) == tasks_before - 1, 2.0)
    assert growth < 64 * 1024, f"{growth} bytes retained after 500 cycles"


async def test_client_that_stops_reading_gets_coalesced_pokes_and_catches_up(
    app_server: InProcess,
) -> None:
    store, broker = app_server.store, app_server.broker
    response = await subscribe(app_server.port, {"all": "true"}, rcvbuf=4096)
    collector: Collector | None = None
    try:
        # Enough bytes to fill the socket buffers, so the server really has to hold pokes back.
        streams = MAX_PENDING + 200
        rounds = 12
        latest: dict[str, int] = {}
        (sub,) = app_server.subscriptions()
        blocked = 0
        for round_ in range(rounds):
            for i in range(streams):
                stream = f"s-{i}-{PAD}"
                result = await store.write_message("default", stream, "T", {"r": round_})
                latest[stream] = result.position
                blocked += sub.sending
                assert sub.pending <= MAX_PENDING
        assert blocked > streams, "the client should have stalled the server's writes"
        collector = Collector(response)
        await collector.wait_for(lambda c: c.high_water() == latest, 60)
        assert len(collector.pokes) < rounds * streams
    finally:
        if collector is not None:
            await collector.close()
        else:
            await response.aclose()
    await eventually_async(lambda: broker.subscriber_count() == 0, 2.0)


async def test_broker_close_ends_every_stream_promptly_even_one_that_is_stuck(
    app_server: InProcess,
) -> None:
    store, broker = app_server.store, app_server.broker
    readers = [
        Collector(await subscribe(app_server.port, params))
        for params in ({"all": "true"}, {"stream": "x-1"}, {"category": "x"})
    ]
    stuck = await subscribe(app_server.port, {"category": "stuck"}, rcvbuf=4096)
    try:
        stuck_sub = next(s for s in app_server.subscriptions() if s.filter.category == "stuck")
        for i in range(20_000):
            await store.write_message("default", f"stuck-{i}-{PAD}", "T", {})
            if stuck_sub.sending and i > 100:
                break
        assert stuck_sub.sending, "the stuck client should have stalled the server's writes"
        started = time.monotonic()
        await broker.close()
        assert time.monotonic() - started < 2.0
        assert broker.subscriber_count() == 0
        for reader in readers:
            await reader.wait_for(lambda c: c.ended, 2)
    finally:
        for reader in readers:
            await reader.close()
        await stuck.aclose()


async def test_subscribing_during_shutdown_is_refused(app_server: InProcess) -> None:
    await app_server.broker.close()
    response = await subscribe(app_server.port, {"all": "true"})
    try:
        assert response.status == 503
        assert (await response.body()) == b"Server is shutting down"
    finally:
        await response.aclose()


# -- the real server, from outside ---------------------------------------------------------------


@pytest.fixture
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own (SQLite files), for tests that stop or measure it."""
    srv = start_server("sqlite", request, tmp_path)
    yield srv
    srv.stop()


def open_sockets(pid: int) -> int:
    """Sockets the process holds (its SQLite read pool opens files lazily; those may grow)."""
    fd_dir = f"/proc/{pid}/fd"
    links = []
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"{fd_dir}/{fd}"))
    return sum(link.startswith("socket:") for link in links)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_real_server_frees_connections_sockets_and_memory_after_500_cycles(
    own_server: Server,
) -> None:
    pid = own_server.proc.pid
    kinds = [{"all": "true"}, {"stream": "c-1"}, {"category": "c"}]

    async def cycles(count: int) -> None:
        for i in range(count):
            response = await subscribe(own_server.port, kinds[i % len(kinds)], token=ADMIN_TOKEN)
            await response.aclose()

    def connections() -> int:
        health = own_server.ok(ADMIN_TOKEN, "sys.health")
        return int(health["connections"])

    await cycles(100)
    await eventually_async(lambda: connections() == 1, 2.0)
    sockets, rss = open_sockets(pid), rss_kib(pid)
    await cycles(500)
    await eventually_async(lambda: connections() == 1, 2.0)
    assert open_sockets(pid) <= sockets
    assert rss_kib(pid) - rss < 4096, "RSS grew by more than 4 MiB over 500 cycles"


async def test_sigterm_ends_open_streams_and_exits_cleanly(own_server: Server) -> None:
    collectors = [
        Collector(await subscribe(own_server.port, params, token=ADMIN_TOKEN))
        for params in ({"all": "true"}, {"stream": "q-1"}, {"category": "q"})
    ]
    started = time.monotonic()
    own_server.proc.send_signal(signal.SIGTERM)
    for collector in collectors:
        await collector.wait_for(lambda c: c.ended, 5)
        await collector.close()
    assert time.monotonic() - started < 3.0
    assert await asyncio.to_thread(own_server.proc.wait, 10) == 0


@pytest.mark.slow
async def test_sigterm_does_not_wait_for_a_client_that_stopped_reading(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    own_server = start_server("test-mode", request, tmp_path)  # in memory: fast writes
    stuck = await subscribe(own_server.port, {"category": "s"}, token=ADMIN_TOKEN, rcvbuf=4096)
    try:

        async def writer(k: int) -> None:
            connection = KeptAliveConnection(own_server.port)
            try:
                for i in range(STALL_WRITES // 8):
                    body = ["stream.write", f"s-{k}x{i}-{PAD}", {"type": "T", "data": {}}]
                    status, answer = await connection.request(
                        "POST", "/rpc", json.dumps(body).encode(), WRITE_HEADERS
                    )
                    assert status == 200, answer
            finally:
                await connection.close()

        await asyncio.gather(*(writer(k) for k in range(8)))
        started = time.monotonic()
        own_server.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(own_server.proc.wait, 20) == 0
        assert time.monotonic() - started < 5.0
    finally:
        await stuck.aclose()
        own_server.stop()


async def test_deleting_a_namespace_ends_its_subscriptions_only(own_server: Server) -> None:
    doomed, kept = unique("doomed"), unique("kept")
    tokens_of = {ns: own_server.ok(ADMIN_TOKEN, "ns.create", ns)["token"] for ns in (doomed, kept)}
    doomed_sub = Collector(
        await subscribe(own_server.port, {"all": "true"}, token=tokens_of[doomed])
    )
    kept_sub = Collector(await subscribe(own_server.port, {"all": "true"}, token=tokens_of[kept]))
    try:
        own_server.ok(ADMIN_TOKEN, "ns.delete", doomed)
        await doomed_sub.wait_for(lambda c: c.ended, 2)
        own_server.ok(tokens_of[kept], "stream.write", "k-1", {"type": "T", "data": {}})
        await kept_sub.wait_for(lambda c: c.covers("k-1", 0), 2)
        assert not kept_sub.ended
    finally:
        await doomed_sub.close()
        await kept_sub.close()


async def test_a_forced_import_ends_the_namespace_subscriptions(own_server: Server) -> None:
    ns = unique("forced")
    token = own_server.ok(ADMIN_TOKEN, "ns.create", ns)["token"]
    own_server.ok(token, "stream.write", "f-1", {"type": "T", "data": {}})
    sub = Collector(await subscribe(own_server.port, {"all": "true"}, token=token))
    try:
        await sub.wait_for(lambda c: c.covers("f-1", 0), 2)
        response = own_server.client.post(
            "/import",
            params={"force": "true"},
            headers={"Authorization": f"Bearer {token}"},
            content=b"",
        )
        assert response.status_code == 200, response.text
        await sub.wait_for(lambda c: c.ended, 2)
    finally:
        await sub.close()
