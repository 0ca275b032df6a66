"""Threads that own SQLite connections, so database work never runs on the event loop.

Each namespace has one :class:`Writer` thread holding its only write connection: writes are
serialised per namespace by construction, which makes "read version, check, insert" atomic.
Writes that queue up while a transaction runs are committed together (group commit), each in
its own savepoint so one failing write does not undo its neighbours. File-backed namespaces
also get a :class:`ReadPool` so reads proceed while a write commits (WAL mode).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from eventodb.core.errors import BackendError, EventoDBError

T = TypeVar("T")

Connect = Callable[[], sqlite3.Connection]

MAX_GROUP = 256
"""Most writes committed in one transaction."""


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    write: bool
    verb: str
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def translate(error: BaseException, verb: str) -> BaseException:
    """Driver errors become :class:`BackendError`; our own errors pass through."""
    if isinstance(error, EventoDBError):
        return error
    if isinstance(error, sqlite3.Error):
        return BackendError(f"Failed to {verb}: {error}")
    return error


class Writer:
    """A thread with one connection running jobs in submission order."""

    def __init__(self, name: str, connect: Connect) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._closed = False
        self._thread.start()

    async def call(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True, verb: str = "write"
    ) -> T:
        """Run ``fn(connection)`` on the thread; a write runs inside a transaction."""
        if self._closed:
            raise BackendError(f"Failed to {verb}: the namespace database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, write, verb, future, loop))
        return await future

    async def stop(self) -> None:
        """Finish queued jobs, close the connection and end the thread."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # noqa: BLE001 - reported to every caller instead
            self._open_error = exc
            conn = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while len(batch) < MAX_GROUP:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._process(conn, batch)
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _process(self, conn: sqlite3.Connection | None, batch: list[_Job]) -> None:
        if conn is None:
            error = BackendError(f"Failed to open database: {self._open_error}")
            for job in batch:
                job.loop.call_soon_threadsafe(_settle, job.future, None, error)
            return
        i = 0
        while i < len(batch):
            if not batch[i].write:
                self._run_read(conn, batch[i])
                i += 1
                continue
            j = i
            while j < len(batch) and batch[j].write:
                j += 1
            self._run_writes(conn, batch[i:j])
            i = j

    @staticmethod
    def _run_read(conn: sqlite3.Connection, job: _Job) -> None:
        try:
            result, error = job.fn(conn), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            result, error = None, translate(exc, job.verb)
        job.loop.call_soon_threadsafe(_settle, job.future, result, error)

    @staticmethod
    def _run_writes(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for job in jobs:
                job.loop.call_soon_threadsafe(_settle, job.future, None, translate(exc, job.verb))
            return
        for job in jobs:
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((None, translate(exc, job.verb)))
            else:
                conn.execute("RELEASE job")
                outcomes.append((result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(None, translate(exc, job.verb)) for job in jobs]
        # Results are released only after COMMIT: an acknowledged write is a committed write.
        for job, (result, error) in zip(jobs, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)


class ReadPool:
    """Read connections to one database file, used from a shared executor's threads."""

    def __init__(self, connect: Connect, executor: Executor) -> None:
        self._connect = connect
        self._executor = executor
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, verb: str = "read") -> T:
        if self._closed:
            raise BackendError(f"Failed to {verb}: the namespace database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, fn, verb)

    def _run(self, fn: Callable[[sqlite3.Connection], T], verb: str) -> T:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            try:
                conn = self._connect()
            except sqlite3.Error as exc:
                raise translate(exc, verb) from None
        try:
            return fn(conn)
        except BaseException as exc:  # noqa: BLE001 - re-raised, translated
            raise translate(exc, verb) from None
        finally:
            if self._closed:
                conn.close()
            else:
                self._idle.put(conn)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
