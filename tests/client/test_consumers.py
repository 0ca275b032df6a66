"""Consumers against the real server: they resume from their stored position, wake on pokes,
stop gracefully, and consumer groups cover a category exactly once.

The property test runs group members as asyncio tasks started, stopped and crashed (cancelled,
so no final position is stored) at random; the kill -9 tests run the example programs as real
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventodb.client import (
    AsyncConsumer,
    AsyncEventoDB,
    AuthUnauthorized,
    Consumer,
    ConsumerGroup,
    EventoDB,
    Message,
    position_stream_name,
)
from eventodb.core import tokens
from eventodb.store.postgres.statements import quote_ident, schema_name
from tests.client.conftest import (
    Client,
    Tenant,
    close_client,
    do,
    make_tenant,
    open_client,
)
from tests.support.polling import eventually_async
from tests.support.server import ADMIN_TOKEN, Server

pytestmark = pytest.mark.timeout(90)


class Run:
    """A consumer of either client running in the background: a thread for :class:`Consumer`,
    a task for :class:`AsyncConsumer`."""

    def __init__(self, consumer: Consumer | AsyncConsumer) -> None:
        self.consumer = consumer
        self.error: BaseException | None = None
        if isinstance(consumer, AsyncConsumer):
            self.task: asyncio.Future[None] = asyncio.ensure_future(consumer.run())
        else:
            self.task = asyncio.ensure_future(asyncio.to_thread(consumer.run))

    async def stop(self) -> None:
        self.consumer.stop()
        await asyncio.wait_for(self.task, 10)


def make_consumer(
    db: Client, category: str, handler: Callable[[Message], object], **options: Any
) -> Consumer | AsyncConsumer:
    if isinstance(db, AsyncEventoDB):
        return AsyncConsumer(db, category, handler, **options)
    return Consumer(db, category, handler, **options)


async def write_many(db: Client, count: int, category: str = "account") -> list[int]:
    """Write ``count`` messages spread over 7 streams; their global positions."""
    positions = []
    for n in range(count):
        result = await do(db.write(f"{category}-{n % 7}", "Deposited", {"n": n}))
        positions.append(result.global_position)
    return positions


async def test_a_consumer_handles_the_backlog_then_wakes_on_new_messages(db: Client) -> None:
    backlog = await write_many(db, 12)
    await do(db.write("other-1", "Deposited", {}))
    handled: list[Message] = []
    run = Run(make_consumer(db, "account", handled.append, name="t", batch_size=5))
    try:
        await eventually_async(lambda: len(handled) == 12, 10)
        assert [m.global_position for m in handled] == backlog
        await asyncio.sleep(0.2)  # idle now: waiting for a poke
        written = time.monotonic()
        live = await write_many(db, 3)
        await eventually_async(lambda: len(handled) == 15, 5)
        assert time.monotonic() - written < 2.0
        assert [m.global_position for m in handled[12:]] == live
    finally:
        await run.stop()
    assert run.consumer.position == live[-1] + 1


class MemoryPositions:
    """A position store in memory (a consumer of every category needs one of its own)."""

    def __init__(self) -> None:
        self.position: int | None = None

    def get(self) -> int | None:
        return self.position

    def put(self, position: int) -> None:
        self.position = position


class AsyncMemoryPositions(MemoryPositions):
    async def get(self) -> int | None:  # type: ignore[override]
        return self.position

    async def put(self, position: int) -> None:  # type: ignore[override]
        self.position = position


@pytest.mark.parametrize(
    "server", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_consumer_of_every_category_never_reads_past_a_write_still_committing(
    db: Client, tenant: Tenant, postgres_dsn: str
) -> None:
    """On Postgres position 2 can still be committing while 3 is readable; a consumer of every
    category that handled 3 would never see 2. It reads up to the server's head instead."""
    await do(db.write("acc-1", "T", {}))
    schema = quote_ident(schema_name(tenant.namespace))
    write = f"SELECT {schema}.write_message($1, $2, 'T', '{{}}')"
    held, other = await asyncpg.connect(postgres_dsn), await asyncpg.connect(postgres_dsn)
    handled: list[Message] = []
    try:
        transaction = held.transaction()
        await transaction.start()
        await held.execute(write, str(uuid.uuid4()), "late-1")  # global position 2, in flight
        await other.execute(write, str(uuid.uuid4()), "early-1")  # 3, committed
        positions: Any = (
            AsyncMemoryPositions() if isinstance(db, AsyncEventoDB) else MemoryPositions()
        )
        run = Run(make_consumer(db, "", handled.append, position_store=positions))
        try:
            await asyncio.sleep(1.0)
            assert [m.global_position for m in handled] == [], "read past the write in flight"
            await transaction.commit()
            await eventually_async(lambda: len(handled) == 3, 10)
            await do(db.write("acc-2", "T", {}))
            await eventually_async(lambda: len(handled) == 4, 10)
        finally:
            await run.stop()
    finally:
        await held.close()
        await other.close()
    assert [m.global_position for m in handled] == [1, 2, 3, 4]


