"""Batcher: a lone item goes at once, in its caller's task; items arriving while batches
are in flight go together in the next batch; each caller gets its own item's outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from eventodb.store.batching import Batcher


class Recorder:
    """A ``run`` that records each batch and the task it ran in; ``gate`` holds batches back."""

    def __init__(self, *, immediate: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.immediate = immediate

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        if not self.immediate:  # (an immediate run may be driven without an event loop)
            self.tasks.append(asyncio.current_task())
            await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


def finish_without_suspending(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` one step; it must complete in that step (never wait on anything)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return int(done.value)
    coro.close()
    raise AssertionError("the coroutine suspended")


def test_a_lone_submit_completes_without_ever_suspending() -> None:
    run = Recorder(immediate=True)
    batcher: Batcher[int, int] = Batcher(run)
    # No event loop runs here: a timer, a flush task or a wait on other writes would all need
    # one. The write goes straight to ``run`` and back.
    assert finish_without_suspending(batcher.submit(4)) == 40
    assert finish_without_suspending(batcher.submit(6)) == 60
    assert run.batches == [[4], [6]]
    assert (batcher.batches, batcher.items) == (2, 2)


async def test_a_lone_submit_runs_in_its_callers_task() -> None:
    run = Recorder()
    batcher: Batcher[int, int] = Batcher(run)
    for i in (2, 4, 8):
        assert await batcher.submit(i) == i * 10
    me = asyncio.current_task()
    assert run.tasks == [me, me, me]
    assert not batcher._tasks


async def test_a_submit_goes_at_once_while_fewer_than_max_in_flight_run() -> None:
    run = Recorder()
    run.gate.clear()
    batcher: Batcher[int, int] = Batcher(run, max_in_flight=2)
    first = asyncio.create_task(batcher.submit(2))
    second = asyncio.create_task(batcher.submit(4))
    await asyncio.sleep(0)
    assert run.batches == [[2], [4]]  # both went at once, each alone
    third = asyncio.create_task(batcher.submit(6))
    await asyncio.sleep(0)
    assert run.batches == [[2], [4]]  # two in flight: the third waits
    assert batcher._in_flight == 2
    run.gate.set()
    assert list(await asyncio.gather(first, second, third)) == [20, 40, 60]
    assert run.batches == [[2], [4], [6]]


async def test_items_arriving_while_batches_run_go_together_in_order() -> None:
    run = Recorder()
    run.gate.clear()
    batcher: Batcher[int, int] = Batcher(run, max_in_flight=2, max_batch=4)
    held = [asyncio.create_task(batcher.submit(i)) for i in (100, 102)]
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(batcher.submit(i)) for i in (2, 4, 6, 8, 10, 12)]
    await asyncio.sleep(0)
    assert len(batcher._waiting) == 6
    run.gate.set()
    assert await asyncio.gather(*held, *waiting) == [1000, 1020, 20, 40, 60, 80, 100, 120]
    # The held batches finish one after the other; each one's end starts the next batch.
    assert run.batches == [[100], [102], [2, 4, 6, 8], [10, 12]]
    assert (batcher.batches, batcher.items) == (4, 8)
    assert not batcher._tasks


async def test_each_caller_gets_its_own_items_outcome() -> None:
    run = Recorder()
    run.gate.clear()
    batcher: Batcher[int, int] = Batcher(run, max_in_flight=1)
    held = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    calls = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3, 4)]
    await asyncio.sleep(0)
    run.gate.set()
    outcomes = await asyncio.gather(held, *calls, return_exceptions=True)
    assert run.batches == [[0], [1, 2, 3, 4]]
    assert outcomes[0] == 0
    assert [str(o) if isinstance(o, ValueError) else o for o in outcomes[1:]] == [
        "odd 1",
        20,
        "odd 3",
        40,
    ]
    with pytest.raises(ValueError, match="odd 5"):
        await batcher.submit(5)  # alone: its exception is raised too


@pytest.mark.parametrize(("answers", "error"), [(True, RuntimeError), (False, ValueError)])
async def test_a_failing_run_fails_every_item_of_its_batch_and_no_other(
    answers: bool, error: type[Exception]
) -> None:
    """A ``run`` that raises, or that returns the wrong number of outcomes (which ends its
    flush task): the batch's callers get the error, the writes waiting behind it still go."""
    gate = asyncio.Event()

    async def run(items: list[int]) -> list[int | BaseException]:
        await gate.wait()
        if 13 in items:
            if answers:
                raise RuntimeError("batch failed")
            return []
        return list(items)

    batcher: Batcher[int, int] = Batcher(run, max_in_flight=1, max_batch=2)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(i)) for i in (13, 14, 15)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
    assert outcomes[0] == 1
    assert [type(o) for o in outcomes[1:3]] == [error, error]
    assert outcomes[3] == 15
    assert await batcher.submit(16) == 16


async def test_a_caller_that_goes_away_does_not_break_its_batch() -> None:
    run = Recorder()
    run.gate.clear()
    batcher: Batcher[int, int] = Batcher(run, max_in_flight=1)
    held = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.submit(2))
    stays = asyncio.create_task(batcher.submit(4))
    await asyncio.sleep(0)
    gone.cancel()
    run.gate.set()
    assert await held == 0
    assert await stays == 40
    assert gone.cancelled()
    assert run.batches == [[0], [2, 4]]  # the write itself still happened


async def test_batches_that_form_while_one_runs_follow_in_its_task_at_once() -> None:
    """The next batch goes out in the step that answers the previous one: no new task, whose
    first turn would come after whatever else the event loop has queued."""
    held: list[tuple[list[int], asyncio.Event]] = []
    tasks: list[asyncio.Task[Any] | None] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        release = asyncio.Event()
        held.append((list(items), release))
        tasks.append(asyncio.current_task())
        await release.wait()
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run, max_in_flight=1)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    second = [asyncio.create_task(batcher.submit(i)) for i in (2, 4)]
    await asyncio.sleep(0)
    held[0][1].set()
    assert await first == 0
    await asyncio.sleep(0)
    third = [asyncio.create_task(batcher.submit(i)) for i in (6, 8)]
    await asyncio.sleep(0)
    held[1][1].set()
    assert await asyncio.gather(*second) == [20, 40]
    assert [items for items, _ in held] == [[0], [2, 4], [6, 8]]
    held[2][1].set()
    assert await asyncio.gather(*third) == [60, 80]
    assert tasks[1] is tasks[2] is not tasks[0]
    assert not batcher._tasks
