"""Plain SQL on a namespace's storage, past the store's own logic, on every backend.

For tests that need rows as another program would leave them (without the columns the server
fills at write time), values only the database knows (the time it stored), or what a
migration left behind.
"""

from __future__ import annotations

import abc
import asyncio
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg

from eventodb.core import timefmt
from eventodb.store.base import Store
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres.statements import quote_ident, schema_name
from eventodb.store.sqlite import SQLiteStore

MIGRATIONS = Path(str(resources.files("eventodb.migrations")))
"""The shipped migrations (``<backend>/<level>/NNN_name.sql``)."""


def copy_migrations(tmp_path: Path, backend: str) -> Path:
    """A migrations root holding a copy of ``backend``'s shipped migrations, to add to."""
    root = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS / backend, root / backend)
    return root


def migrations_up_to(tmp_path: Path, backend: str, version: int) -> Path:
    """A migrations root holding ``backend``'s registry migrations and its namespace migrations
    up to ``version``: a store opened with it leaves namespaces at that version."""
    root = tmp_path / f"migrations-{backend}-{version}"
    if root.exists():
        return root
    shutil.copytree(MIGRATIONS / backend / "registry", root / backend / "registry")
    (root / backend / "namespace").mkdir(parents=True)
    for path in (MIGRATIONS / backend / "namespace").glob("*.sql"):
        if int(path.name.split("_", 1)[0]) <= version:
            shutil.copy(path, root / backend / "namespace")
    return root


class RawMessages:
    """SQL access to one namespace's ``messages`` table; use as ``async with``."""

    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self._pg: Any = None
        self._table = f"{quote_ident(schema_name(namespace))}.messages"

    async def __aenter__(self) -> Self:
        if isinstance(self.store, PostgresStore):
            self._pg = await asyncpg.connect(self.store.dsn)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pg is not None:
            await self._pg.close()

    async def _sqlite(self, fn: Callable[[sqlite3.Connection], Any], write: bool) -> Any:
        assert isinstance(self.store, SQLiteStore)
        handle = await self.store._handle(self.namespace)
        if write:
            return await handle.write(fn, "test write")
        return await handle.read(fn, "test read")

    async def times(self, stream: str) -> dict[int, datetime]:
        """The stored time of each message of ``stream``, by global position (aware UTC)."""
        if self._pg is not None:
            rows = await self._pg.fetch(
                f"SELECT global_position, time FROM {self._table} WHERE stream_name = $1", stream
            )
            return {r[0]: r[1].replace(tzinfo=UTC) for r in rows}
        rows = await self._sqlite(
            lambda c: c.execute(
                "SELECT global_position, time FROM messages WHERE stream_name = ?", (stream,)
            ).fetchall(),
            write=False,
        )
        return {r[0]: timefmt.from_micros(r[1]) for r in rows}

    async def set_time(self, global_position: int, time: datetime) -> None:
        if self._pg is not None:
            await self._pg.execute(
                # As text: asyncpg sends datetime.min and datetime.max as -infinity, infinity.
                f"UPDATE {self._table} SET time = $2::text::timestamp WHERE global_position = $1",
                global_position,
                time.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "),
            )
            return
        micros = timefmt.to_micros(time)
        await self._sqlite(
            lambda c: c.execute(
                "UPDATE messages SET time = ? WHERE global_position = ?", (micros, global_position)
            ),
            write=True,
        )

    async def forget_fast_paths(self, stream: str | None = None) -> int:
        """Clear ``wire_json`` and ``cardinal_id_hash`` (of one stream or of every row), as rows
        inserted by another program have them; how many rows changed."""
        if self._pg is not None:
            status = await self._pg.execute(
                f"UPDATE {self._table} SET wire_json = NULL, cardinal_id_hash = NULL"
                " WHERE $1::text IS NULL OR stream_name = $1",
                stream,
            )
            return int(status.rsplit(" ", 1)[1])
        count: int = await self._sqlite(
            lambda c: (
                c.execute(
                    "UPDATE messages SET wire_json = NULL, cardinal_id_hash = NULL"
                    " WHERE ?1 IS NULL OR stream_name = ?1",
                    (stream,),
                ).rowcount
            ),
            write=True,
        )
        return count

    async def unfilled(self) -> int:
        """Rows without ``wire_json``."""
        if self._pg is not None:
            return int(
                await self._pg.fetchval(
                    f"SELECT count(*) FROM {self._table} WHERE wire_json IS NULL"
                )
            )
        count: int = await self._sqlite(
            lambda c: c.execute("SELECT count(*) FROM messages WHERE wire_json IS NULL").fetchone()[
                0
            ],
            write=False,
        )
        return count


