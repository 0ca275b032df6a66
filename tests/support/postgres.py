"""Postgres for the tests: where it comes from, a fresh database per session, a clean store.

Where the server comes from, in this order:

1. ``EVENTODB_TEST_DATABASE_URL`` when set (CI may point it at its service); the URL's
   database is only used to create and drop our own.
2. A throwaway cluster started with ``initdb``/``pg_ctl`` in a temporary directory on a free
   port (run as the ``postgres`` OS user when we are root, since initdb refuses root). Costs
   about a second, isolates us from everything else on the machine, and lets failure tests stop
   and start a server that nobody else uses.
3. A server already running at ``127.0.0.1:5432`` as user ``postgres`` (fallback when the
   binaries are missing).

Whichever it is, each test session creates a uniquely named database and drops it at the end,
so runs never see each other's data. When no Postgres can be had, Postgres tests are skipped
and :func:`pytest_terminal_summary` prints one loud line — except with ``CI=true``, where the
fixture fails instead.

Wire :func:`pytest_terminal_summary` into ``tests/conftest.py`` (import it there) so the line
appears.

The session's database is shared: the store fixtures empty it before each test, but the
servers of the black-box tests keep their namespaces in it. A test that damages a namespace
must delete it; :func:`no_orphaned_namespaces` (also wired into ``tests/conftest.py``) fails
the module that leaves one whose schema is gone.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from eventodb.store.base import Store
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres.statements import redact
from tests.support.ports import free_port

ENV_URL = "EVENTODB_TEST_DATABASE_URL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

T = TypeVar("T")

_unavailable: list[str] = []
"""Why Postgres tests were skipped (for the terminal summary)."""
_session_database: list[str] = []
"""The URL of this session's database, once :func:`postgres_dsn` has made it."""


@contextlib.asynccontextmanager
async def plain_connection(dsn: str, **kwargs: Any) -> AsyncIterator[Any]:
    """A plain asyncpg connection to ``dsn`` (a SQL client beside the server), closed after."""
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        yield conn
    finally:
        await conn.close()


async def lock_waiters(sql: Any, at_least: int = 1) -> bool:
    """Whether ``at_least`` sessions of ``sql``'s database wait for a lock (a connection
    outside any transaction: inside one, Postgres shows the activity as of its first look)."""
    waiting = await sql.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(waiting >= at_least)


SESSION_SETTINGS = ("force_generic_plan", "off")
"""``plan_cache_mode`` and ``enable_bitmapscan`` as the store's session setup sets them on each
of its connections (``SESSION_SETUP`` in ``eventodb.store.postgres.pool``)."""


async def session_settings(conn: Any) -> tuple[str, str]:
    """``plan_cache_mode`` and ``enable_bitmapscan`` of a connection, to compare with
    :data:`SESSION_SETTINGS`."""
    row = await conn.fetchrow(
        "SELECT current_setting('plan_cache_mode'), current_setting('enable_bitmapscan')"
    )
    return (row[0], row[1])


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


class Cluster:
    """A throwaway Postgres cluster in a temporary directory (started and stopped by us)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="eventodb-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root; the postgres OS user owns the cluster instead.
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def available() -> str | None:
        """Why a cluster cannot be started here, or ``None`` when it can."""
        for tool in ("initdb", "pg_ctl"):
            if shutil.which(tool) is None:
                return f"{tool} is not on PATH"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres OS user for initdb"
            if shutil.which("runuser") is None:
                return "running as root and runuser is missing"
        return None

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, text=True, timeout=60)

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "server.log"), "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [*self._as, "pg_ctl", "-D", str(self.data), "status"], capture_output=True, timeout=30
        )
        return done.returncode == 0

    def start_if_stopped(self) -> None:
        if not self.running():
            self.start()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def start_cluster() -> Cluster:
    """Initialise and start a throwaway cluster; raises when that fails."""
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    atexit.register(cluster.destroy)  # also when the session is interrupted
    return cluster


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await conn.close()
    return True


async def create_database(admin_url: str) -> str:
    """A fresh, uniquely named UTF-8 database; its URL.

    It uses an ICU collation when the server has one: then any query that forgets to compare
    by code point (COLLATE "C") sorts differently from SQLite, and the tests notice.
    """
    name = f"eventodb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        try:
            await conn.execute(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"
                " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        except asyncpg.PostgresError:
            await conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def reset_database(url: str) -> None:
    """Drop every schema EventoDB created and its bookkeeping: the database is as new."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        schemas = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'eventodb%'"
        )
        for row in schemas:
            await conn.execute(f'DROP SCHEMA "{row[0]}" CASCADE')
        await conn.execute("DROP TABLE IF EXISTS public.schema_migrations")
    finally:
        await conn.close()


