"""Applying the Postgres backend's migrations: the registry, and namespace schemas at start-up,
at creation and at adoption (:mod:`eventodb.store.message_db`).

Each namespace migration runs inside the caller's transaction and records its version in the
schema's ``_schema_version`` as its last step, so a schema is always at a whole version.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from eventodb.core.errors import BackendError
from eventodb.core.hashing import hash_64
from eventodb.store import migrations
from eventodb.store.postgres_sql import quote_ident, render

MIGRATION_LOCK = hash_64("eventodb.migrations")
"""Advisory lock serialising migrations between server processes (and adoptions)."""


async def migrate_registry(c: Any, pending_from: list[migrations.Migration]) -> int:
    """Apply the registry migrations not yet recorded, each in its own (sub)transaction.

    Returns:
        How many ran.
    """
    applied = 0
    for m in pending_from:
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
            raise BackendError(str(migrations.MigrationError("the registry", m.name, exc))) from exc
    return applied


async def schema_version(c: Any, schema: str) -> int:
    """The schema's namespace migration version; 0 without a ``_schema_version`` table."""
    table = f"{quote_ident(schema)}._schema_version"
    if await c.fetchval("SELECT to_regclass($1)", table) is None:
        return 0
    return int(await c.fetchval(f"SELECT coalesce(max(version), 0) FROM {table}"))


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
        raise BackendError(str(migrations.MigrationError(f"schema {schema}", m.name, exc))) from exc
