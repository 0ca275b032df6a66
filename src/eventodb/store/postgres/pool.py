"""Connections of the Postgres backend: the store's pool, the one way statements run on it, and
the translation of driver errors.

Driver errors are translated here, at the boundary: connection trouble and anything unexpected
become :class:`~eventodb.core.errors.BackendError` ("Failed to <verb>: ..."); a statement about
one namespace that fails is first explained by the store (a schema dropped behind our back, a
namespace deleted while the statement ran), see :data:`Explain`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from eventodb.core.errors import BackendError, EventoDBError
from eventodb.store.base import PoolUsage, StoreStats
from eventodb.store.postgres.statements import redact

T = TypeVar("T")

DEFAULT_MAX_POOL = 25
"""Upstream's pool: at most 25 open connections."""
CONNECT_TIMEOUT = 5.0
IDLE_LIFETIME = 300.0
"""Seconds an idle pooled connection is kept (upstream: 5 min lifetime)."""
KEPT_CONNECTIONS = 8
"""Connections the store keeps checked out between statements (see :class:`Pool`)."""
KEPT_USES = 1000
"""Statements a kept connection runs before it goes back through asyncpg's pool once, which
then applies its own upkeep (it replaces a connection after 50,000 queries, which bounds the
memory of the server process behind it)."""
KEPT_IDLE_SECONDS = 10.0
"""A kept connection unused this long goes back to asyncpg's pool (which closes idle ones
above its minimum size after :data:`IDLE_LIFETIME`, and recycles a connection after many
queries only when it is released: a kept one is recycled once it goes back)."""
COMMAND_CONNECT_TIMEOUT = 10.0
"""Seconds the ``adopt`` and ``import`` commands wait for their own connection."""
SESSION_SETUP = "SET plan_cache_mode = force_generic_plan; SET enable_bitmapscan = off"
"""Run on each of the store's pooled connections when it opens (``SET``, not parameters of the
connection's start-up: PgBouncer refuses parameters it does not know).

The server's statements are prepared once per connection. Its stream and category reads are
written to have one good plan whatever their values (tests/store/postgres/test_query_plans.py;
docs/PERFORMANCE.md names two rarer reads whose one plan may read far, as it did when left to
Postgres), so Postgres is told to make that one generic plan, once, instead of choosing per
statement between it and a plan per execution: left to choose, it went on planning a
100-message category read anew at every execution, about 0.1 ms of its CPU each, after some
samples of the table's statistics and not others (three of eight ANALYZE runs on the same
600,000-row table kept the generic plan), and the same for stream reads on tables with stale
statistics.

Bitmap scans off: with a category holding most of a small table (2,000 of 2,300 messages), the
generic plan of a category read expected a handful of rows and chose a bitmap scan of the
category's whole index range, sorted, over the ordered index scan that stops after the page: a
consumer-group member's 100-message read took 0.9 ms instead of 0.5. The server's reads and
writes take one index range in order or probe unique indexes, which needs no bitmap; its
listings and counts read the whole table either way, as does its one check of two unique keys
at once (whether a new namespace's id or schema is taken) on the registry's few rows."""


CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,  # includes "connection was closed in the middle of operation"
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now
    # Not an InterfaceError: a connection that broke mid-protocol (seen during a Postgres
    # restart: "cannot switch to state 12; another operation (2) is in progress").
    asyncpg.InternalClientError,
)
MISSING_OBJECT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.InvalidSchemaNameError,
    asyncpg.UndefinedFunctionError,
)
"""A statement met no schema, table or function: its namespace's storage is gone."""

Explain = Callable[[str, str, BaseException], Awaitable[EventoDBError | None]]
"""``(namespace, verb, driver error)`` → the error to raise instead of a plain
:class:`BackendError`, or ``None`` when the failure has nothing to do with the namespace."""


def describe(exc: BaseException) -> str:
    """A driver error as a message says it, connection trouble named as such."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError | TimeoutError):
        return f"Postgres is unreachable ({text})"
    if isinstance(exc, CONNECTION_ERRORS):
        return f"connection to Postgres lost ({text})"
    return text


class _ReconnectWarnings(logging.Filter):
    """Shortens the warning asyncpg (0.32 and later) logs for each failed attempt to reopen the
    pool's minimum connections while Postgres is away: the first attempt at once, then 1 s,
    2 s, 4 s, ... apart, at most a minute apart.

    asyncpg attaches the traceback of its own connect code, some thirty lines that tell an
    operator nothing the error does not; the line keeps its level and message and ends with
    the error instead (as ``describe`` words it). Other records pass untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (
            exc is not None
            and isinstance(exc, (*CONNECTION_ERRORS, asyncpg.PostgresError))
            and str(record.msg).startswith(_RECONNECT_WARNING)
        ):
            record.msg = f"{record.getMessage()}: {describe(exc)}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_RECONNECT_WARNING = "Failed to restore the pool connection floor"
