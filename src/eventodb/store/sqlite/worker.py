"""Threads that own SQLite connections, and the short database work let onto the event loop.

Each namespace has one :class:`Writer` thread holding its only write connection: writes are
serialised per namespace by construction, which makes "read version, check, insert" atomic.
Writes that queue up while a transaction runs are committed together (group commit), in a way
that one failing write does not undo its neighbours. File-backed namespaces also get a
:class:`ReadPool` so reads proceed while a write commits (WAL mode). Small writes (message
inserts) and a read that finishes within a budget run on the event loop instead: a thread
hand-off costs more than such work itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from eventodb.core.errors import BackendError, EventoDBError
from eventodb.store.base import StoreStats

log = logging.getLogger("eventodb.store.sqlite")

T = TypeVar("T")


class WriterConnection(sqlite3.Connection):
    """The connection of a :class:`Writer`, which tells its jobs when what they learnt about
    the database may no longer hold.

    Every write transaction on it begins with the writer's ``BEGIN IMMEDIATE``, which holds the
    database's write lock until the transaction ends: meanwhile only the writer's own jobs
    change the database. ``epoch`` moves at each begin and at each rollback (of the transaction
    or of one job); with ``total_changes``, which every other change moves, it tells a job
    whether a value an earlier job of the transaction kept still holds (the next global
    position, see ``_insert`` in store.py).
    """

    epoch = 0
    """Moved by the writer at every begin and every rollback."""
    next_global_position: tuple[int, int, int] | None = None
    """``(epoch, total_changes, position)`` left by the transaction's last message write."""


Connect = Callable[[], WriterConnection]

MAX_GROUP = 256
"""Most writes committed in one transaction."""

INLINE_GROUP = 64
"""Most small writes committed together on the event loop (a few milliseconds at most); the
others of the same turn go to the writer thread."""

BUSY_TIMEOUT_MS = 5000

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

CHECKPOINT_EVERY = 200
"""Commits between two checkpoints run by the writer thread (writers of a WAL file with the
inline fast path, whose connection does not checkpoint by itself)..."""
CHECKPOINT_ROWS = 1000
"""... or rows written, whichever comes first (a commit may hold an import's thousands)."""


@dataclass(slots=True)
class _Job:
    fn: Callable[[WriterConnection], Any]
    write: bool
    verb: str
    small: bool
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None


_Answer = tuple[_Job, Any, BaseException | None]
"""A job, and its result or the error its caller gets."""


def _set_outcome(
    future: asyncio.Future[Any] | None, result: Any, error: BaseException | None
) -> None:
    if future is None or future.done():  # cancelled, or answered already
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _closed_error(verb: str) -> BackendError:
    return BackendError(f"Failed to {verb}: the namespace database is closed")


def translate(error: BaseException, verb: str) -> BaseException:
    """Driver errors become :class:`BackendError`; our own errors pass through."""
    if isinstance(error, EventoDBError):
        return error
    if isinstance(error, sqlite3.Error):
        return BackendError(f"Failed to {verb}: {error}")
    return error


