"""Applying the Postgres backend's migrations: the registry, and namespace schemas at start-up,
at creation and at adoption (:mod:`eventodb.store.postgres.adopt`).

The counterpart of :mod:`eventodb.store.sqlite.migrate`, shaped alike. Each namespace migration
runs inside a transaction and records its version in the schema's ``_schema_version`` as its
last step, so a schema is always at a whole version. An advisory lock serialises migrations
between server processes (and adoptions) sharing the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg

from eventodb.core.errors import BackendError
from eventodb.core.hashing import hash_64
from eventodb.store import migrations
from eventodb.store.postgres.statements import SCHEMA_EXISTS, NamespaceSQL, quote_ident, render

Report = Callable[[int, int], None]
"""``(done, total)``: rows the fill of older rows has done so far."""

MIGRATION_LOCK = hash_64("eventodb.migrations")
"""Advisory lock serialising migrations between server processes (and adoptions)."""


class SchemaMissing(Exception):
    """The namespace's schema does not exist (dropped behind our back); it was left alone."""

    def __init__(self, applied: int) -> None:
        super().__init__("schema missing")
        self.applied = applied
        """Migrations applied before it was found missing."""


async def migrate_registry(c: Any, available: list[migrations.Migration]) -> int:
    """Apply the registry migrations not yet recorded, each in its own (sub)transaction.

    Returns:
        How many ran.

    Raises:
        BackendError: a migration failed (naming it); it changed nothing.
    """
    applied = 0
    for m in available:
        try:
            async with c.transaction():
                await c.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await c.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
                )
                if await c.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", m.name):
                    continue
                await c.execute(m.sql)
                await c.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING",
                    m.name,
                    int(time.time()),
                )
                applied += 1
        except asyncpg.PostgresError as exc:
            raise migrations.failed("the registry", m.name, exc) from exc
    return applied


async def schema_version(c: Any, schema: str) -> int:
    """The schema's namespace migration version; 0 without a ``_schema_version`` table."""
    table = f"{quote_ident(schema)}._schema_version"
    if await c.fetchval("SELECT to_regclass($1)", table) is None:
        return 0
    return int(await c.fetchval(f"SELECT coalesce(max(version), 0) FROM {table}"))


async def migrate_namespace(
    c: Any, available: list[migrations.Migration], schema: str, report: Report
) -> int:
    """Apply the namespace migrations above the schema's version, each in its own transaction.

    The fill of older rows (:func:`fill_fast_paths`) runs in transactions of its own before
    the migration that records it.

    Returns:
        How many ran.

    Raises:
        SchemaMissing: the schema does not exist.
        BackendError: a migration failed (naming it and the schema); it changed nothing.
    """
    applied = 0
    filled = False
    while True:
        async with c.transaction():
            await c.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            if not await c.fetchval(SCHEMA_EXISTS, schema):
                raise SchemaMissing(applied)
            current = await schema_version(c, schema)
            pending = [m for m in available if m.version > current]
            if not pending:
                return applied
            fill_first = pending[0].version == migrations.FILL_VERSION and not filled
            if not fill_first:
                await apply_namespace_migration(c, pending[0], schema)
        if fill_first:
            await fill_fast_paths(c, schema, report)
            filled = True
        else:
            applied += 1


async def apply_namespace_migration(c: Any, m: migrations.Migration, schema: str) -> None:
    """Run one migration inside the caller's transaction and record its version.

    Raises:
        BackendError: the migration failed (naming it and the schema).
    """
    try:
        await c.execute(render(m.sql, schema))
        await c.execute(
            f"INSERT INTO {quote_ident(schema)}._schema_version (version) VALUES ($1)"
            " ON CONFLICT DO NOTHING",
            m.version,
        )
    except (asyncpg.PostgresError, ValueError) as exc:
        raise migrations.failed(f"schema {schema}", m.name, exc) from exc


async def fill_fast_paths(c: Any, schema: str, report: Report) -> None:
    """Fill ``wire_json`` and ``cardinal_id_hash`` of rows written before migration 004.

    :data:`~eventodb.store.migrations.FILL_BATCH` global positions per statement (each its own
    transaction), with ``report(done, total)`` after each; idempotent, so an interrupted fill
    simply resumes.
    """
    sql = NamespaceSQL(schema)
    batch = migrations.FILL_BATCH
    try:
        low, high, total = await c.fetchrow(sql.unfilled_range)
        done = 0
        for start in range(low or 0, (high or -1) + 1, batch):
            status = await c.execute(sql.fill, start, start + batch)
            done += int(status.rsplit(" ", 1)[1])
            report(done, total)
    except asyncpg.PostgresError as exc:
        raise BackendError(
            f"migration of schema {schema} failed while filling older messages: {exc}"
        ) from exc
