"""The messages of a plain Message DB schema as one consistent snapshot, in global order: the
source of ``eventodb import`` from a Message DB database (:mod:`eventodb.transfer.sources`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from eventodb.core.errors import BackendError
from eventodb.store.postgres.pool import connect
from eventodb.store.postgres.statements import check_schema_name, quote_ident, redact

DEFAULT_SCHEMA = "message_store"
READ_BATCH = 10_000
"""Rows fetched from the cursor at a time."""
SNAPSHOT_LOCK_TIMEOUT = "5s"


def split_url(url: str) -> tuple[str, str]:
    """``postgres://.../db?schema=s`` → (the URL without ``schema``, the schema).

    Raises:
        BackendError: an unsafe schema name.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), DEFAULT_SCHEMA)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    check_schema_name(schema)
    return urlunsplit(parts._replace(query=rest)), schema


MessageRow = tuple[str, str, str, int, int, str, str | None, str]
"""``(id, stream, type, position, global position, data JSON, metadata JSON, time)``; time in
RFC 3339 with microseconds. A NULL ``data`` reads as ``{}``, as the server reads it."""


class MessageDBReader:
    """The messages of one schema as a consistent snapshot, in global-position order.

    The snapshot is a true prefix of the global order: before taking it, a second connection
    briefly locks the table against writers (``SHARE`` mode, waiting for writes in flight), so
    no message below the snapshot's highest global position can commit later. Without the
    privilege to lock (or when the lock times out), the snapshot is taken anyway and
    :attr:`prefix_guaranteed` says so.
    """

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.prefix_guaranteed = False
        self._conn: Any = None
        self._transaction: Any = None

    @classmethod
    async def open(cls, url: str) -> MessageDBReader:
        """Connect to ``postgres://.../db?schema=...`` (default schema ``message_store``).

        Raises:
            BackendError: unreachable, or no ``messages`` table in the schema.
        """
        dsn, schema = split_url(url)
        reader = cls(dsn, schema)
        reader._conn = await connect(dsn)
        table = f"{quote_ident(schema)}.messages"
        if await reader._conn.fetchval("SELECT to_regclass($1)", table) is None:
            await reader.close()
            raise BackendError(f"{redact(dsn)} has no table {schema}.messages")
        return reader

    async def snapshot(self, after: int) -> tuple[int, int]:
        """Start the snapshot.

        Returns:
            How many messages lie above global position ``after``, and the highest global
            position (0 when empty).
        """
        table = f"{quote_ident(self.schema)}.messages"
        self._transaction = self._conn.transaction(isolation="repeatable_read", readonly=True)
        await self._transaction.start()
        locker = await connect(self.dsn)
        try:
            hold = locker.transaction()
            await hold.start()
            try:
                await locker.execute(f"SET LOCAL lock_timeout = '{SNAPSHOT_LOCK_TIMEOUT}'")
                await locker.execute(f"LOCK TABLE {table} IN SHARE MODE")
                self.prefix_guaranteed = True
            except asyncpg.PostgresError:
                self.prefix_guaranteed = False
            await self._conn.fetchval("SELECT 1")  # the snapshot is taken here
            await hold.rollback()  # writers go on at once
        finally:
            with contextlib.suppress(Exception):
                await locker.close()
        row = await self._conn.fetchrow(
            f"SELECT count(*), coalesce(max(global_position), 0) FROM {table}"
            " WHERE global_position > $1",
            after,
        )
        return int(row[0]), int(row[1])

    async def rows(self, after: int) -> AsyncIterator[list[MessageRow]]:
        """Batches of rows above ``after`` from the snapshot (:meth:`snapshot` first)."""
        table = f"{quote_ident(self.schema)}.messages"
        cursor = await self._conn.cursor(
            "SELECT id::text, stream_name, type, position, global_position,"
            " coalesce(data, '{}'::jsonb)::text, metadata::text,"
            ' to_char(time, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
            f" FROM {table} WHERE global_position > $1 ORDER BY global_position",
            after,
        )
        while rows := await cursor.fetch(READ_BATCH):
            yield [tuple(r) for r in rows]

    async def close(self) -> None:
        if self._transaction is not None:
            with contextlib.suppress(Exception):
                await self._transaction.rollback()
            self._transaction = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