class Writer:
    """A thread with one connection running jobs in submission order.

    Fast path: the small writes that arrive in one turn of the event loop are committed
    together at the end of that turn, on the loop, under the connection lock, because a thread
    hand-off (there and back) costs more than the inserts themselves; when fewer arrived than
    the last group held, the commit waits one more turn for the writes still on their way
    (see :meth:`_commit_gathered`). They never wait on the loop for the database: on a held
    lock, a busy database or jobs queued for the thread they queue instead, and the caller
    bounds each payload and :data:`INLINE_GROUP` their number, so the loop is never held for
    long. The connection's busy timeout is therefore 0 except while the thread runs
    a batch. Checkpoints run on the writer thread.
    """

    def __init__(
        self, name: str, connect: Connect, *, inline: bool = True, stats: StoreStats | None = None
    ) -> None:
        self._connect = connect
        self._stats = stats or StoreStats()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self._conn: WriterConnection | None = None
        self._inline = inline
        self._commits = 0
        self._checkpointed_changes = 0
        self._wal = False
        self._checkpointer: sqlite3.Connection | None = None
        self._gathered: list[_Job] = []
        self._commit_due = False
        self._waited = False
        """The gathered writes waited one turn already (see _commit_gathered)."""
        self._last_group = 1
        """Writes of the last group gathered on the loop (committed there or by the thread)."""
        self._open_error: BaseException | None = None
        self._closed = False
        self._thread.start()

    async def call(
        self,
        fn: Callable[[WriterConnection], T],
        *,
        write: bool = True,
        verb: str = "write",
        small: bool = False,
    ) -> T:
        """Run ``fn(connection)`` on the thread; a write runs inside a transaction.

        Args:
            small: the job is a quick write that changes at most one row, with one statement,
                after checks that change nothing (a message insert): it may run on the event
                loop, committed with the small writes that arrive in the same turn, and needs
                no savepoint of its own.
        """
        if self._closed:
            raise _closed_error(verb)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, write, verb, small and write, future, loop)
        try:
            if job.small and self._inline:
                # Commit on the loop, together with the small writes that arrive in the same
                # turn of the loop (group commit without a thread hand-off).
                self._gathered.append(job)
                if not self._commit_due:
                    self._commit_due = True
                    loop.call_soon(self._commit_gathered)
            else:
                self._jobs.put(job)
            return await future
        except BackendError:
            self._stats.record_error()
            raise

    def _commit_gathered(self) -> None:
        """Commit the small writes gathered in this turn of the loop together, on the loop;
        hand them to the thread instead when it has work queued (order), the database is
        locked, or there are more than :data:`INLINE_GROUP` (the loop would be held too long).

        Fewer writes than the last group held mean that the other writers are still on their
        way: under load, their next requests have often been received in this turn already,
        and run after this callback. Waiting one more turn of the loop, once, lets them join:
        groups of 8 concurrent writers grow from about 4 writes to about 7 and a write costs
        about 15 % less CPU, because every commit rewrites each page it touches. A lone
        writer (a last group of one) is never kept waiting.
        """
        jobs = self._gathered
        if jobs and not self._waited and len(jobs) < self._last_group:
            self._waited = True
            asyncio.get_running_loop().call_soon(self._commit_gathered)
            return
        self._waited = False
        self._commit_due = False
        self._gathered = []
        if not jobs:  # stop() handed them to the thread
            return
        inline, rest = jobs[:INLINE_GROUP], jobs[INLINE_GROUP:]
        self._last_group = len(inline)
        try:
            committed = self._try_inline(inline)
        except Exception as exc:  # noqa: BLE001 - a callback: its callers must hear of it
            for job in inline:
                _set_outcome(job.future, None, translate(exc, job.verb))
            committed = True
        for job in rest if committed else jobs:
            self._jobs.put(job)

    def _try_inline(self, jobs: list[_Job]) -> bool:
        conn = self._conn
        if conn is None or not self._jobs.empty() or not self._lock.acquire(blocking=False):
            return False
        try:
            try:
                _begin(conn)  # the busy timeout is 0 outside the thread
            except sqlite3.OperationalError:
                return False  # another process writes: wait for it on the thread instead
            try:
                outcomes = self._run_writes(conn, jobs, begun=True)
            except BaseException:
                _roll_back(conn)
                raise
        finally:
            self._lock.release()
        for job, (result, error) in zip(jobs, outcomes, strict=True):
            _set_outcome(job.future, result, error)
        return True

    async def stop(self) -> None:
        """Finish queued jobs, close the connection and end the thread."""
        if self._closed:
            return
        self._closed = True
        gathered, self._gathered = self._gathered, []
        for job in gathered:  # small writes not committed yet: the thread finishes them
            self._jobs.put(job)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            conn = self._connect()
            if self._inline:
                # Commits on the loop must not checkpoint: the thread does it (_checkpoint).
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                # Nor wait for a lock: only the thread does (see _process).
                conn.execute("PRAGMA busy_timeout = 0")
                self._wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        except BaseException as exc:  # noqa: BLE001 - reported to every caller instead
            self._open_error = exc
            conn = None
        self._conn = conn
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                batch, checkpoint, stop = self._take_batch(job)
                if batch:
                    self._run_batch(conn, batch)
                if checkpoint:
                    self._checkpoint()
                if stop:
                    return
        finally:
            self._conn = None
            with self._lock, contextlib.suppress(sqlite3.Error):
                if conn is not None:
                    conn.close()
            self._close_checkpointer()
            self._fail_leftovers()

    def _take_batch(self, first: _Job) -> tuple[list[_Job], bool, bool]:
        """``first`` and the jobs queued behind it (up to :data:`MAX_GROUP`), whether a
        checkpoint was asked for among them, and whether the end-of-work marker came next."""
        batch: list[_Job] = []
        checkpoint = False
        job: _Job | None = first
        while job is not None:
            if job is _CHECKPOINT:
                checkpoint = True
            else:
                batch.append(job)
            if len(batch) >= MAX_GROUP:
                return batch, checkpoint, False
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return batch, checkpoint, False
        return batch, checkpoint, True

    def _run_batch(self, conn: WriterConnection | None, batch: list[_Job]) -> None:
        """Run ``batch`` under the lock; answer its callers once the lock is free again (an
        answered caller often writes again at once, and should find the way free)."""
        answers: list[_Answer] = []
        failure: Exception | None = None
        with self._lock:
            try:
                self._process(conn, batch, answers)
            except Exception as exc:  # the thread must go on serving the namespace
                log.exception("the writer thread %s failed a batch", self._thread.name)
                if conn is not None:
                    _roll_back(conn)  # or every later BEGIN would fail
                failure = exc
        for job, result, error in answers:
            _set_outcome_threadsafe(job, result, error)
        if failure is not None:
            _fail_unsettled(batch, failure)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file, on a connection of its own and without the
        writer's lock, so that writes go on meanwhile (a checkpoint fsyncs both files); then
        copy what they added meanwhile holding the lock, so that the next write starts the
        WAL over (while writes keep coming, the first part never catches up and the file
        would grow without end)."""
        try:
            if self._checkpointer is None:
                self._checkpointer = self._connect()
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with self._lock:
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # the thread must go on; the next checkpoint reconnects
            log.warning("checkpoint of %s failed: %s", self._thread.name, exc, exc_info=True)
            self._close_checkpointer()

    def _close_checkpointer(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            with contextlib.suppress(sqlite3.Error):
                checkpointer.close()

    def _fail_leftovers(self) -> None:
        """Settle jobs still queued when the thread ends, so no caller waits forever."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _set_outcome_threadsafe(job, None, _closed_error(job.verb))

    def _process(
        self, conn: WriterConnection | None, batch: list[_Job], answers: list[_Answer]
    ) -> None:
        """Run the batch's jobs in order, appending each job's answer to ``answers``."""
        if conn is None:
            failure = BackendError(f"Failed to open database: {self._open_error}")
            answers.extend((job, None, failure) for job in batch)
            return
        if self._inline:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            self._run_jobs(conn, batch, answers)
        finally:
            if self._inline:
                conn.execute("PRAGMA busy_timeout = 0")

    def _run_jobs(self, conn: WriterConnection, batch: list[_Job], answers: list[_Answer]) -> None:
        i = 0
        while i < len(batch):
            if not batch[i].write:
                answers.append(_run_read(conn, batch[i]))
                i += 1
                continue
            j = i
            while j < len(batch) and batch[j].write:
                j += 1
            jobs = batch[i:j]
            for job, outcome in zip(jobs, self._run_writes(conn, jobs), strict=True):
                answers.append((job, *outcome))
            i = j

    def _run_writes(
        self, conn: WriterConnection, jobs: list[_Job], *, begun: bool = False
    ) -> list[tuple[Any, BaseException | None]]:
        """Run write jobs in one transaction; outcomes after COMMIT.

        Results are released only after COMMIT: an acknowledged write is a committed write.
        A failing job must not undo the others: each runs in a savepoint, except small ones,
        which change at most one row with one statement after checks that change nothing, so
        SQLite's own undo of a failed statement leaves nothing of them behind.
        """
        if not begun:
            try:
                _begin(conn)
            except sqlite3.Error as exc:
                return [(None, translate(exc, job.verb)) for job in jobs]
        single = len(jobs) == 1
        outcomes: list[tuple[Any, BaseException | None]] = []
        for job in jobs:
            savepoint = not single and not job.small
            if savepoint:
                conn.execute("SAVEPOINT job")
            changes = conn.total_changes
            try:
                result = job.fn(conn)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                if savepoint:
                    undone = _roll_back_to_job(conn)
                else:  # a statement that failed changed nothing; one that ran stays
                    undone = conn.in_transaction and conn.total_changes == changes
                if single or not undone:
                    # Alone, or the whole transaction is gone: every job of it failed.
                    _roll_back(conn)
                    return [(None, translate(exc, job.verb)) for job in jobs]
                outcomes.append((None, translate(exc, job.verb)))
            else:
                if savepoint:
                    conn.execute("RELEASE job")
                outcomes.append((result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _roll_back(conn)
            return [(None, translate(exc, job.verb)) for job in jobs]
        self._stats.record_write_batch(len(jobs))
        self._commits += 1
        if self._wal and (
            self._commits >= CHECKPOINT_EVERY
            or conn.total_changes - self._checkpointed_changes >= CHECKPOINT_ROWS
        ):
            self._commits = 0
            self._checkpointed_changes = conn.total_changes
            self._jobs.put(_CHECKPOINT)
        return outcomes


def _run_read(conn: WriterConnection, job: _Job) -> _Answer:
    try:
        return job, job.fn(conn), None
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
        return job, None, translate(exc, job.verb)


def _begin(conn: WriterConnection) -> None:
    """Begin a write transaction, taking the database's write lock now."""
    conn.execute("BEGIN IMMEDIATE")
    conn.epoch += 1


def _roll_back(conn: WriterConnection) -> None:
    """End the transaction, if SQLite has not already: after a full disk or an I/O error it
    may roll the whole transaction back itself, and a ROLLBACK then fails."""
    conn.epoch += 1
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # nothing more to do about it here
            conn.execute("ROLLBACK")


def _roll_back_to_job(conn: WriterConnection) -> bool:
    """Undo the failed job of a shared transaction; ``False`` when the transaction itself is
    gone (SQLite rolled it back), which fails the other jobs too."""
    conn.epoch += 1
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
    except sqlite3.Error:
        return False
    return True


_CHECKPOINT = _Job(lambda conn: None, False, "checkpoint", False, None, None)
"""Queued for the writer thread: run a checkpoint (:meth:`Writer._checkpoint`)."""


def _fail_unsettled(jobs: list[_Job], error: Exception) -> None:
    """Answer the jobs of a batch that failed unexpectedly and were not answered yet (an
    answer already on its way arrives first and wins)."""
    for job in jobs:
        _set_outcome_threadsafe(job, None, BackendError(f"Failed to {job.verb}: {error}"))


def _set_outcome_threadsafe(job: _Job, result: Any, error: BaseException | None) -> None:
    if job.loop is not None and job.future is not None:
        job.loop.call_soon_threadsafe(_set_outcome, job.future, result, error)


INLINE_READ_SECONDS = 0.0005
"""How long a read may run on the event loop before it is handed to a read thread."""
_INLINE_READ_CHECK_EVERY = 100
"""SQLite virtual-machine instructions between two checks of the inline read's deadline."""


class _OverBudget:
    """A progress handler that interrupts the query once its deadline has passed."""

    __slots__ = ("deadline", "fired")

    def __init__(self) -> None:
        self.deadline = 0.0
        self.fired = False

    def __call__(self) -> int:
        if time.perf_counter() > self.deadline:
            self.fired = True
            return 1
        return 0


class _HandOff(Exception):
    """The read did not finish on the loop (over budget, or the database was busy)."""


class ReadPool:
    """Read connections to one database file, used from the event loop and from a shared
    executor's threads.

    Fast path: a read first runs on the event loop, on a connection of its own that never
    waits for a lock, and SQLite interrupts it once it has taken :data:`INLINE_READ_SECONDS`
    (or finds the database busy): it then runs again on a read thread. A thread hand-off, there
    and back, costs more CPU than a typical read (a 100-message page) itself, so most reads
    never pay it; a long read costs the loop about the budget before it moves to a thread.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        executor: Executor,
        stats: StoreStats | None = None,
    ) -> None:
        self._connect = connect
        self._executor = executor
        self._stats = stats or StoreStats()
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._loop_conn: sqlite3.Connection | None = None
        self._adopting = threading.Lock()
        self._over_budget = _OverBudget()

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, verb: str = "read") -> T:
        if self._closed:
            raise _closed_error(verb)
        loop = asyncio.get_running_loop()
        try:
            conn = self._loop_conn or await loop.run_in_executor(
                self._executor, self._open_for_loop
            )
            if conn is not None and not self._closed:
                try:
                    result = self._run_on_loop(conn, fn, verb)
                except _HandOff:
                    pass
                else:
                    # Let other tasks run between two reads (a long replay of pages, say), as
                    # the hand-off to a thread used to.
                    await asyncio.sleep(0)
                    return result
            return await loop.run_in_executor(self._executor, self._run, fn, verb)
        except BackendError:
            self._stats.record_error()
            raise

    def _open_for_loop(self) -> sqlite3.Connection | None:
        """On a read thread (opening may wait for a lock): the loop's connection, set never
        to wait for one; ``None`` if it cannot be opened now (the read goes to a thread, which
        reports any error, and the next read tries again)."""
        try:
            conn = self._connect()
        except sqlite3.Error:
            return None
        try:
            conn.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error:
            conn.close()
            return None
        with self._adopting:
            if self._closed or self._loop_conn is not None:
                conn.close()
                return self._loop_conn
            self._loop_conn = conn
        return conn

    def _run_on_loop(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], verb: str
    ) -> T:
        """``fn(conn)`` within the budget.

        Raises:
            _HandOff: it was interrupted, or found the database busy (nothing is left behind).
        """
        budget = self._over_budget
        budget.deadline = time.perf_counter() + INLINE_READ_SECONDS
        budget.fired = False
        conn.set_progress_handler(budget, _INLINE_READ_CHECK_EVERY)
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None) or 0
            if budget.fired or code & 0xFF in _BUSY_CODES:
                raise _HandOff from None
            raise translate(exc, verb) from None
        except BaseException as exc:  # noqa: BLE001 - re-raised, translated
            raise translate(exc, verb) from None
        finally:
            conn.set_progress_handler(None, 0)

    def _run(self, fn: Callable[[sqlite3.Connection], T], verb: str) -> T:
        if self._closed:  # closed while this waited for a thread: open nothing
            raise _closed_error(verb)
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
        with self._adopting:
            self._closed = True
            conn, self._loop_conn = self._loop_conn, None
        if conn is not None:
            conn.close()
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
