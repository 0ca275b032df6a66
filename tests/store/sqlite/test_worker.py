"""The SQLite worker threads: every job settles, also when the writer stops around it."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from eventodb.core.errors import BackendError
from eventodb.store.sqlite.worker import Writer


def memory() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    conn.execute("CREATE TABLE t (x INTEGER)")
    return conn


def insert(conn: sqlite3.Connection) -> int:
    return int(conn.execute("INSERT INTO t VALUES (1)").lastrowid or 0)


@pytest.mark.parametrize("small", [True, False])
async def test_a_write_submitted_while_the_writer_stops_is_answered(small: bool) -> None:
    """A small write yields once before queueing (to let concurrent writers join its group);
    a stop() in that moment used to queue its end-of-work marker first, and the write waited
    forever."""
    writer = Writer("test-writer", memory)
    assert await writer.call(insert, small=small) == 1  # the thread and its connection are up
    call = asyncio.ensure_future(writer.call(insert, small=small))
    await asyncio.sleep(0)  # the call is now inside its first await
    await writer.stop()
    done, _ = await asyncio.wait([call], timeout=5)
    assert done, "the write was never answered"
    # Either outcome is fine (it ran before the stop, or was refused); hanging is not.
    error = call.exception()
    assert error is None or (isinstance(error, BackendError) and "closed" in error.message)


async def test_every_queued_job_settles_when_the_writer_stops() -> None:
    writer = Writer("test-writer", memory)
    calls = [asyncio.ensure_future(writer.call(insert, small=i % 2 == 0)) for i in range(50)]
    await asyncio.sleep(0)
    await writer.stop()
    done, pending = await asyncio.wait(calls, timeout=5)
    assert not pending
    for call in done:
        if call.exception() is not None:
            assert isinstance(call.exception(), BackendError)