class DurableBackend(abc.ABC):
    """A backend whose namespaces outlive the store (SQLite files, a Postgres database): stores
    opened on the same data one after the other, and the storage they leave read directly."""

    name: str
    """``sqlite`` or ``postgres``: the folder of its migrations."""
    table_prefix: str
    """What qualifies a table of the namespace in a migration file."""

    @abc.abstractmethod
    def store(self, **kwargs: Any) -> Store:
        """A store (not opened) on the data."""

    @abc.abstractmethod
    async def _query(self, namespace: str, sqlite_sql: str, postgres_sql: str) -> list[Any]:
        """The rows of whichever statement is this backend's (Postgres: ``$1`` is the schema)."""

    async def versions(self, namespace: str) -> list[int]:
        """The namespace migrations recorded in the namespace's ``_schema_version``."""
        sql = "SELECT version FROM {}_schema_version ORDER BY 1"
        return [r[0] for r in await self._sql(namespace, sql)]

    async def tables(self, namespace: str) -> set[str]:
        return {
            r[0]
            for r in await self._query(
                namespace,
                "SELECT name FROM sqlite_master WHERE type = 'table'",
                "SELECT tablename FROM pg_tables WHERE schemaname = $1",
            )
        }

    async def indexes(self, namespace: str) -> set[str]:
        return {
            r[0]
            for r in await self._query(
                namespace,
                "SELECT name FROM sqlite_master WHERE type = 'index'",
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1",
            )
        }

    async def types(self, namespace: str) -> list[str]:
        """The type of every message, by global position."""
        sql = "SELECT type FROM {}messages ORDER BY global_position"
        return [r[0] for r in await self._sql(namespace, sql)]

    async def _sql(self, namespace: str, template: str) -> list[Any]:
        """``template`` with ``{}`` before each table name, run on either backend."""
        quoted = f"{quote_ident(schema_name(namespace))}."
        return await self._query(namespace, template.format(""), template.format(quoted))


class SQLiteFiles(DurableBackend):
    name = "sqlite"
    table_prefix = ""

    def __init__(self, data: Path) -> None:
        self.data = data

    def store(self, **kwargs: Any) -> Store:
        return SQLiteStore(self.data, **kwargs)

    async def _query(self, namespace: str, sqlite_sql: str, postgres_sql: str) -> list[Any]:
        def query() -> list[Any]:
            with sqlite3.connect(self.data / f"{namespace}.db") as conn:
                return conn.execute(sqlite_sql).fetchall()

        return await asyncio.to_thread(query)


class PostgresDatabase(DurableBackend):
    name = "postgres"
    table_prefix = "{{schema}}."

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def store(self, **kwargs: Any) -> Store:
        return PostgresStore(self.dsn, min_pool=1, **kwargs)

    async def _query(self, namespace: str, sqlite_sql: str, postgres_sql: str) -> list[Any]:
        conn = await asyncpg.connect(self.dsn)
        try:
            args = [schema_name(namespace)] if "$1" in postgres_sql else []
            return list(await conn.fetch(postgres_sql, *args))
        finally:
            await conn.close()
