"""Consumers: process a category from where they left off, wake on pokes, scale out in groups.

A consumer loops: read a batch of the category from its position (only its member's share when
it is part of a group), hand each message to the handler, and store its position every
``position_update_interval`` messages. When a batch comes back short it has caught up and waits
for a poke of a subscription opened at its position, so it neither polls nor misses a message
written while it was reading. A graceful stop (:meth:`Consumer.stop`, SIGINT, SIGTERM) finishes
the message in hand and stores the position.

Guarantees (docs/CLIENT.md, "Consumers"):

* every message of the category (of the member's share) is handled at least once, in global
  position order;
* after a crash, a consumer handles again at most ``position_update_interval`` messages — those
  after the last stored position;
* without crashes, each message is handled exactly once by each consumer (by exactly one
  member of each group).

:class:`Consumer` runs on the blocking client, :class:`AsyncConsumer` on the asyncio client;
the bookkeeping they share is :class:`ConsumerCore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypedDict, TypeVar, Unpack

from eventodb.client.aio import AsyncEventoDB, AsyncSubscription
from eventodb.client.errors import EventoDBError, MethodNotFound, TransportError
from eventodb.client.models import ConsumerGroup, Message
from eventodb.client.positions import (
    AsyncPositionStore,
    AsyncStreamPositionStore,
    PositionStore,
    StreamPositionStore,
    check_category,
    position_stream_name,
)
from eventodb.client.rpc import MAX_BATCH_SIZE
from eventodb.client.sync import EventoDB, Subscription

log = logging.getLogger("eventodb.client.consumer")

T = TypeVar("T")


def transient(exc: BaseException) -> bool:
    """Errors a consumer outlives by waiting and trying again: no answer (the server is
    restarting), or a server-side failure (its database is unreachable)."""
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, EventoDBError) and exc.status is not None and exc.status >= 500


class ConsumerOptions(TypedDict, total=False):
    """The optional keyword arguments of both consumers (see :class:`Consumer`)."""

    name: str | None
    group: ConsumerGroup | tuple[int, int] | None
    batch_size: int
    position_update_interval: int
    correlation: str | None
    start_position: int


class ConsumerCore:
    """The part of a consumer that does no I/O: what to read, its position, when to store it.

    Attributes:
        position: the global position the next read starts from.
        last_stored: the last position stored (``None``: none yet).
    """

    def __init__(
        self,
        category: str,
        *,
        name: str | None = None,
        group: ConsumerGroup | tuple[int, int] | None = None,
        batch_size: int = 100,
        position_update_interval: int = 100,
        correlation: str | None = None,
        start_position: int = 1,
    ) -> None:
        """The arguments are :class:`Consumer`'s.

        Raises:
            ValueError: for a category with ``-``, a batch size outside 1 to 10,000, an
                interval below 1 or a member outside its group.
        """
        check_category(category)
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if position_update_interval < 1:
            raise ValueError("position_update_interval must be at least 1")
        self.category = category
        self.name = name
        self.group = None if group is None else ConsumerGroup(*group)
        if self.group is not None and not 0 <= self.group.member < self.group.size:
            raise ValueError(f"invalid consumer group {self.group}: need 0 <= member < size")
        self.batch_size = batch_size
        self.position_update_interval = position_update_interval
        self.correlation = correlation
        self.start_position = start_position
        self.position = start_position
        self.reads_up_to_head = category == ""
        """Reads stop at the server's head (``ns.head``). On Postgres messages of different
        categories can become visible out of order, so a consumer of every category that read
        past one still committing would never see it; within one category they cannot.
        ``False`` once the server turns out not to have ``ns.head`` (the Go server)."""
        self.last_stored: int | None = None
        self._last_handled: int | None = None
        self._unstored = 0

    def position_stream(self) -> str:
        """The default position stream: see :func:`position_stream_name`."""
        return position_stream_name(self.category, self.name, self.group)

    def resume(self, stored: int | None) -> None:
        """Start after the stored position (or at ``start_position`` when there is none)."""
        self.last_stored = stored
        self._last_handled = stored
        self._unstored = 0
        self.position = self.start_position if stored is None else stored + 1

    def read_options(self) -> dict[str, Any]:
        """Keyword arguments of ``get_category`` for the next batch."""
        return {
            "position": self.position,
            "batch_size": self.batch_size,
            "correlation": self.correlation,
            "consumer_group": self.group,
        }

    def handled(self, message: Message) -> int | None:
        """Note a handled message; the position to store now, when an update is due."""
        self.position = message.global_position + 1
        self._last_handled = message.global_position
        self._unstored += 1
        if self._unstored >= self.position_update_interval:
            return message.global_position
        return None

    def pending(self) -> int | None:
        """The position to store at a stop: the last handled one, if not stored yet."""
        return self._last_handled if self._unstored else None

    def stored(self, position: int) -> None:
        """Note a successful store."""
        self.last_stored = position
        if position == self._last_handled:
            self._unstored = 0

    def within_head(self, batch: list[Message], head: int | None) -> tuple[list[Message], bool]:
        """The messages of ``batch`` at or below ``head`` (all when ``None``), and whether any
        were left out (they are read again, below a new head)."""
        if head is None or not batch or batch[-1].global_position <= head:
            return batch, False
        kept = [m for m in batch if m.global_position <= head]
        return kept, True

    def caught_up(self, batch: list[Message]) -> bool:
        """A short batch: nothing more to read until a new message is written."""
        return len(batch) < self.batch_size


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None], install: bool) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM call ``stop`` (only from the main thread,
    where Python delivers signals); the previous handlers come back afterwards."""
    if not install or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        stop()  # nothing that takes a lock here: the interrupted code may hold it

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Consumer:
    """Processes a category with the blocking client, from where it left off.

    Args:
        client: the client (its token decides the namespace).
        category: the category to read (``account``); ``""`` reads every category and then
            needs a ``position_store``.
        handler: called with each :class:`Message`, in global position order. When it raises,
            the consumer stores the position of the message before and re-raises from
            :meth:`run`.
        name: the consumer's name: it names the position stream
            (``account:position-<name>``); consumers with different names keep separate
            positions.
        position_store: where to keep the position; by default a position stream in the event
            store (:class:`StreamPositionStore`).
        group: ``(member, size)``: handle only this member's share of the category. Start one
            consumer per member, with the same name.
        batch_size: messages read per request.
        position_update_interval: store the position after this many handled messages. After
            a crash, at most this many messages are handled again.
        correlation: handle only messages whose ``metadata.correlationStreamName`` is in this
            category.
        start_position: the global position to start from when no position is stored.

    Example::

        def handle(message: Message) -> None:
            print(message.stream_name, message.type, message.data)

        Consumer(db, "account", handle, name="printer").run()  # until SIGINT or SIGTERM
    """

    def __init__(
        self,
        client: EventoDB,
        category: str,
        handler: Callable[[Message], object],
        *,
        position_store: PositionStore | None = None,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        self.client = client
        self.handler = handler
        self.core = ConsumerCore(category, **options)
        self.position_store: PositionStore = position_store or StreamPositionStore(
            client, self.core.position_stream()
        )
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._latest_poke = 0
        """The highest global position poked so far."""
        self._subscription: Subscription | None = None
        self._watcher: threading.Thread | None = None
        self._watch_error: BaseException | None = None

    @property
    def position(self) -> int:
        """The global position the next read starts from."""
        return self.core.position

    def stop(self) -> None:
        """Ask :meth:`run` to return after the message in hand (from any thread)."""
        log.info("stopping the consumer of %r", self.core.category)
        self._stopping.set()
        self._wake.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.close()

    def run(self, *, until_idle: bool = False, install_signal_handlers: bool = True) -> None:
        """Process messages until :meth:`stop` is called or SIGINT/SIGTERM arrives.

        Args:
            until_idle: return as soon as everything written so far is processed.
            install_signal_handlers: make SIGINT and SIGTERM stop the consumer gracefully
                (only when called from the main thread).

        Raises:
            Whatever the handler raised; EventoDBError for errors that waiting does not cure
            (authentication, a deleted namespace). Server restarts and network failures are
            waited out.
        """
        self._watch_error = None

        def stop_soon() -> None:
            # Not in the signal handler itself: stop() takes locks the interrupted code may hold.
            threading.Thread(target=self.stop, daemon=True).start()

        try:
            self.core.resume(self._retrying(self.position_store.get))
            with stop_on_signals(stop_soon, install_signal_handlers):
                self._loop(until_idle)
        except _Stopped:
            pass
        finally:
            self._close_watch()
            self._store_pending()
            self._stopping.clear()

    def _loop(self, until_idle: bool) -> None:
        while not self._stopping.is_set():
            horizon = self._latest_poke
            head = self._head()
            batch, cut = self.core.within_head(
                self._retrying(
                    lambda: self.client.get_category(self.core.category, **self.core.read_options())
                ),
                head,
            )
            for message in batch:
                if self._stopping.is_set():
                    return
                self.handler(message)
                due = self.core.handled(message)
                if due is not None:
                    self._store(due)
            if cut or not self.core.caught_up(batch):
                continue
            if until_idle:
                return
            self._wait_for_poke(horizon)

    def _head(self) -> int | None:
        """Where the next read must stop (see ``ConsumerCore.reads_up_to_head``)."""
        if not self.core.reads_up_to_head:
            return None
        try:
            return self._retrying(self.client.head).global_position
        except MethodNotFound:
            self.core.reads_up_to_head = False
            return None

    def _wait_for_poke(self, horizon: int) -> None:
        """Wait for a poke of a message beyond ``horizon``, the highest one poked before the
        last read began (later pokes may be of messages that read did not see)."""
        if self._watcher is None:
            self._start_watch()
        while not self._stopping.is_set():
            self._wake.clear()
            if self._latest_poke > horizon:
                return
            if self._watch_error is not None:
                raise self._watch_error
            self._wake.wait()

    def _start_watch(self) -> None:
        # Every category: the server pokes for the whole namespace ("all"), not for category "".
        subscription = (
            self.client.subscribe_all(position=self.core.position)
            if self.core.category == ""
            else self.client.subscribe_category(
                self.core.category, position=self.core.position, consumer_group=self.core.group
            )
        )
        self._subscription = subscription
        self._retrying(subscription.connect)
        self._watcher = threading.Thread(
            target=self._watch, args=(subscription,), name="eventodb-consumer-pokes", daemon=True
        )
        self._watcher.start()

    def _watch(self, subscription: Subscription) -> None:
        try:
            for poke in subscription:
                self._latest_poke = max(self._latest_poke, poke.global_position)
                self._wake.set()
        except (EventoDBError, ValueError) as exc:  # handed to the consumer's thread
            self._watch_error = exc
        finally:
            if self._watch_error is None and not self._stopping.is_set():
                self._watch_error = TransportError("the consumer's subscription ended")
            self._wake.set()

    def _close_watch(self) -> None:
        subscription, self._subscription = self._subscription, None
        watcher, self._watcher = self._watcher, None
        if subscription is not None:
            subscription.close()
        if watcher is not None:
            watcher.join(10)

    def _store(self, position: int) -> None:
        self._retrying(lambda: self.position_store.put(position))
        self.core.stored(position)

    def _store_pending(self) -> None:
        position = self.core.pending()
        if position is None:
            return
        try:
            self.position_store.put(position)
        except Exception:
            log.exception("could not store position %d; it will be handled again", position)
        else:
            self.core.stored(position)

    def _retrying(self, action: Callable[[], T]) -> T:
        """``action()``, retried after transient failures until it succeeds.

        Raises:
            _Stopped: the consumer was stopped meanwhile.
        """
        failures = 0
        while not self._stopping.is_set():
            try:
                return action()
            except EventoDBError as exc:
                if not transient(exc):
                    raise
                delay = self.client.config.delay(failures)
                failures += 1
                log.warning("consumer waiting %.1fs after: %s", delay, exc)
                self._stopping.wait(delay)
        raise _Stopped


class AsyncConsumer:
    """Processes a category with the asyncio client, from where it left off.

    The arguments are those of :class:`Consumer`; ``handler`` may be a coroutine function or a
    plain function, and ``position_store`` an :class:`AsyncPositionStore`.

    :meth:`stop` must be called from the consumer's event loop (from another thread:
    ``loop.call_soon_threadsafe(consumer.stop)``). Cancelling :meth:`run` abandons the consumer
    like a crash: the position is not stored, so up to ``position_update_interval`` messages
    are handled again by the next run; :meth:`stop` is the graceful way.
    """

    def __init__(
        self,
        client: AsyncEventoDB,
        category: str,
        handler: Callable[[Message], Awaitable[object] | object],
        *,
        position_store: AsyncPositionStore | None = None,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        self.client = client
        self.handler = handler
        self.core = ConsumerCore(category, **options)
        self.position_store: AsyncPositionStore = position_store or AsyncStreamPositionStore(
            client, self.core.position_stream()
        )
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._latest_poke = 0
        """The highest global position poked so far."""
        self._subscription: AsyncSubscription | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def position(self) -> int:
        """The global position the next read starts from."""
        return self.core.position

    def stop(self) -> None:
        """Ask :meth:`run` to return after the message in hand."""
        log.info("stopping the consumer of %r", self.core.category)
        self._stopping.set()
        self._wake.set()

    async def run(self, *, until_idle: bool = False, install_signal_handlers: bool = True) -> None:
        """Like :meth:`Consumer.run`."""
        loop = asyncio.get_running_loop()

        def stop_soon() -> None:
            loop.call_soon_threadsafe(self.stop)

        try:
            self.core.resume(await self._retrying(self.position_store.get))
            with stop_on_signals(stop_soon, install_signal_handlers):
                await self._loop(until_idle)
        except _Stopped:
            pass
        except asyncio.CancelledError:
            await self._close_watch()  # abandoned like a crash: no position stored
            self._stopping.clear()
            raise
        except BaseException:
            await self._finish()
            raise
        await self._finish()

    async def _finish(self) -> None:
        await self._close_watch()
        await self._store_pending()
        self._stopping.clear()

    async def _loop(self, until_idle: bool) -> None:
        while not self._stopping.is_set():
            horizon = self._latest_poke
            head = await self._head()
            batch, cut = self.core.within_head(
                await self._retrying(
                    lambda: self.client.get_category(self.core.category, **self.core.read_options())
                ),
                head,
            )
            for message in batch:
                if self._stopping.is_set():
                    return
                result = self.handler(message)
                if inspect.isawaitable(result):
                    await result
                due = self.core.handled(message)
                if due is not None:
                    await self._store(due)
            if cut or not self.core.caught_up(batch):
                continue
            if until_idle:
                return
            await self._wait_for_poke(horizon)

    async def _head(self) -> int | None:
        """Like :meth:`Consumer._head`."""
        if not self.core.reads_up_to_head:
            return None
        try:
            return (await self._retrying(self.client.head)).global_position
        except MethodNotFound:
            self.core.reads_up_to_head = False
            return None

    async def _wait_for_poke(self, horizon: int) -> None:
        """Like :meth:`Consumer._wait_for_poke`."""
        if self._watcher is None:
            await self._start_watch()
        while not self._stopping.is_set():
            self._wake.clear()
            if self._latest_poke > horizon:
                return
            watcher = self._watcher
            if watcher is not None and watcher.done():
                error = watcher.exception()
                raise error or TransportError("the consumer's subscription ended")
            await self._wake.wait()

    async def _start_watch(self) -> None:
        # Every category: the server pokes for the whole namespace ("all"), not for category "".
        subscription = (
            self.client.subscribe_all(position=self.core.position)
            if self.core.category == ""
            else self.client.subscribe_category(
                self.core.category, position=self.core.position, consumer_group=self.core.group
            )
        )
        self._subscription = subscription
        await self._retrying(subscription.connect)
        self._watcher = asyncio.create_task(self._watch(subscription))

    async def _watch(self, subscription: AsyncSubscription) -> None:
        try:
            async for poke in subscription:
                self._latest_poke = max(self._latest_poke, poke.global_position)
                self._wake.set()
        finally:
            self._wake.set()

    async def _close_watch(self) -> None:
        subscription, self._subscription = self._subscription, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, EventoDBError, ValueError):
                await watcher
        if subscription is not None:
            await subscription.aclose()

    async def _store(self, position: int) -> None:
        await self._retrying(lambda: self.position_store.put(position))
        self.core.stored(position)

    async def _store_pending(self) -> None:
        position = self.core.pending()
        if position is None:
            return
        try:
            await self.position_store.put(position)
        except Exception:
            log.exception("could not store position %d; it will be handled again", position)
        else:
            self.core.stored(position)

    async def _retrying(self, action: Callable[[], Awaitable[T]]) -> T:
        """Like :meth:`Consumer._retrying`."""
        failures = 0
        while not self._stopping.is_set():
            try:
                return await action()
            except EventoDBError as exc:
                if not transient(exc):
                    raise
                delay = self.client.config.delay(failures)
                failures += 1
                log.warning("consumer waiting %.1fs after: %s", delay, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        raise _Stopped


class _Stopped(Exception):
    """The consumer was stopped while waiting out a failure."""