async def test_a_stopped_consumer_resumes_exactly_where_it_stopped(db: Client) -> None:
    first = await write_many(db, 10)
    handled: list[int] = []

    def handle(message: Message) -> None:
        handled.append(message.global_position)

    run = Run(make_consumer(db, "account", handle, name="t", position_update_interval=4))
    await eventually_async(lambda: len(handled) == 10, 10)
    await run.stop()

    # The position is in the position stream, outside the category it tracks.
    stream = position_stream_name("account", "t")
    assert stream == "account:position-t"
    last = await do(db.get_last(stream))
    assert last is not None
    assert (last.type, last.data) == ("Recorded", {"position": first[-1]})
    assert all(m.category == "account" for m in await do(db.get_category("account")))

    second = await write_many(db, 5)
    run = Run(make_consumer(db, "account", handle, name="t", position_update_interval=4))
    await eventually_async(lambda: len(handled) == 15, 10)
    await asyncio.sleep(0.2)
    await run.stop()
    assert handled == first + second  # each once, in order, across the restart

    # Another name is another consumer, with a position of its own.
    others: list[int] = []
    await do(
        make_consumer(db, "account", lambda m: others.append(m.global_position), name="u").run(
            until_idle=True
        )
    )
    assert others == first + second


async def test_a_handler_error_stops_the_consumer_after_storing_the_position_before_it(
    db: Client,
) -> None:
    positions = await write_many(db, 6)
    handled: list[int] = []
    failures: list[int] = []

    def handle(message: Message) -> None:
        if message.global_position == positions[3] and not failures:
            failures.append(message.global_position)
            raise RuntimeError("cannot handle this one yet")
        handled.append(message.global_position)

    consumer = make_consumer(db, "account", handle, position_update_interval=100)
    with pytest.raises(RuntimeError, match="yet"):
        await do(consumer.run(until_idle=True))
    assert handled == positions[:3]
    again = make_consumer(db, "account", handle, position_update_interval=100)
    await do(again.run(until_idle=True))
    assert handled == positions  # the failed message is the first one handled again


async def test_an_async_handler_and_correlation_filter(tenant: Tenant) -> None:
    async with tenant.async_() as db:
        for n in range(6):
            await db.write(
                f"payment-{n}", "Paid", {"n": n}, {"correlationStreamName": f"order-{n}"}
            )
            await db.write(f"payment-{n}", "Paid", {"n": n}, {"correlationStreamName": "x-1"})
        seen: list[int] = []

        async def handle(message: Message) -> None:
            await asyncio.sleep(0)
            seen.append(message.data["n"])

        await AsyncConsumer(db, "payment", handle, correlation="order").run(until_idle=True)
        assert seen == list(range(6))


