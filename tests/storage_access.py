"""Plain SQL on a namespace's messages table, past the store's own logic, on every backend.

For tests that need rows as another program would leave them (without the columns the server
fills at write time) or values only the database knows (the time it stored).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import asyncpg

from eventodb.core import timefmt
from eventodb.store.base import Store
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres_sql import quote_ident, schema_name
from eventodb.store.sqlite import SQLiteStore


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
                f"UPDATE {self._table} SET time = $2 WHERE global_position = $1",
                global_position,
                time.astimezone(UTC).replace(tzinfo=None),
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
