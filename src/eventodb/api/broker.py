"""Fan-out of pokes from the store to live subscriptions (docs/DESIGN.md, "Live subscriptions").

The store calls :meth:`Broker.notify` on the event loop for every committed write
(:class:`Poke`) and whenever pokes may have been missed (:class:`Gap`). The broker hands each
poke to the subscriptions that want it; each :class:`Subscription` turns what it is offered,
plus what it reads back from the database, into the pokes its client has not seen yet.

Delivery rules, and why they cannot lose a poke:

* **Register first, then replay.** A subscription is in the broker before its replay reads the
  database, so every message is either visible to the replay (committed before the read) or
  announced to the subscription afterwards (committed later).
* **Dedupe per message, never by "next expected".** Replays, re-reads after gaps and live
  pokes overlap, so each subscription remembers, per stream, what it has sent: the highest
  position and the positions below it not sent yet ("holes", within :data:`REORDER_WINDOW`).
  A poke is dropped only when its message was sent already. Holes exist because concurrent
  writers to one stream commit in position order but learn of their commits — and publish
  them — in any order: position 7 may be announced before 6, and 6 must still be sent.
  Global positions are *not* committed in order across streams, so they never decide a drop.
* **Coalesce, do not drop.** Undelivered pokes wait in a map keyed by stream that keeps only
  the latest position (enough for the client to fetch from). When that map outgrows its bound
  it is replaced by a database re-read from its lowest global position, which covers every
  entry it held.
* **Gaps re-read.** After a :class:`Gap` each affected subscription re-reads from a position
  that cannot be later than any write the broker could have missed (see :class:`_Horizon`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from eventodb.core.hashing import group_member
from eventodb.core.streams import category
from eventodb.store.base import ConsumerGroup, Gap, NamespaceChange, Poke, Store

log = logging.getLogger("eventodb.subscriptions")

PAGE_SIZE = 1000
"""Messages read from the database per replay query."""

SUMMARY_PAGE_SIZE = 10_000
"""Messages per query when a re-read replaces overflowed pokes (one poke per stream per page):
large, so that streams repeat within a page and the summary is short."""

MAX_PENDING = 1024
"""Undelivered pokes a subscription queues, one per message, before it coalesces them into a
re-read from the database (one poke per stream and page: the latest position)."""

MAX_SEEN_STREAMS = 1024
"""Streams whose delivered high-water mark a subscription remembers (forgetting one only risks a
duplicate poke, never a lost one)."""

REORDER_WINDOW = 1024
"""How far below a stream's highest sent position a message may still be announced for the
first time (writes to one stream that finished together, announced in another order). Unsent
positions further below count as sent; each hole costs a pair of integers."""

GAP_LOOKBACK = 30.0
"""Seconds: after a gap, re-read from the highest global position known to exist this long
before the last sign of life of the notification path. Any write whose transaction took less
time than this is covered."""

CLOSE_GRACE = 5.0
"""Seconds :meth:`Broker.close` waits for subscriptions to finish their responses."""


PokeTuple = tuple[str, int, int]
"""``(stream, position, global_position)`` as sent to the client."""


@dataclass(frozen=True, slots=True)
class Filter:
    """What a subscription wants (the parameters of ``/subscribe``, docs/API.md).

    ``stream`` set: one stream, ``position`` is a stream position. Otherwise ``category`` (``""``
    for the whole namespace), ``position`` a global position, and an optional consumer group.
    """

    stream: str | None
    category: str
    position: int
    group: ConsumerGroup | None = None


class Subscription:
    """One client's delivery state: pending pokes, re-read requests and what it has been sent.

    The client's response loop calls :meth:`next` repeatedly; the broker calls :meth:`offer`,
    :meth:`request_reread` and :meth:`end`.
    """

    __slots__ = (
        "_cursor",
        "_holes",
        "_pending",
        "_reread_from",
        "_seen",
        "_summarise",
        "_waiter",
        "broker",
        "closed",
        "filter",
        "namespace",
        "sending",
        "store",
        "task",
    )

    def __init__(self, broker: Broker, namespace: str, filter: Filter) -> None:
        self.broker = broker
        self.store = broker.store
        self.namespace = namespace
        self.filter = filter
        self.closed = False
        self.task: asyncio.Task[object] | None = None
        """The task running the client's response; cancelled by :meth:`end` while it is stuck
        writing to a client that does not read."""
        self.sending = False
        self._pending: list[PokeTuple] = []
        self._seen: dict[str, int] = {}
        """Per stream, the highest position sent (least recently used first)."""
        self._holes: dict[str, list[list[int]]] = {}
        """Per stream with any, ``[low, high]`` ranges below its highest sent position whose
        messages have not been sent yet."""
        self._reread_from: int | None = filter.position
        """The initial replay is simply the first re-read."""
        self._summarise = False
        """Whether the current re-read replaces overflowed pokes: then each page sends one poke
        per stream (its latest position) instead of one per message."""
        self._cursor: int | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- called by the broker ------------------------------------------------------------------

    def wants(self, poke: Poke, members: dict[int, int | None]) -> bool:
        """Whether ``poke`` matches the filter. ``members`` caches group membership per size."""
        f = self.filter
        if f.stream is not None:
            return poke.position >= f.position
        if poke.global_position < f.position:
            return False
        if f.group is None:
            return True
        size = f.group.size
        if size not in members:
            members[size] = group_member(poke.stream, size)
        return members[size] == f.group.member

    def offer(self, poke: Poke) -> None:
        """Queue a matching poke: one per message while the client keeps up."""
        if self.closed or self._covered(poke.stream, poke.position):
            return
        self._pending.append((poke.stream, poke.position, poke.global_position))
        if len(self._pending) > MAX_PENDING:
            # The client cannot keep up. Every pending poke is a committed message at or above
            # the lowest global position held, so one re-read from there delivers all of them
            # (or later positions), coalesced to one poke per stream per page.
            lowest = min(gp for _, _, gp in self._pending)
            self.broker.pokes_coalesced += len(self._pending)
            self._pending.clear()
            self._summarise = True
            self.request_reread(lowest)
            return
        self._wake()

    def request_reread(self, position: int) -> None:
        """Ask for every matching message from ``position`` to be read back from the database.

        ``position`` is a stream position for stream subscriptions, global otherwise.
        """
        if self.closed:
            return
        if self._reread_from is None or position < self._reread_from:
            self._reread_from = position
        self._wake()

    def on_gap(self, floor: int | None) -> None:
        """Pokes may have been missed; ``floor`` is a global position no missed write is below."""
        f = self.filter
        if f.stream is not None:
            # Positions of one stream commit in order: anything missed is after the last sent,
            # or in a hole below it.
            seen = self._seen.get(f.stream)
            holes = self._holes.get(f.stream)
            start = f.position if seen is None else seen + 1
            if holes:
                start = min(start, *(low for low, _ in holes))
            self.request_reread(max(f.position, start))
        else:
            self.request_reread(f.position if floor is None else max(f.position, floor))

    def end(self) -> None:
        """Finish the subscription (client gone, namespace deleted or server shutting down)."""
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        self._seen.clear()
        self._holes.clear()
        self._wake()
        if self.sending and self.task is not None and not self.task.done():
            self.task.cancel(_END)

    @property
    def pending(self) -> int:
        """Undelivered pokes (bounded by :data:`MAX_PENDING`)."""
        return len(self._pending)

    # -- called by the client's response loop --------------------------------------------------

    async def next(self, deadline: float | None) -> list[PokeTuple] | None:
        """The next pokes to send, in order.

        Returns:
            A non-empty list of pokes; ``[]`` when ``deadline`` (event-loop time) passed with
            nothing to send; ``None`` once the subscription has ended.

        Raises:
            EventoDBError: reading the database failed (e.g. the namespace was deleted).
        """
        loop = asyncio.get_running_loop()
        while not self.closed:
            if self._reread_from is not None:
                start, self._reread_from = self._reread_from, None
                self._cursor = start if self._cursor is None else min(self._cursor, start)
            if self._cursor is not None:
                pokes = await self._read_page(self._cursor)
                if pokes:
                    return pokes
                continue
            if self._pending:
                pokes = self._take_pending()
                if pokes:
                    return pokes
                continue
            if deadline is not None and loop.time() >= deadline:
                return []
            await self._wait(loop, deadline)
        return None

    # -- internals -----------------------------------------------------------------------------

    def _covered(self, stream: str, position: int) -> bool:
        """Whether the message at ``position`` of ``stream`` has been sent already."""
        seen = self._seen.get(stream)
        if seen is None or position > seen:
            return False
        holes = self._holes.get(stream)
        if holes is not None:
            for low, high in holes:
                if low <= position <= high:
                    return False
        return True

    def _mark(self, stream: str, position: int, *, covers_below: bool = False) -> None:
        """Record that the message at ``position`` is being sent.

        Args:
            covers_below: the poke stands for every earlier position too (a coalesced re-read
                sends only the latest position per stream): no holes below it remain.
        """
        seen = self._seen
        last = seen.pop(stream, None)  # re-inserted at the end: the order is least recently used
        if last is None and len(seen) >= MAX_SEEN_STREAMS:
            forgotten = next(iter(seen))
            del seen[forgotten]
            self._holes.pop(forgotten, None)
        holes = self._holes.pop(stream, None)
        if last is not None and position <= last:
            seen[stream] = last
            if holes is not None:
                holes = _fill(holes, position)
        else:
            seen[stream] = position
            floor = position - REORDER_WINDOW
            if holes is not None:
                holes = [h for h in holes if h[1] >= floor]
            # Positions skipped over may still be announced (for a stream seen for the first
            # time, any below it within the window: the subscription cannot tell).
            low = max(floor, 0 if last is None else last + 1, self.filter_floor)
            if low < position:
                holes = [*(holes or ()), [low, position - 1]]
        if covers_below:
            holes = None
        if holes:
            self._holes[stream] = holes

    @property
    def filter_floor(self) -> int:
        """The lowest stream position a poke may be for: a stream subscription's start."""
        f = self.filter
        return f.position if f.stream is not None else 0

    def _take_pending(self) -> list[PokeTuple]:
        pending, self._pending = self._pending, []
        if len(pending) > 1:
            pending.sort(key=_global_position)  # per stream, in position order
        pokes: list[PokeTuple] = []
        for stream, position, global_position in pending:
            if not self._covered(stream, position):
                self._mark(stream, position)
                pokes.append((stream, position, global_position))
        return pokes

    async def _read_page(self, cursor: int) -> list[PokeTuple]:
        f = self.filter
        size = SUMMARY_PAGE_SIZE if self._summarise else PAGE_SIZE
        found: list[PokeTuple]
        if f.stream is not None:
            found = await self.store.stream_positions(
                self.namespace, f.stream, position=cursor, batch_size=size
            )
            after = found[-1][1] + 1 if found else cursor
        else:
            found = await self.store.category_positions(
                self.namespace, f.category, position=cursor, batch_size=size, consumer_group=f.group
            )
            after = found[-1][2] + 1 if found else cursor
        # Requests that arrived during the read wait in _reread_from; next() merges them.
        self._cursor = None if len(found) < size else after
        if found:
            self.broker.observe(self.namespace, max(gp for _, _, gp in found))
        if self._summarise:
            if self._cursor is None:
                self._summarise = False
            # Latest message per stream, in order of each stream's last appearance.
            latest = {located[0]: located for located in found}
            found = sorted(latest.values(), key=lambda located: located[2])
        pokes: list[PokeTuple] = []
        coalesced = self._summarise
        for stream, position, global_position in found:
            if not self._covered(stream, position):
                self._mark(stream, position, covers_below=coalesced)
                pokes.append((stream, position, global_position))
        return pokes

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, _end_wait, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _fill(holes: list[list[int]], position: int) -> list[list[int]] | None:
    """``holes`` without ``position`` (a late message is being sent)."""
    result: list[list[int]] = []
    for low, high in holes:
        if low <= position <= high:
            if low < position:
                result.append([low, position - 1])
            if position < high:
                result.append([position + 1, high])
        else:
            result.append([low, high])
    return result or None