_RECONNECT_WARNINGS = _ReconnectWarnings()


async def _set_up_session(conn: Any) -> None:
    """Pool init hook: :data:`SESSION_SETUP` on each new connection.

    Not on Postgres 11 or older, which lacks ``plan_cache_mode``: the store then refuses the
    server with a clear message (it needs 13 or newer) instead of failing on the setting.
    """
    if conn.get_server_version().major >= 12:
        await conn.execute(SESSION_SETUP)


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: our connections keep no session state but :data:`SESSION_SETUP`'s,
    which must stay, so skip asyncpg's reset query (it would undo it).

    (asyncpg still rolls back an open transaction on release.) Saves a round trip per request.
    """


async def connect(dsn: str) -> Any:
    """One connection of its own, for the commands that work on a database without a store.

    Raises:
        BackendError: naming the database (without its password).
    """
    try:
        return await asyncpg.connect(dsn, timeout=COMMAND_CONNECT_TIMEOUT)
    except (*CONNECTION_ERRORS, asyncpg.PostgresError, ValueError) as exc:
        raise BackendError(f"cannot connect to Postgres at {redact(dsn)}: {exc}") from None


def _usable(conn: Any) -> bool:
    """Whether a kept connection still works: when the server ends one, asyncpg notices the
    socket close and takes the connection back itself (its methods then raise)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


