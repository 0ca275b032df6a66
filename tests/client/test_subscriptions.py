"""Live subscriptions through both clients: replay then live pokes, resuming after dropped and
silently dead connections and across real server restarts, clean close, errors."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator

import pytest

from eventodb.client import (
    AsyncSubscription,
    AuthUnauthorized,
    EventoDB,
    InvalidRequest,
    Poke,
    TransportError,
)
from eventodb.core import tokens
from tests.client.conftest import (
    BACKENDS,
    Client,
    Tenant,
    close_client,
    do,
    make_tenant,
    open_client,
    opened,
    start_server,
    transport_only,
)
from tests.client.proxy import Proxy
from tests.support.server import Server

pytestmark = pytest.mark.timeout(60)


def keys(pokes: list[Poke]) -> list[tuple[str, int]]:
    return [(p.stream, p.position) for p in pokes]


async def write(db: Client, *streams: str) -> list[tuple[str, int, int]]:
    written = []
    for stream in streams:
        result = await do(db.write(stream, "T", {}))
        written.append((stream, result.position, result.global_position))
    return written


async def test_stream_subscription_replays_from_its_position_then_pokes_live(db: Client) -> None:
    await write(db, "acct-1", "acct-1", "acct-2", "acct-1")
    async with opened(db.subscribe_stream("acct-1", position=1)) as pokes:
        assert keys(await pokes.take(2)) == [("acct-1", 1), ("acct-1", 2)]
        assert pokes.position == 3
        await write(db, "acct-2", "acct-1")
        assert keys(await pokes.take(1)) == [("acct-1", 3)]
        await pokes.quiet(0.3)


async def test_category_subscription_of_a_group_member_gets_its_share_only(db: Client) -> None:
    written = await write(db, "test-1", "test-2", "other-1", "test-3", "test-4")
    async with opened(db.subscribe_category("test", consumer_group=(1, 2))) as pokes:
        # test-2 and test-4 belong to member 1 of 2 (see the hash rule in docs/CLIENT.md).
        got = await pokes.take(2)
        assert keys(got) == [("test-2", 0), ("test-4", 0)]
        assert pokes.position == written[4][2] + 1
        await write(db, "test-1", "test-2")
        assert keys(await pokes.take(1)) == [("test-2", 1)]
        await pokes.quiet(0.3)


async def test_all_subscription_from_a_global_position(db: Client) -> None:
    written = await write(db, "a-1", "b-1", "c")
    async with opened(db.subscribe_all(position=written[1][2])) as pokes:
        got = await pokes.take(2)
        assert [(p.stream, p.global_position) for p in got] == [
            ("b-1", written[1][2]),
            ("c", written[2][2]),
        ]
        more = await write(db, "d-1")
        assert (await pokes.take(1))[0].global_position == more[0][2]


async def test_a_write_after_connect_is_always_poked(db: Client) -> None:
    for n in range(5):
        async with opened(db.subscribe_stream(f"race-{n}")) as pokes:
            await write(db, f"race-{n}")
            assert keys(await pokes.take(1, timeout=5)) == [(f"race-{n}", 0)]


@transport_only
async def test_a_dropped_connection_resumes_without_gap_or_duplicate(
    kind: str, tenant: Tenant, proxy: Proxy, db: Client
) -> None:
    proxied = open_client(kind, proxy.url, tenant.token, backoff=0.05)
    try:
        await write(db, "acct-1", "acct-2")
        async with opened(proxied.subscribe_category("acct")) as pokes:
            got = await pokes.take(2)
            for _ in range(3):
                assert proxy.drop() == 1
                await write(db, "acct-1", "acct-3")
                got += await pokes.take(2)  # through the new connection
            assert keys(got) == [
                ("acct-1", 0), ("acct-2", 0),
                ("acct-1", 1), ("acct-3", 0), ("acct-1", 2), ("acct-3", 1),
                ("acct-1", 3), ("acct-3", 2),
            ]  # fmt: skip
            assert pokes.reconnects == 3
            await pokes.quiet(0.3)
    finally:
        await close_client(proxied)


@transport_only
async def test_a_silent_connection_is_detected_by_the_heartbeat_and_reopened(
    kind: str, tenant: Tenant, proxy: Proxy, db: Client
) -> None:
    # The server pings every 0.5 s; after 1.5 s without a byte the client gives up on the
    # connection. The proxy keeps the old connection open but delivers nothing more on it.
    proxied = open_client(kind, proxy.url, tenant.token, heartbeat_timeout=1.5, backoff=0.05)
    try:
        async with opened(proxied.subscribe_stream("acct-1")) as pokes:
            await write(db, "acct-1")
            await pokes.take(1)
            await asyncio.sleep(2.0)  # longer than the timeout: the pings keep it alive
            assert pokes.reconnects == 0
            assert proxy.blackhole() == 1
            await write(db, "acct-1")
            assert keys(await pokes.take(1, timeout=5)) == [("acct-1", 1)]
            assert pokes.reconnects == 1
    finally:
        await close_client(proxied)


@transport_only
async def test_without_reconnect_a_dropped_connection_ends_the_iteration_with_an_error(
    kind: str, tenant: Tenant, proxy: Proxy, db: Client
) -> None:
    proxied = open_client(kind, proxy.url, tenant.token)
    try:
        async with opened(proxied.subscribe_stream("acct-1", reconnect=False)) as pokes:
            await write(db, "acct-1")
            await pokes.take(1)
            assert proxy.drop() == 1
            with pytest.raises(TransportError):
                await pokes.next()
            assert pokes.subscription.closed
    finally:
        await close_client(proxied)


async def test_closing_ends_the_iteration_and_the_server_connection(
    server: Server, db: Client
) -> None:
    before = (await do(db.health())).connections
    sub = db.subscribe_category("acct")
    async with opened(sub) as pokes:
        during = (await do(db.health())).connections
        assert during == before + 1
        if isinstance(sub, AsyncSubscription):
            waiting = asyncio.ensure_future(pokes.next())
            await asyncio.sleep(0.1)
            await sub.aclose()
            assert await asyncio.wait_for(waiting, 5) is None
        else:
            await asyncio.sleep(0.1)  # the reader thread is blocked in the read
            sub.close()  # from another thread than the reader's
            assert pokes.join(5)
            assert await pokes.next() is None
        assert sub.closed

    async def gone() -> bool:
        return (await do(db.health())).connections == before

    for _ in range(100):
        if await gone():
            break
        await asyncio.sleep(0.05)
    assert await gone()


async def test_a_refused_subscription_raises_at_connect(
    kind: str, server: Server, tenant: Tenant, db: Client
) -> None:
    with pytest.raises(InvalidRequest, match="member must be < size"):
        async with opened(db.subscribe_category("acct", consumer_group=(2, 2))):
            pass
    stranger = open_client(kind, server.url, tokens.generate(tenant.namespace))
    try:
        with pytest.raises(AuthUnauthorized):
            async with opened(stranger.subscribe_all()):
                pass
    finally:
        await close_client(stranger)


@pytest.fixture(params=BACKENDS)
def own_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of the test's own, which it may stop and start again on the same port."""
    workdir = tmp_path_factory.mktemp(f"restart-{request.param}")
    srv = start_server(request.param, request, workdir)
    yield srv
    srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_pokes_survive_a_server_restart(own_server: Server, sig: int) -> None:
    tenant = make_tenant(own_server)
    sync = EventoDB(tenant.url, tenant.token, backoff=0.05, max_backoff=0.2)
    adb = tenant.async_(backoff=0.05, max_backoff=0.2)
    try:
        await write(sync, "acct-1", "acct-2")
        async with (
            opened(sync.subscribe_category("acct")) as sync_pokes,
            opened(adb.subscribe_category("acct")) as async_pokes,
        ):
            for pokes in (sync_pokes, async_pokes):
                assert keys(await pokes.take(2)) == [("acct-1", 0), ("acct-2", 0)]
            own_server.stop(sig)
            restarted = Server(
                own_server.args, workdir=own_server.workdir, port=own_server.port, kind="again"
            )
            try:
                await write(sync, "acct-1", "acct-3")
                for pokes in (sync_pokes, async_pokes):
                    assert keys(await pokes.take(2)) == [("acct-1", 1), ("acct-3", 0)]
                    assert pokes.reconnects >= 1
                await write(sync, "acct-2")
                for pokes in (sync_pokes, async_pokes):
                    assert keys(await pokes.take(1)) == [("acct-2", 1)]
                    await pokes.quiet(0.2)
            finally:
                restarted.stop()
    finally:
        sync.close()
        await adb.aclose()


@transport_only
def test_close_from_a_signal_handler_thread_unblocks_a_sync_iteration(tenant: Tenant) -> None:
    with tenant.sync() as db:
        sub = db.subscribe_stream("acct-1").connect()
        got: list[Poke] = []
        reader = threading.Thread(target=lambda: got.extend(sub))
        reader.start()
        db.write("acct-1", "T", {})
        threading.Event().wait(0.5)  # the reader is blocked in a read by now
        threading.Timer(0.1, sub.close).start()
        reader.join(5)
        assert not reader.is_alive()
        assert keys(got) == [("acct-1", 0)]


@transport_only
async def test_async_iteration_in_a_plain_loop(tenant: Tenant) -> None:
    async with tenant.async_() as db:
        await db.write("acct-1", "T", {})
        received = []
        async with db.subscribe_stream("acct-1") as sub:
            async for poke in sub:
                received.append(poke)
                break
        assert keys(received) == [("acct-1", 0)]
        assert sub.closed
