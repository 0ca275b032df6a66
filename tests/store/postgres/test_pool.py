"""The store's pool: connections kept between statements (one fewer checkout from asyncpg's
pool per statement), and everything unusual handed back to asyncpg's pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from eventodb.core.errors import BackendError
from eventodb.store.base import StoreStats
from eventodb.store.postgres import pool as pool_module
from eventodb.store.postgres.pool import Pool
from tests.support.postgres import SESSION_SETTINGS, session_settings

pytestmark = pytest.mark.postgres


async def _nothing_to_explain(namespace: str, verb: str, error: BaseException) -> None:
    return None


def _new_pool(dsn: str) -> Pool:
    return Pool(
        dsn, min_size=1, max_size=10, connect_timeout=5, stats=StoreStats(),
        explain=_nothing_to_explain,
    )  # fmt: skip


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[Pool]:
    p = _new_pool(postgres_dsn)
    await p.open()
    try:
        yield p
    finally:
        await p.close()


async def _pid(pool: Pool) -> int:
    return int(await pool.run("read pid", lambda c: c.fetchval("SELECT pg_backend_pid()")))


async def test_consecutive_statements_take_a_kept_connection_not_asyncpgs(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts = 0
    acquire = asyncpg.Pool.acquire

    def counting_acquire(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal checkouts
        checkouts += 1
        return acquire(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Pool, "acquire", counting_acquire)
    first = await _pid(pool)
    for _ in range(5):
        assert await _pid(pool) == first
    assert checkouts <= 1
    usage = pool.usage()
    assert usage is not None
    assert usage.idle >= 1  # kept connections count as idle


async def test_a_kept_connection_goes_back_through_asyncpg_now_and_then(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that asyncpg's own upkeep (replacing a connection after many queries) applies."""
    monkeypatch.setattr(pool_module, "KEPT_USES", 3)
    releases = 0
    release = asyncpg.Pool.release

    async def counting_release(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal releases
        releases += 1
        return await release(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Pool, "release", counting_release)
    for _ in range(9):
        await _pid(pool)
    assert releases == 3


async def test_concurrent_statements_each_get_a_connection_of_their_own(pool: Pool) -> None:
    async def slow(c: Any) -> int:
        await c.execute("SELECT pg_sleep(0.1)")
        return int(await c.fetchval("SELECT pg_backend_pid()"))

    pids = await asyncio.gather(*(pool.run("sleep", slow) for _ in range(4)))
    assert len(set(pids)) == 4


async def test_a_connection_left_in_a_transaction_is_not_reused_as_it_is(pool: Pool) -> None:
    async def leave_open(c: Any) -> int:
        await c.execute("BEGIN")
        return int(await c.fetchval("SELECT pg_backend_pid()"))

    await pool.run("begin", leave_open)
    # Whatever connection comes next, it is not inside that transaction.
    in_transaction = await pool.run("check", lambda c: asyncio.sleep(0, c.is_in_transaction()))
    assert in_transaction is False


async def test_a_failing_statement_hands_its_connection_back(pool: Pool) -> None:
    await _pid(pool)  # one connection kept
    inner: Any = pool._pool
    idle_in_asyncpg = inner.get_idle_size()
    with pytest.raises(BackendError, match="division by zero"):
        await pool.run("divide", lambda c: c.fetchval("SELECT 1/0"))
    # It took the kept connection and gave it back to asyncpg's pool, not to the kept ones.
    assert inner.get_idle_size() == idle_in_asyncpg + 1
    assert pool._kept == []
    assert await pool.run("add", lambda c: c.fetchval("SELECT 1 + 1")) == 2


async def test_kept_connections_ended_by_the_server_are_replaced(
    pool: Pool, postgres_dsn: str
) -> None:
    pid = await _pid(pool)
    [(kept, _, _)] = pool._kept
    admin = await asyncpg.connect(postgres_dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    for _ in range(100):  # until the kept connection has seen its socket close
        if not pool_module._usable(kept):
            break
        await asyncio.sleep(0.05)
    # A statement that may not retry does not meet the dead connection.
    assert await pool.run("add", lambda c: c.fetchval("SELECT 2 + 2"), retry=False) == 4
    assert await _pid(pool) != pid


async def test_trimming_while_a_statement_runs_loses_no_connection(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trim timer may fire while a statement holds a kept connection: that connection
    must still be kept or returned afterwards, not forgotten while checked out."""
    monkeypatch.setattr(pool_module, "KEPT_IDLE_SECONDS", 0.2)

    async def pause(c: Any) -> None:
        await c.execute("SELECT pg_sleep(0.1)")

    await asyncio.gather(pool.run("pause", pause), pool.run("pause", pause))  # two kept
    await asyncio.sleep(0.15)
    await pool.run("sleep", lambda c: c.execute("SELECT pg_sleep(0.5)"))  # the trim fires
    await asyncio.sleep(0.5)  # everything kept has aged out and gone back
    inner: Any = pool._pool
    assert pool._kept == []
    assert inner.get_size() == inner.get_idle_size()  # nothing checked out of asyncpg's pool
    await asyncio.wait_for(pool.close(), 1)


async def test_a_statement_waiting_for_a_connection_gets_one_while_the_load_goes_on(
    postgres_dsn: str,
) -> None:
    """With every connection busy, a statement waits in asyncpg's pool. The next connection to
    end a statement must go to it: kept instead, the busy statements' next ones would take it
    again and again, and the waiting statement would wait as long as the load lasts."""
    p = Pool(
        postgres_dsn, min_size=1, max_size=2, connect_timeout=5, stats=StoreStats(),
        explain=_nothing_to_explain,
    )  # fmt: skip
    await p.open()
    stop = asyncio.Event()

    async def busy() -> None:
        while not stop.is_set():
            await p.run("sleep", lambda c: c.execute("SELECT pg_sleep(0.01)"))

    workers = [asyncio.create_task(busy()) for _ in range(2)]
    try:
        await asyncio.sleep(0.2)  # both connections in use, kept and taken again
        started = time.monotonic()
        assert await asyncio.wait_for(p.run("late", lambda c: c.fetchval("SELECT 1")), 10) == 1
        waited = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await p.close()
    assert waited < 1.0


async def test_idle_kept_connections_go_back_to_asyncpgs_pool(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "KEPT_IDLE_SECONDS", 0.05)
    await _pid(pool)
    inner: Any = pool._pool
    idle_in_asyncpg = inner.get_idle_size()
    await asyncio.sleep(0.3)
    assert inner.get_idle_size() == idle_in_asyncpg + 1


async def test_closing_gives_the_kept_connections_back_first(postgres_dsn: str) -> None:
    p = _new_pool(postgres_dsn)
    await p.open()
    await _pid(p)
    # asyncpg's close waits for checked-out connections: kept ones must not make it wait.
    await asyncio.wait_for(p.close(), 3)
    assert p.usage() is None


async def test_every_connection_gets_the_session_setup(pool: Pool) -> None:
    # Set when a connection opens, and kept while it is handed around (see SESSION_SETUP).
    async def held(seconds: float) -> tuple[str, str]:
        async def work(c: Any) -> tuple[str, str]:
            await asyncio.sleep(seconds)
            return await session_settings(c)

        return await pool.run("hold a connection", work)

    # More at once than the pool keeps: some come fresh out of asyncpg's pool.
    seen = await asyncio.gather(*(held(0.05) for _ in range(pool_module.KEPT_CONNECTIONS + 2)))
    seen.append(await pool.run("show", session_settings))
    assert seen == [SESSION_SETTINGS] * (pool_module.KEPT_CONNECTIONS + 3)


class _OldServer:
    """A connection to a Postgres of the given major version, recording what it is sent."""

    def __init__(self, major: int) -> None:
        self.major = major
        self.sent: list[str] = []

    def get_server_version(self) -> asyncpg.ServerVersion:
        return asyncpg.ServerVersion(self.major, 0, 0, "final", 0)

    async def execute(self, sql: str) -> None:
        self.sent.append(sql)


async def test_the_session_setup_waits_for_the_version_check_on_old_servers() -> None:
    # Postgres 11 has no plan_cache_mode: the store's version check must get to say why.
    old, current = _OldServer(11), _OldServer(15)
    await pool_module._set_up_session(old)
    await pool_module._set_up_session(current)
    assert (old.sent, current.sent) == ([], [pool_module.SESSION_SETUP])
