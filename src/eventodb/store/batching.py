"""Batching: concurrent requests of one kind go to the database together, one call per batch.

Group commit: a commit costs a WAL flush; a server with many clients writing at once spends most
of its write time waiting for flushes that could have been shared. Batched reads: each statement
costs a round trip, and on the server most of a short read's CPU is the round trip itself (the
send, the wake-up, the parse of the answer), paid once for a batch instead of once per read.

:class:`Batcher` lets an item that finds the way free go at once (a lone writer or reader waits
for nobody), and makes items that arrive while ``max_in_flight`` batches are running wait for
the next batch, which takes all of them (up to ``max_batch``) in one call. Each caller gets its
own item's outcome, and only after the batch holding it has finished (for writes: committed).

One batch in flight is the default: on Postgres, commits that send a NOTIFY are serialised by
the database anyway, so a second batch in flight mostly waits, and it splits the writers into
smaller batches that each pay a flush (docs/PERFORMANCE.md, "How writes work"). Reads use one
too: a second statement in flight splits the readers into smaller batches, each paying a round
trip, and on two cores measured slower (docs/DESIGN.md, "Batched reads").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Batches items for ``run``, which handles a list of items and returns one outcome each.

    Args:
        run: handles a batch; returns, in item order, each item's result or the exception to
            raise in that item's caller. An exception raised by ``run`` itself fails every item
            of the batch.
        max_in_flight: batches running at once; the next batch forms while they run.
        max_batch: most items in one batch.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        max_in_flight: int = 1,
        max_batch: int = 256,
    ) -> None:
        self._run = run
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches run so far (the ones of a single item included)."""
        self.items = 0
        """Items handled so far; ``items / batches`` is the average batch size."""

    async def submit(self, item: T) -> R:
        """Hand ``item`` to ``run`` (alone at once if nothing runs, else in the next batch)."""
        if self._in_flight < self._max_in_flight and not self._waiting:
            self._in_flight += 1
            try:
                [outcome] = await self._execute([item])
            finally:
                self._in_flight -= 1
                self._start_waiting()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        return await future

    async def _execute(self, items: list[T]) -> list[R | BaseException]:
        self.batches += 1
        self.items += len(items)
        return await self._run(items)

    def _start_waiting(self) -> None:
        while self._waiting and self._in_flight < self._max_in_flight:
            task = asyncio.create_task(self._flush(self._take()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next batch off the waiting items, counted in flight."""
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        self._in_flight += 1
        return batch

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        """Run ``batch``, then, in this same task, the batches that form while it runs: the
        next one goes to the database as soon as this one's answer arrives, instead of after
        a new task's first turn of the event loop (under load, the work already queued in that
        turn keeps the database idle meanwhile)."""
        while batch:
            try:
                try:
                    outcomes = await self._execute([item for item, _ in batch])
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                    outcomes = [exc] * len(batch)
                finally:
                    self._in_flight -= 1
                _answer(batch, outcomes)
            except BaseException as exc:
                # This task ends here: its callers hear why, and a task of its own takes the
                # items waiting behind it (left waiting, they would hold up every later one).
                _fail_unanswered(batch, exc)
                self._start_waiting()
                raise
            more = self._waiting and self._in_flight < self._max_in_flight
            batch = self._take() if more else []


def _answer(batch: list[tuple[T, asyncio.Future[R]]], outcomes: list[R | BaseException]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():  # the caller went away; its item was still handled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _fail_unanswered(batch: list[tuple[T, asyncio.Future[R]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