class FilePositionStore:
    """A user-supplied position store: a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.puts = 0

    def get(self) -> int | None:
        if not self.path.exists():
            return None
        position: int = json.loads(self.path.read_text())["position"]
        return position

    def put(self, position: int) -> None:
        self.puts += 1
        self.path.write_text(json.dumps({"position": position}))


async def test_a_user_supplied_position_store_is_used_instead_of_a_stream(
    tenant: Tenant, tmp_path: Path
) -> None:
    store = FilePositionStore(tmp_path / "position.json")
    with tenant.sync() as db:
        positions = await write_many(db, 9)
        handled: list[int] = []
        consumer = Consumer(
            db,
            "",
            lambda m: handled.append(m.global_position),
            position_store=store,
            position_update_interval=4,
        )
        consumer.run(until_idle=True)
        assert handled == positions
        assert store.puts == 3  # after the 4th and 8th message, and the last one at the stop
        assert store.get() == positions[-1]
        assert db.list_streams(prefix="account:") == []


def test_consumer_arguments_are_checked(tenant: Tenant) -> None:
    with tenant.sync() as db:
        with pytest.raises(ValueError, match="position_store"):
            Consumer(db, "", print)
        with pytest.raises(ValueError, match="contains '-'"):
            Consumer(db, "account-1", print)
        with pytest.raises(ValueError, match="consumer group"):
            Consumer(db, "account", print, group=(3, 3))
        with pytest.raises(ValueError, match="batch_size"):
            Consumer(db, "account", print, batch_size=0)
        with pytest.raises(ValueError, match="interval"):
            Consumer(db, "account", print, position_update_interval=0)
    assert position_stream_name("account", "w", ConsumerGroup(1, 3)) == "account:position-w+1of3"
    assert position_stream_name("account") == "account:position"


async def test_a_consumer_refused_by_the_server_raises(server: Server, kind: str) -> None:
    db = open_client(kind, server.url, tokens.generate("nobody-here"))
    try:
        with pytest.raises(AuthUnauthorized):
            await do(make_consumer(db, "account", print).run(until_idle=True))
    finally:
        await close_client(db)


# -- consumer groups -------------------------------------------------------------------------

Step = tuple[str, int]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 12)),
        st.tuples(st.sampled_from(["start", "stop", "crash", "pause"]), st.integers(0, 4)),
    ),
    max_size=14,
)


async def group_scenario(server: Server, size: int, plan: list[Step], interval: int) -> None:
    """Members of one group of ``size`` come and go as ``plan`` says; then all run until the
    category is covered, and the guarantees are checked."""
    tenant = make_tenant(server)
    written = 0
    handled: list[list[int]] = [[] for _ in range(size)]
    crashes = [0] * size
    running: dict[int, tuple[AsyncConsumer, asyncio.Task[None]]] = {}
    async with AsyncEventoDB(tenant.url, tenant.token, backoff=0.02, max_backoff=0.1) as db:

        def start(member: int) -> None:
            consumer = AsyncConsumer(
                db,
                "job",
                lambda m: handled[member].append(m.global_position),
                name="workers",
                group=(member, size),
                batch_size=4,
                position_update_interval=interval,
            )
            running[member] = (consumer, asyncio.create_task(consumer.run()))

        try:
            for action, arg in plan:
                member = arg % size
                if action == "write":
                    for _ in range(arg):
                        await db.write(f"job-{written % 11}", "Run", {"n": written})
                        written += 1
                elif action == "start" and member not in running:
                    start(member)
                elif action == "stop" and member in running:
                    consumer, task = running.pop(member)
                    consumer.stop()
                    await task
                elif action == "crash" and member in running:
                    _, task = running.pop(member)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    crashes[member] += 1
                await asyncio.sleep(0.005 if action != "pause" else 0.05)
            for member in range(size):
                if member not in running:
                    start(member)
            shares = []
            for member in range(size):
                share = await db.get_category("job", batch_size=-1, consumer_group=(member, size))
                shares.append({m.global_position for m in share})
            everything = {m.global_position for m in await db.get_category("job", batch_size=-1)}
            deadline = time.monotonic() + 15
            while any(set(handled[m]) != shares[m] for m in range(size)):
                assert time.monotonic() < deadline, (shares, handled)
                await asyncio.sleep(0.02)
            for consumer, task in running.values():
                consumer.stop()
                await task
            running.clear()
        finally:
            for _, task in running.values():
                task.cancel()
        with EventoDB(server.url, ADMIN_TOKEN) as admin:
            admin.delete_namespace(tenant.namespace)

    assert set().union(*shares) == everything
    assert len(everything) == written
    for member in range(size):
        counts = Counter(handled[member])
        assert set(counts) == shares[member]  # its own share, all of it
        repeats = sum(counts.values()) - len(counts)
        # Exactly once without crashes; at most `interval` repeats per crash.
        assert repeats <= crashes[member] * interval, (member, crashes, handled[member])


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(size=st.integers(1, 5), plan=steps, interval=st.integers(1, 5))
@example(size=1, plan=[("write", 9), ("start", 0), ("write", 5)], interval=3)
@example(size=2, plan=[("start", 0), ("write", 12), ("start", 1), ("write", 3)], interval=2)
@example(size=3, plan=[("write", 12), ("start", 1), ("stop", 1), ("write", 6)], interval=4)
@example(size=4, plan=[("start", 0), ("start", 2), ("write", 12), ("crash", 2)], interval=5)
@example(
    size=5,
    plan=[("write", 10), ("start", 3), ("crash", 3), ("start", 3), ("write", 10), ("stop", 3)],
    interval=1,
)
def test_group_members_started_stopped_and_crashed_at_random_cover_the_category(
    server: Server, size: int, plan: list[Step], interval: int
) -> None:
    asyncio.run(group_scenario(server, size, plan, interval))


def test_group_members_see_disjoint_shares_with_the_sync_client(tenant: Tenant) -> None:
    with tenant.sync() as db:
        positions = {db.write(f"job-{n % 9}", "Run", {}).global_position for n in range(30)}
        handled: list[list[int]] = [[] for _ in range(3)]
        for member in range(3):
            share = handled[member]
            Consumer(
                db, "job", lambda m, share=share: share.append(m.global_position),  # type: ignore[misc]
                name="w", group=(member, 3),
            ).run(until_idle=True)  # fmt: skip
        assert sorted(p for share in handled for p in share) == sorted(positions)
        assert all(handled)
