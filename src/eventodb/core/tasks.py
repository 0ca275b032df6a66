"""Background tasks of the server's long-lived parts (listeners, sweeps, relays)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and return once it has finished.

    Waiting matters at shutdown: the task's ``finally`` blocks (closing a connection, releasing
    a lock) have run when this returns, so what the caller closes next is no longer in use.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