def _global_position(poke: PokeTuple) -> int:
    return poke[2]


_END = "subscription ended"
"""Cancellation message marking a cancel issued by :meth:`Subscription.end`."""


def _end_wait(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def ended_by_us(error: asyncio.CancelledError) -> bool:
    """Whether a cancellation was :meth:`Subscription.end` interrupting a stuck write."""
    return bool(error.args) and error.args[0] == _END


class _Horizon:
    """Pairs (time, g) meaning "global position g existed by that event-loop time".

    After a gap, the highest g known to exist ``GAP_LOOKBACK`` seconds before the notification
    path was last seen alive is a safe floor to re-read from: a write missed during the gap got
    its global position when its transaction started, later than that.
    """

    __slots__ = ("_points",)

    SPACING = 1.0
    KEEP = 300.0

    def __init__(self) -> None:
        self._points: deque[tuple[float, int]] = deque()

    def observe(self, now: float, global_position: int) -> None:
        points = self._points
        if points and global_position <= points[-1][1]:
            return
        if len(points) >= 2 and now - points[-2][0] < self.SPACING:
            # Points stay about a second apart: move the newest one forward instead of adding.
            # Forgetting the pair it held only makes later floors lower, i.e. safer.
            points[-1] = (now, global_position)
        else:
            points.append((now, global_position))
        while len(points) > 2 and now - points[1][0] > self.KEEP:
            points.popleft()

    def floor(self, before: float) -> int | None:
        best: int | None = None
        for t, g in self._points:
            if t > before:
                break
            best = g
        return best


class _NamespaceSubscriptions:
    __slots__ = ("all", "by_category", "by_stream", "horizon")

    def __init__(self) -> None:
        self.by_stream: dict[str, set[Subscription]] = {}
        self.by_category: dict[str, set[Subscription]] = {}
        self.all: set[Subscription] = set()
        self.horizon = _Horizon()

    def everyone(self) -> list[Subscription]:
        subs = list(self.all)
        for group in self.by_stream.values():
            subs.extend(group)
        for group in self.by_category.values():
            subs.extend(group)
        return subs


class Broker:
    """Routes pokes from the store to subscriptions, indexed by namespace, stream and category.

    Lifecycle: ``await start()`` once the store is open; ``close_namespace(ns)`` after a
    namespace is deleted; ``await close()`` first thing on graceful shutdown.
    """

    def __init__(self, store: Store, *, gap_lookback: float = GAP_LOOKBACK) -> None:
        self.store = store
        self.gap_lookback = gap_lookback
        self.closed = False
        self._namespaces: dict[str, _NamespaceSubscriptions] = {}
        self._count = 0
        self._unlisten: list[Callable[[], None]] = []
        self._alive_at = 0.0
        self._drained: asyncio.Event | None = None
        self.pokes_sent = 0
        """Pokes written to clients (counted by the SSE handler; ``/metrics``)."""
        self.pokes_coalesced = 0
        """Pokes dropped from overflowing queues in favour of a re-read (``/metrics``)."""

    async def start(self) -> None:
        self._alive_at = asyncio.get_running_loop().time()
        self._unlisten = [
            self.store.add_listener(self.notify),
            self.store.add_namespace_listener(self._namespace_changed),
        ]

    async def close(self) -> None:
        """End every subscription and wait (briefly) for their responses to finish."""
        self.closed = True
        for sub in self.subscriptions():
            sub.end()
        if self._count:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), CLOSE_GRACE)
            except TimeoutError:
                log.warning("%d subscriptions still open after shutdown grace", self._count)
        unlisten, self._unlisten = self._unlisten, []
        for stop in unlisten:
            stop()

    def close_namespace(self, namespace: str) -> None:
        """End the subscriptions of a deleted namespace."""
        subs = self._namespaces.get(namespace)
        if subs is not None:
            for sub in subs.everyone():
                sub.end()

    def _namespace_changed(self, change: NamespaceChange) -> None:
        """Another process deleted a namespace or replaced its token: the tokens our
        subscribers authenticated with may be revoked, so their streams end (clients
        reconnect, and authenticate again)."""
        if change.kind == "created":
            return
        if change.namespace is None:
            for sub in self.subscriptions():
                sub.end()
        else:
            self.close_namespace(change.namespace)

    def subscriber_count(self) -> int:
        """Open subscriptions (for health reporting and leak tests)."""
        return self._count

    def subscriptions(self) -> list[Subscription]:
        """Every open subscription (diagnostics and tests)."""
        return [sub for ns in self._namespaces.values() for sub in ns.everyone()]

    def namespaces_indexed(self) -> int:
        """Namespaces with an index entry; 0 once every subscription has ended (leak tests)."""
        return len(self._namespaces)

    # -- registration --------------------------------------------------------------------------

    def subscribe(self, namespace: str, filter: Filter) -> Subscription:
        """Register a subscription; it receives every poke from now on."""
        sub = Subscription(self, namespace, filter)
        if self.closed:
            sub.end()
            return sub
        ns = self._namespaces.get(namespace)
        if ns is None:
            ns = self._namespaces[namespace] = _NamespaceSubscriptions()
        if filter.stream is not None:
            ns.by_stream.setdefault(filter.stream, set()).add(sub)
        elif filter.category:
            ns.by_category.setdefault(filter.category, set()).add(sub)
        else:
            ns.all.add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription; idempotent."""
        sub.end()
        ns = self._namespaces.get(sub.namespace)
        if ns is None:
            return
        f = sub.filter
        removed = False
        if f.stream is not None:
            removed = _discard(ns.by_stream, f.stream, sub)
        elif f.category:
            removed = _discard(ns.by_category, f.category, sub)
        elif sub in ns.all:
            ns.all.discard(sub)
            removed = True
        if not removed:
            return
        self._count -= 1
        if not ns.all and not ns.by_stream and not ns.by_category:
            del self._namespaces[sub.namespace]
        if self._count == 0 and self._drained is not None:
            self._drained.set()

    def observe(self, namespace: str, global_position: int) -> None:
        """Record that ``global_position`` exists (from a database read) for gap recovery."""
        ns = self._namespaces.get(namespace)
        if ns is not None:
            ns.horizon.observe(asyncio.get_running_loop().time(), global_position)

    # -- events from the store ----------------------------------------------------------------

    def notify(self, event: Poke | Gap) -> None:
        """The store listener (registered by :meth:`start`): route a poke, or recover a gap."""
        now = asyncio.get_running_loop().time()
        if isinstance(event, Gap):
            self._on_gap(event, now)
            return
        self._alive_at = now
        ns = self._namespaces.get(event.namespace)
        if ns is None:
            return
        ns.horizon.observe(now, event.global_position)
        members: dict[int, int | None] = {}
        for sub in _targets(ns, event):
            if sub.wants(event, members):
                sub.offer(event)

    def _on_gap(self, gap: Gap, now: float) -> None:
        # Pokes were flowing up to alive_at; anything missed started after that, minus slack.
        alive = self._alive_at if gap.alive_at is None else min(gap.alive_at, self._alive_at)
        before = alive - self.gap_lookback
        self._alive_at = now
        names = list(self._namespaces) if gap.namespace is None else [gap.namespace]
        for name in names:
            ns = self._namespaces.get(name)
            if ns is None:
                continue
            floor = ns.horizon.floor(before)
            log.info("re-reading subscriptions of %r after a notification gap", name)
            for sub in ns.everyone():
                sub.on_gap(floor)


def _targets(ns: _NamespaceSubscriptions, poke: Poke) -> list[Subscription]:
    targets: list[Subscription] = []
    by_stream = ns.by_stream.get(poke.stream)
    if by_stream:
        targets.extend(by_stream)
    by_category = ns.by_category.get(category(poke.stream))
    if by_category:
        targets.extend(by_category)
    if ns.all:
        targets.extend(ns.all)
    return targets


def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> bool:
    group = index.get(key)
    if group is None or sub not in group:
        return False
    group.discard(sub)
    if not group:
        del index[key]
    return True