_ORPHANS = (
    "SELECT n.id FROM eventodb_store.namespaces n WHERE NOT EXISTS"
    " (SELECT 1 FROM pg_namespace s WHERE s.nspname = n.schema_name) ORDER BY n.id"
)


async def orphaned_namespaces(url: str) -> list[str]:
    """Namespaces of the registry at ``url`` whose schema is gone."""
    async with plain_connection(url, timeout=10) as conn:
        if await conn.fetchval("SELECT to_regclass('eventodb_store.namespaces')") is None:
            return []
        return [row[0] for row in await conn.fetch(_ORPHANS)]


async def forget_namespaces(url: str, namespaces: list[str]) -> None:
    """Take ``namespaces`` out of the registry at ``url`` (their schemas are gone)."""
    async with plain_connection(url, timeout=10) as conn:
        await conn.execute("DELETE FROM eventodb_store.namespaces WHERE id = ANY($1)", namespaces)


def run_sync(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run ``fn(*args)`` to completion on a private event loop in a helper thread.

    Session fixtures may be set up from inside a running loop (an async fixture asking for
    them through ``request.getfixturevalue``), where ``asyncio.run`` is not allowed.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn(*args))).result()


def _obtain_server() -> tuple[str, Cluster | None]:
    """An admin URL of some server we may create databases on, and the cluster if we own it."""
    env = os.environ.get(ENV_URL)
    if env:
        return env, None
    problems: list[str] = []
    reason = Cluster.available()
    if reason is None:
        try:
            cluster = start_cluster()
        except (subprocess.SubprocessError, OSError) as exc:
            problems.append(f"throwaway cluster failed: {exc}")
        else:
            return cluster.url, cluster
    else:
        problems.append(f"no throwaway cluster ({reason})")
    if run_sync(_reachable, LOCAL_URL):
        return LOCAL_URL, None
    problems.append(f"nothing at {LOCAL_URL}")
    raise LookupError(f"set {ENV_URL}; " + "; ".join(problems))


def _unavailable_outcome(reason: str) -> None:
    message = f"Postgres tests NOT RUN: no Postgres available ({reason})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} and CI=true", pytrace=False)
    _unavailable.append(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """URL of a fresh database created for this test session and dropped after it.

    Skips loudly (fails with ``CI=true``) when no Postgres can be had.
    """
    try:
        admin_url, cluster = _obtain_server()
    except LookupError as exc:
        _unavailable_outcome(str(exc))
        return
    try:
        try:
            url = run_sync(create_database, admin_url)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            _unavailable_outcome(f"cannot create a database at {redact(admin_url)}: {exc}")
            return
        _session_database.append(url)
        try:
            yield url
        finally:
            _session_database.clear()
            run_sync(drop_database, admin_url, url)
    finally:
        if cluster is not None:
            cluster.destroy()


@pytest.fixture(scope="module", autouse=True)
def no_orphaned_namespaces(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a module whose tests leave, in the session's shared database, a namespace whose
    schema they dropped behind the server's back: every server started later on that database
    would report the missing schema at start-up, and a test asserting a clean log would fail
    for another module's leftovers, depending on the order the tests run in.

    Only what the module added counts, and what it left is taken out of the registry once
    reported, so that one failing module does not fail the ones after it.
    """
    before = (
        set(run_sync(orphaned_namespaces, _session_database[0])) if _session_database else set()
    )
    yield
    if not _session_database:
        return
    left = sorted(set(run_sync(orphaned_namespaces, _session_database[0])) - before)
    if left:
        run_sync(forget_namespaces, _session_database[0], left)
    assert not left, (
        f"a test of {request.module.__name__} left namespaces whose schema is gone: {left};"
        " delete them (ns.delete)"
    )


@contextlib.asynccontextmanager
async def open_postgres_store(dsn: str, **kwargs: Any) -> AsyncIterator[PostgresStore]:
    """An opened PostgresStore on ``dsn`` after dropping every namespace there; closed after.

    For fixtures that cannot request :func:`postgres_store` (an async fixture asking for
    another async fixture through ``request.getfixturevalue`` fails under pytest-asyncio).
    """
    await reset_database(dsn)
    kwargs.setdefault("min_pool", 1)
    kwargs.setdefault("max_pool", 10)
    store = PostgresStore(dsn, **kwargs)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def postgres_store(postgres_dsn: str) -> AsyncIterator[Store]:
    """An opened PostgresStore on a database holding no namespaces."""
    async with open_postgres_store(postgres_dsn) as store:
        yield store


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway cluster of our own, for tests that stop and restart the server."""
    reason = Cluster.available()
    if reason is not None:
        _unavailable_outcome(f"cannot start a throwaway cluster: {reason}")
        return
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One loud line when Postgres tests were skipped for want of a server."""
    if _unavailable:
        terminalreporter.write_sep("!", _unavailable[0], red=True, bold=True)