class Pool:
    """The store's pooled connections, and :meth:`run`, through which every statement goes.

    asyncpg's pool opens, replaces and closes the connections. Checking one out of it and back
    costs more server CPU than a short query (its release starts a task and a timeout, to
    survive cancellation): about a quarter of a 100-message read, measured. So a connection
    that ends a statement cleanly is kept here, up to :data:`KEPT_CONNECTIONS`, and the next
    statement takes it without asyncpg; anything unusual (an error, a cancellation, an open
    transaction) hands it back to asyncpg's pool, which knows how to reset or replace it. So
    does the end of a statement while another one waits for asyncpg's pool (all connections
    were busy): the waiting statement gets that connection.

    Args:
        explain: asked about a statement on one namespace that failed in the database.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        connect_timeout: float,
        stats: StoreStats,
        explain: Explain,
    ) -> None:
        self.dsn = dsn
        self.min_size = min(min_size, max_size)
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self._stats = stats
        self._explain = explain
        self._pool: Any = None
        self._kept: list[tuple[Any, float, int]] = []
        """Connections out of asyncpg's pool, free, with when each was last used (newest
        last: the next statement takes the newest, so the oldest can age out) and how many
        statements it ran since it left asyncpg's pool."""
        self._trim_timer: asyncio.TimerHandle | None = None
        self._giving_back: set[asyncio.Task[None]] = set()
        self._acquiring = 0
        """Statements waiting for a connection from asyncpg's pool (none was kept free)."""

    async def open(self) -> None:
        """Raises: BackendError naming the database (without its password)."""
        logging.getLogger("asyncpg.pool").addFilter(_RECONNECT_WARNINGS)  # no-op if already there
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                max_inactive_connection_lifetime=IDLE_LIFETIME,
                timeout=self.connect_timeout,
                statement_cache_size=512,
                init=_set_up_session,
                reset=_keep_session,
                server_settings={"application_name": "eventodb"},
            )
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, ValueError) as exc:
            where = redact(self.dsn)
            raise BackendError(f"Failed to connect to Postgres at {where}: {exc}") from exc

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        kept = [conn for conn, _, _ in self._kept]
        self._kept.clear()  # before the first await: no statement may take one now
        await _give_back(pool, kept)
        if self._giving_back:
            await asyncio.wait(self._giving_back)
        try:
            await asyncio.wait_for(pool.close(), 5)
        except (TimeoutError, *CONNECTION_ERRORS, asyncpg.PostgresError):
            pool.terminate()

    def usage(self) -> PoolUsage | None:
        pool = self._pool
        if pool is None:
            return None
        idle = pool.get_idle_size() + len(self._kept)
        return PoolUsage(pool.get_size(), idle, pool.get_max_size())

    async def connect_listener(self) -> Any:
        """A connection outside the pool, for LISTEN; the driver's errors are the caller's."""
        return await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout,
            server_settings={"application_name": "eventodb-listen"},
        )

    async def run(
        self,
        verb: str,
        work: Callable[[Any], Awaitable[T]],
        *,
        namespace: str | None = None,
        retry: bool = False,
    ) -> T:
        """Run ``work(connection)`` on a pooled connection, translating driver errors.

        Args:
            verb: what the work does, for error messages ("Failed to <verb>: ...").
            namespace: the namespace the work touches, to explain failures.
            retry: the work is a read: run it once more on a fresh connection when the first
                one turns out to be dead (e.g. after a Postgres restart).

        Raises:
            EventoDBError: raised by ``work`` itself, or :data:`Explain`'s answer.
            BackendError: any other failure.
        """
        pool = self._pool
        if pool is None:
            raise BackendError(f"Failed to {verb}: store is not open")
        try:
            return await self._attempt(pool, verb, work, namespace, 2 if retry else 1)
        except BackendError:
            self._stats.record_error()
            raise

    async def _attempt(
        self,
        pool: Any,
        verb: str,
        work: Callable[[Any], Awaitable[T]],
        namespace: str | None,
        attempts: int,
    ) -> T:
        for attempt in range(attempts):
            try:
                return await self._on_a_connection(pool, work)
            except EventoDBError:
                raise
            except CONNECTION_ERRORS as exc:
                if attempt + 1 < attempts:
                    continue
                raise BackendError(f"Failed to {verb}: {describe(exc)}") from exc
            except asyncpg.PostgresError as exc:
                explained = None
                if namespace is not None:
                    explained = await self._explain(namespace, verb, exc)
                if explained is None:
                    explained = BackendError(f"Failed to {verb}: {exc}")
                raise explained from exc
        raise AssertionError("unreachable")

    async def _on_a_connection(self, pool: Any, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work`` on a kept connection, else one from asyncpg's pool; kept afterwards if it
        ended cleanly. ``self._kept`` is only changed in place, never replaced, and never with
        an await between looking at it and changing it."""
        conn = None
        uses = 0
        while self._kept and conn is None:
            conn, _, uses = self._kept.pop()
            if not _usable(conn):  # the server ended it while it was kept
                self._give_back_later(pool, [conn])
                conn = None
        if conn is not None:
            self._stats.record_pool_wait(0.0)
        else:
            asked = time.perf_counter()
            self._acquiring += 1
            try:
                conn = await pool.acquire()
            finally:
                self._acquiring -= 1
            self._stats.record_pool_wait(time.perf_counter() - asked)
        try:
            result = await work(conn)
        except CONNECTION_ERRORS:
            # A connection that broke (a Postgres restart, say) suggests the kept ones did too.
            self._give_back_later(pool, [c for c, _, _ in self._kept])
            self._kept.clear()
            await pool.release(conn)
            raise
        except BaseException:
            # As asyncpg's own context manager does: its release survives cancellation.
            await pool.release(conn)
            raise
        kept = self._kept
        uses += 1
        if (
            # A statement waiting in asyncpg's pool gets this connection. Kept, it would go to
            # the next new statement instead, again and again while the load lasts, and the
            # waiting one would wait until the kept connections age out.
            not self._acquiring
            and uses < KEPT_USES
            and len(kept) < KEPT_CONNECTIONS
            and not conn.is_in_transaction()
            and self._pool is pool
        ):
            kept.append((conn, time.monotonic(), uses))
            if self._trim_timer is None:
                loop = asyncio.get_running_loop()
                self._trim_timer = loop.call_later(KEPT_IDLE_SECONDS, self._trim)
        else:
            await pool.release(conn)
        return result

    def _trim(self) -> None:
        """Hand back the kept connections unused for :data:`KEPT_IDLE_SECONDS` (the list is
        oldest first), and look again when the oldest left will have been."""
        self._trim_timer = None
        pool = self._pool
        if pool is None:
            return
        kept = self._kept
        now = time.monotonic()
        old = 0
        while old < len(kept) and kept[old][1] <= now - KEPT_IDLE_SECONDS:
            old += 1
        if old:
            self._give_back_later(pool, [conn for conn, _, _ in kept[:old]])
            del kept[:old]
        if kept:
            wait = kept[0][1] + KEPT_IDLE_SECONDS - now
            self._trim_timer = asyncio.get_running_loop().call_later(wait, self._trim)

    def _give_back_later(self, pool: Any, connections: list[Any]) -> None:
        """Return connections to asyncpg's pool in a task of their own, which a cancellation
        of the caller cannot interrupt halfway (a connection left out would stay checked out
        of asyncpg's pool for good)."""
        if connections:
            task = asyncio.ensure_future(_give_back(pool, connections))
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)


async def _give_back(pool: Any, connections: list[Any]) -> None:
    """Return connections to asyncpg's pool (it resets or replaces them)."""
    for conn in connections:
        try:
            await pool.release(conn)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            pass  # asyncpg has already terminated and will replace it
