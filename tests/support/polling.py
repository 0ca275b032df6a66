"""Waiting for what another process, thread or task makes true: a condition polled until a
deadline, which each caller states (it is the bound the test asserts)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def eventually(condition: Callable[[], bool], within: float) -> None:
    """Poll ``condition()`` every 50 ms; fail once ``within`` seconds have passed without it."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within} s")
        time.sleep(0.05)


async def eventually_async(
    condition: Callable[[], Awaitable[bool] | bool], within: float, what: str = "condition"
) -> None:
    """Poll ``condition()`` (a coroutine's result is awaited) every 5 ms, letting other tasks
    run in between; fail once ``within`` seconds have passed without it, naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(0.005)
