"""The delivery rules of :mod:`eventodb.api.broker`, driven directly over a real SQLite store.

These cover orderings the HTTP tests cannot force: pokes arriving out of global-position order,
a subscriber too slow to keep up, pokes lost by the notification path (gaps).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from eventodb.api.broker import MAX_PENDING, Broker, Filter, PokeTuple, Subscription
from eventodb.store.base import ConsumerGroup, Gap, Poke, Store
from eventodb.store.sqlite import SQLiteStore

pytestmark = pytest.mark.timeout(60)

NS = "tenant"


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    sqlite = SQLiteStore(None)
    await sqlite.open()
    await sqlite.create_namespace(NS, "0" * 64)
    try:
        yield sqlite
    finally:
        await sqlite.close()


@pytest.fixture
async def broker(store: Store) -> AsyncIterator[Broker]:
    """A started broker; its subscriptions are released at the end like finished responses."""
    b = Broker(store)
    await b.start()
    yield b
    if not b.closed:
        for sub in b.subscriptions():
            b.unsubscribe(sub)
        await asyncio.wait_for(b.close(), 1)


class Muted:
    """Stands between the store and the broker; while muted, pokes are lost (as over a dead
    LISTEN connection)."""

    def __init__(self, store: Store, broker: Broker) -> None:
        self.muted = False
        self.broker = broker
        store.add_listener(self.forward)

    def forward(self, event: Poke | Gap) -> None:
        if not self.muted:
            self.broker.notify(event)


async def drain(sub: Subscription, quiet: float = 0.05) -> list[PokeTuple]:
    """Everything the subscription has to send until it has been idle for ``quiet`` seconds."""
    loop = asyncio.get_running_loop()
    sent: list[PokeTuple] = []
    while True:
        pokes = await sub.next(loop.time() + quiet)
        if not pokes:
            return sent
        sent.extend(pokes)


def high_water(pokes: list[PokeTuple]) -> dict[str, int]:
    marks: dict[str, int] = {}
    for stream, position, _ in pokes:
        marks[stream] = max(position, marks.get(stream, -1))
    return marks


async def test_pokes_arriving_out_of_global_order_are_all_delivered(store: Store) -> None:
    broker = Broker(store)
    sub = broker.subscribe(NS, Filter(stream=None, category="", position=1))
    assert await drain(sub) == []
    # Concurrent commits: global position 11 is announced before 10.
    broker.notify(Poke(NS, "b-1", 0, 11))
    assert await drain(sub) == [("b-1", 0, 11)]
    broker.notify(Poke(NS, "a-1", 0, 10))
    assert await drain(sub) == [("a-1", 0, 10)]


async def test_a_poke_is_dropped_only_when_its_message_was_poked_already(store: Store) -> None:
    broker = Broker(store)
    sub = broker.subscribe(NS, Filter(stream="a-1", category="", position=0))
    assert await drain(sub) == []
    broker.notify(Poke(NS, "a-1", 5, 50))
    broker.notify(Poke(NS, "a-1", 3, 30))  # announced late: not poked yet, so sent
    assert await drain(sub) == [("a-1", 3, 30), ("a-1", 5, 50)]  # queued ones by position
    broker.notify(Poke(NS, "a-1", 5, 50))
    broker.notify(Poke(NS, "a-1", 3, 30))
    broker.notify(Poke(NS, "a-1", 6, 60))
    assert await drain(sub) == [("a-1", 6, 60)]


async def test_concurrent_writes_announced_out_of_order_each_get_their_poke(
    store: Store,
) -> None:
    """Writers to one stream commit 4, 5, 6 in order but announce 6 before 5 (each learns of
    its own commit in its own time); the subscriber must still get 5."""
    broker = Broker(store)
    everything = broker.subscribe(NS, Filter(stream=None, category="", position=1))
    one = broker.subscribe(NS, Filter(stream="h-1", category="", position=0))
    for sub in (everything, one):
        assert await drain(sub) == []
    broker.notify(Poke(NS, "h-1", 4, 40))
    for sub in (everything, one):
        assert await drain(sub) == [("h-1", 4, 40)]
    broker.notify(Poke(NS, "h-1", 6, 60))
    for sub in (everything, one):
        assert await drain(sub) == [("h-1", 6, 60)]
    broker.notify(Poke(NS, "h-1", 5, 50))
    broker.notify(Poke(NS, "h-1", 5, 50))  # a second announcement of it is a duplicate
    for sub in (everything, one):
        assert await drain(sub) == [("h-1", 5, 50)]
    # The first messages of a stream, too: 1 announced before 0.
    broker.notify(Poke(NS, "h-2", 1, 71))
    broker.notify(Poke(NS, "h-2", 0, 70))
    assert await drain(everything) == [("h-2", 0, 70), ("h-2", 1, 71)]


async def test_replay_and_live_overlap_delivers_each_message_once(
    store: Store, broker: Broker
) -> None:
    for _ in range(3):
        await store.write_message(NS, "a-1", "T", {})
    sub = broker.subscribe(NS, Filter(stream=None, category="a", position=1))
    # Written after registration and before the replay read: both replay and live see it.
    await store.write_message(NS, "a-1", "T", {})
    sent = await drain(sub)
    assert [(s, p) for s, p, _ in sent] == [("a-1", 0), ("a-1", 1), ("a-1", 2), ("a-1", 3)]


async def test_live_filter_uses_the_same_consumer_group_rule_as_reads(
    store: Store, broker: Broker
) -> None:
    members = [broker.subscribe(NS, Filter(None, "test", 1, ConsumerGroup(m, 2))) for m in range(2)]
    for stream in ["test-1", "test-2", "test-3", "test-4", "test"]:
        await store.write_message(NS, stream, "T", {})
    got = [sorted(s for s, _, _ in await drain(m)) for m in members]
    # Vectors of the hash rule; "test" has no id and belongs to no member.
    assert got == [["test-1", "test-3"], ["test-2", "test-4"]]


async def test_a_subscriber_that_keeps_up_gets_one_poke_per_message(
    store: Store, broker: Broker
) -> None:
    sub = broker.subscribe(NS, Filter(stream="burst-1", category="", position=0))
    assert await drain(sub) == []
    await asyncio.gather(*(store.write_message(NS, "burst-1", "T", {}) for _ in range(30)))
    sent = await drain(sub)
    assert sorted(p for _, p, _ in sent) == list(range(30))


async def test_slow_subscriber_is_coalesced_then_rereads_without_losing_a_stream(
    store: Store, broker: Broker
) -> None:
    sub = broker.subscribe(NS, Filter(stream=None, category="", position=1))
    assert await drain(sub) == []
    # The client is not reading: nothing calls sub.next() while these are written.
    written: dict[str, int] = {}
    # Fewer streams than a re-read page holds, and more writes than the queue takes.
    streams, rounds = 300, 2 * MAX_PENDING // 300 + 2
    for round_ in range(rounds):
        for i in range(streams):
            result = await store.write_message(NS, f"s-{i}", "T", {"r": round_})
            written[f"s-{i}"] = result.position
        assert sub.pending <= MAX_PENDING
    sent = await drain(sub)
    assert high_water(sent) == written
    assert len(sent) < rounds * streams, "pokes should have been coalesced"
    # What /metrics reports as eventodb_sse_pokes_coalesced_total: every overflow counts the
    # pokes it replaced, more than the queue holds.
    assert broker.pokes_coalesced > MAX_PENDING


async def test_pokes_lost_in_a_gap_are_recovered_from_the_database(store: Store) -> None:
    broker = Broker(store, gap_lookback=0.0)
    gate = Muted(store, broker)
    one = broker.subscribe(NS, Filter(stream="a-1", category="", position=0))
    cat = broker.subscribe(NS, Filter(stream=None, category="a", position=1))
    everything = broker.subscribe(NS, Filter(stream=None, category="", position=1))
    for _ in range(2):
        await store.write_message(NS, "a-1", "T", {})
    await store.write_message(NS, "b-1", "T", {})
    before = [await drain(s) for s in (one, cat, everything)]
    assert [len(b) for b in before] == [2, 2, 3]

    gate.muted = True
    for stream in ["a-1", "a-2", "b-1"]:
        await store.write_message(NS, stream, "T", {})
    assert [await drain(s) for s in (one, cat, everything)] == [[], [], []]
    gate.muted = False
    broker.notify(Gap(NS))

    after = [await drain(s) for s in (one, cat, everything)]
    assert high_water(after[0]) == {"a-1": 2}
    assert high_water(after[1]) == {"a-1": 2, "a-2": 0}
    assert high_water(after[2]) == {"a-1": 2, "a-2": 0, "b-1": 1}
    # Already delivered messages are not sent again.
    assert ("a-1", 0) not in [(s, p) for s, p, _ in after[2]]


async def test_gap_floor_reaches_back_to_writes_still_in_flight(store: Store) -> None:
    """After a gap the re-read starts at a position known to exist ``gap_lookback`` seconds
    before the notification path was last seen alive, not at the newest position seen."""
    broker = Broker(store, gap_lookback=0.2)
    gate = Muted(store, broker)
    sub = broker.subscribe(NS, Filter(stream=None, category="", position=1))
    first = await store.write_message(NS, "a-1", "T", {})
    await drain(sub)
    await asyncio.sleep(0.3)
    # A slow transaction took global position g and its announcement is lost with the
    # connection; a faster one (g + 1) was announced just before the connection died.
    gate.muted = True
    slow = await store.write_message(NS, "slow-1", "T", {})
    gate.muted = False
    broker.notify(Poke(NS, "fast-1", 0, slow.global_position + 1))
    broker.notify(Gap(NS))
    sent = await drain(sub)
    assert ("slow-1", 0, slow.global_position) in sent
    assert ("a-1", 0, first.global_position) not in sent


async def test_a_gap_dated_by_the_store_reaches_back_before_later_local_pokes(
    store: Store,
) -> None:
    """Local writes are published directly, so they say nothing about other processes' writes
    lost with the LISTEN connection: the re-read must start where the store says
    notifications stopped, not at the newest poke seen."""
    broker = Broker(store, gap_lookback=0.0)
    gate = Muted(store, broker)
    sub = broker.subscribe(NS, Filter(stream=None, category="", position=1))
    await store.write_message(NS, "a-1", "T", {})
    await drain(sub)
    await asyncio.sleep(0.05)
    alive_at = asyncio.get_running_loop().time()
    await asyncio.sleep(0.05)
    gate.muted = True
    remote = await store.write_message(NS, "remote-1", "T", {})  # announced only by NOTIFY
    gate.muted = False
    await asyncio.sleep(0.05)
    await store.write_message(NS, "local-1", "T", {})  # published by the store at once
    await drain(sub)
    broker.notify(Gap(None, alive_at))
    sent = await drain(sub)
    assert ("remote-1", 0, remote.global_position) in sent


async def test_close_and_close_namespace_end_subscriptions(store: Store) -> None:
    broker = Broker(store)
    await broker.start()
    await store.create_namespace("other", "1" * 64)
    mine = broker.subscribe(NS, Filter(stream=None, category="", position=1))
    theirs = broker.subscribe("other", Filter(stream=None, category="", position=1))
    assert broker.subscriber_count() == 2
    waiting = asyncio.ensure_future(mine.next(None))
    await asyncio.sleep(0.01)
    broker.close_namespace(NS)
    assert await asyncio.wait_for(waiting, 1) is None
    broker.unsubscribe(mine)
    assert broker.subscriber_count() == 1
    assert await theirs.next(asyncio.get_running_loop().time()) == []
    closing = asyncio.ensure_future(broker.close())
    assert await asyncio.wait_for(theirs.next(None), 1) is None
    broker.unsubscribe(theirs)
    await asyncio.wait_for(closing, 1)
    assert broker.subscriber_count() == 0
    assert broker.subscribe(NS, Filter(None, "", 1)).closed
