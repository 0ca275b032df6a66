"""Waiting for what another process, thread or task makes true: a condition polled until a
deadline, which each caller states (it is the bound the test asserts)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def eventually(condition: Callable[[], bool], within: float, what: str = "the condition") -> None:
    """Poll ``condition()`` every 50 ms (it usually asks another process, over HTTP or by
    reading its log); fail once ``within`` seconds have passed without it, naming ``what``."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting until {what}")
        time.sleep(0.05)


async def eventually_async(
    condition: Callable[[], Awaitable[bool] | bool], within: float, what: str = "the condition"
) -> None:
    """Poll ``condition()`` (a coroutine's result is awaited) every 5 ms, letting other tasks
    run in between: it usually reads state of this process, which is cheap to look at, and the
    tests that wait on it measure how soon something happens. Fails once ``within`` seconds
    have passed without it, naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting until {what}")
        await asyncio.sleep(0.005)
