"""Adopting a plain Message DB schema as a namespace, and releasing it again: recognise a
Message DB installation, register it, bring it to our namespace migration version.

Adopting registers the schema under its own name in the registry, then applies our namespace
migrations on top (docs/MIGRATION.md, "Adopting a Message DB database"): additive, and in
place, so Message DB clients keep calling the same functions with the same arguments. All of it
happens in one transaction, which a dry run rolls back after listing what changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from eventodb.core import validation
from eventodb.core.errors import BackendError, ErrorCode, EventoDBError, NamespaceNotFound
from eventodb.store import migrations
from eventodb.store.postgres.migrate import (
    MIGRATION_LOCK,
    apply_namespace_migration,
    migrate_registry,
    schema_version,
)
from eventodb.store.postgres.pool import connect
from eventodb.store.postgres.statements import (
    NAMESPACE_OF_SCHEMA,
    NAMESPACES,
    REGISTRY_SCHEMA,
    SCHEMA_EXISTS,
    NamespaceSQL,
    check_schema_name,
    quote_ident,
)

_REQUIRED_FUNCTIONS = (
    "write_message",
    "get_stream_messages",
    "get_category_messages",
    "get_last_stream_message",
    "stream_version",
    "message_store_version",
)
_REQUIRED_COLUMNS = {
    "global_position": "bigint",
    "position": "bigint",
    "time": "timestamp without time zone",
    "stream_name": "text",
    "type": "text",
    "data": "jsonb",
    "metadata": "jsonb",
    "id": "uuid",
}
_REQUIRED_INDEXES = ("messages_id", "messages_stream")


class NotMessageDB(EventoDBError):
    """The schema is not a Message DB 1.x installation; nothing was changed."""

    code = ErrorCode.INVALID_REQUEST


class AlreadyRegistered(EventoDBError):
    """The schema, or the namespace id, is registered already; nothing was changed."""

    code = ErrorCode.NAMESPACE_EXISTS


@dataclass(frozen=True, slots=True)
class MessageDBInfo:
    """What an inspection found."""

    schema: str
    version: str
    """``message_store_version()``."""
    migration_version: int
    """Our namespace migration version (0 for a schema we never touched)."""


@dataclass(slots=True)
class AdoptReport:
    namespace: str
    schema: str
    version: str
    message_count: int
    last_global_position: int
    dry_run: bool
    migrations: list[str] = field(default_factory=list)
    """Namespace migrations applied (file names)."""
    changes: list[str] = field(default_factory=list)
    """Every database object added, changed or removed, one line each."""


async def inspect(c: Any, schema: str) -> MessageDBInfo:
    """Check that ``schema`` holds a Message DB 1.x installation.

    Raises:
        NotMessageDB: saying what is missing.
    """
    check_schema_name(schema)
    if not await c.fetchval(SCHEMA_EXISTS, schema):
        raise NotMessageDB(f"schema {schema} does not exist")
    where = f"schema {schema} is not a Message DB installation"
    columns = dict(
        await c.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " JOIN pg_class t ON t.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " WHERE n.nspname = $1 AND t.relname = 'messages' AND t.relkind = 'r'"
            " AND a.attnum > 0 AND NOT a.attisdropped",
            schema,
        )
    )
    if not columns:
        raise NotMessageDB(f"{where}: it has no messages table")
    for name, kind in _REQUIRED_COLUMNS.items():
        if columns.get(name) not in (kind, "character varying" if kind == "text" else kind):
            found = columns.get(name, "missing")
            raise NotMessageDB(f"{where}: messages.{name} should be {kind}, it is {found}")
    await _require_named(c, _FUNCTIONS, schema, _REQUIRED_FUNCTIONS, f"{where}: function")
    await _require_named(c, _UNIQUE_INDEXES, schema, _REQUIRED_INDEXES, f"{where}: unique index")
    try:
        async with c.transaction():  # a savepoint: a failing call must not end the caller's
            version = str(await c.fetchval(f"SELECT {quote_ident(schema)}.message_store_version()"))
    except asyncpg.PostgresError as exc:
        raise NotMessageDB(f"{where}: message_store_version() failed: {exc}") from None
    if not version.startswith("1."):
        raise NotMessageDB(f"schema {schema} holds Message DB {version}; only 1.x is supported")
    return MessageDBInfo(schema, version, await schema_version(c, schema))


_FUNCTIONS = (
    "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = $1"
)
_UNIQUE_INDEXES = (
    "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
    " WHERE n.nspname = $1 AND t.relname = 'messages' AND x.indisunique"
)


async def _require_named(
    c: Any, names_sql: str, schema: str, required: Iterable[str], what: str
) -> None:
    """Raise NotMessageDB naming the ``required`` objects that ``names_sql`` does not list."""
    present = {r[0] for r in await c.fetch(names_sql, schema)}
    missing = [name for name in required if name not in present]
    if missing:
        raise NotMessageDB(f"{what} {', '.join(missing)} missing")


async def _catalog(c: Any, schema: str) -> dict[str, str]:
    """Every object of ``schema`` (and the registry row set) → a fingerprint of its definition."""
    rows = await c.fetch(
        """
        SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'i' THEN 'index'
                    WHEN 'S' THEN 'sequence' WHEN 'c' THEN 'type' ELSE 'relation' END
               || ' ' || n.nspname || '.' || c.relname
               || coalesce(' on ' || n.nspname || '.' || t.relname, ''),
               md5(coalesce(pg_get_indexdef(c.oid), '')
                   || coalesce(pg_get_viewdef(c.oid), ''))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_index x ON x.indexrelid = c.oid
        LEFT JOIN pg_class t ON t.oid = x.indrelid
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'i', 'S', 'c')
        UNION ALL
        SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname,
               format_type(a.atttypid, a.atttypmod) || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $1 AND p.prokind = 'f'
        """,
        schema,
    )
    return {r[0]: r[1] for r in rows}


def _diff(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """One line per object added, replaced or dropped; the columns and indexes of a table that
    is new themselves go without saying."""
    added = [name for name in after if name not in before]
    new_tables = {name.split(" ", 1)[1] for name in added if name.startswith("table ")}

    def implied(name: str) -> bool:
        kind, _, rest = name.partition(" ")
        if kind == "column":
            return rest.rsplit(".", 1)[0] in new_tables
        return kind == "index" and rest.partition(" on ")[2] in new_tables

    changes = [f"add {name}" for name in added if not implied(name)]
    changes += [f"replace {n}" for n in after if n in before and before[n] != after[n]]
    changes += [f"drop {name}" for name in before if name not in after]
    return sorted(changes, key=lambda c: c.split(" ", 1)[1])


async def _registry_exists(c: Any) -> bool:
    return bool(await c.fetchval("SELECT to_regclass($1)", NAMESPACES))


async def adopt(
    dsn: str,
    schema: str,
    namespace: str,
    token_hash: str,
    *,
    dry_run: bool = False,
) -> AdoptReport:
    """Register Message DB schema ``schema`` as namespace ``namespace`` and bring it to our
    current namespace migration version, in one transaction (rolled back for a dry run).

    Raises:
        InvalidArgument: an unusable namespace id.
        NotMessageDB: ``schema`` is not a Message DB 1.x installation.
        AlreadyRegistered: the schema or the namespace id is registered already.
        BackendError: the database is unreachable, or a migration failed.
    """
    validation.check_namespace_id(namespace)
    check_schema_name(schema)
    registry_migrations = migrations.load("postgres", "registry")
    namespace_migrations = migrations.load("postgres", "namespace")
    c = await connect(dsn)
    try:
        transaction = c.transaction()
        await transaction.start()
        try:
            report = await _adopt(
                c,
                schema,
                namespace,
                token_hash,
                dry_run,
                registry_migrations,
                namespace_migrations,
            )
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
        return report
    except asyncpg.PostgresError as exc:
        raise BackendError(f"Failed to adopt schema {schema}: {exc}") from exc
    finally:
        await c.close()


async def _adopt(
    c: Any,
    schema: str,
    namespace: str,
    token_hash: str,
    dry_run: bool,
    registry_migrations: list[migrations.Migration],
    namespace_migrations: list[migrations.Migration],
) -> AdoptReport:
    await c.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
    info = await inspect(c, schema)
    if await _registry_exists(c):
        owner = await c.fetchval(NAMESPACE_OF_SCHEMA, schema)
        if owner is not None:
            raise AlreadyRegistered(
                f"schema {schema} is registered already, as namespace {owner!r}"
            )
        if await c.fetchval(f"SELECT 1 FROM {NAMESPACES} WHERE id = $1", namespace):
            raise AlreadyRegistered(f"namespace {namespace!r} exists already")
    before = await _catalog(c, schema)
    registry_before = await _catalog(c, REGISTRY_SCHEMA)
    await migrate_registry(c, registry_migrations)
    report = AdoptReport(namespace, schema, info.version, 0, 0, dry_run)
    for m in namespace_migrations:
        if m.version > info.migration_version:
            await apply_namespace_migration(c, m, schema)
            report.migrations.append(m.name)
    await _fill_fast_paths(c, schema)
    await c.execute(
        f"INSERT INTO {NAMESPACES}"
        " (id, token_hash, schema_name, description, created_at, metadata)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        namespace,
        token_hash,
        schema,
        f"Message DB schema {schema} (adopted)",
        int(time.time()),
        json.dumps({"adopted": schema}),
    )
    report.changes = _diff(registry_before, await _catalog(c, REGISTRY_SCHEMA))
    report.changes += _diff(before, await _catalog(c, schema))
    report.changes.append(f"register namespace {namespace!r} for schema {schema} in {NAMESPACES}")
    q = quote_ident(schema)
    row = await c.fetchrow(f"SELECT count(*), coalesce(max(global_position), 0) FROM {q}.messages")
    report.message_count, report.last_global_position = int(row[0]), int(row[1])
    return report


async def _fill_fast_paths(c: Any, schema: str) -> None:
    """Fill the columns our migrations added for the server's fast paths in rows written before
    (as the server does for its own schemas when it migrates them), in the caller's transaction."""
    sql = NamespaceSQL(schema)
    has_columns = await c.fetchval(
        "SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'wire_json'"
        " AND NOT attisdropped",
        f"{quote_ident(schema)}.messages",
    )
    if not has_columns:
        return
    low, high, _ = await c.fetchrow(sql.unfilled_range)
    if low is not None:
        await c.execute(sql.fill, low, high + 1)


async def release(dsn: str, namespace: str) -> str:
    """Unregister ``namespace`` without touching its schema (the reverse of :func:`adopt`).

    Returns:
        The schema, which keeps every message and our functions (docs/MIGRATION.md, "Rolling
        back").

    Raises:
        NamespaceNotFound: no such namespace.
        BackendError: the database is unreachable.
    """
    c = await connect(dsn)
    try:
        return await release_on(c, namespace)
    except asyncpg.PostgresError as exc:
        raise BackendError(f"Failed to release namespace {namespace!r}: {exc}") from exc
    finally:
        await c.close()


async def release_on(c: Any, namespace: str) -> str:
    """:func:`release` on an open connection (the server's ``ns.release`` uses its pool).

    Raises:
        NamespaceNotFound: no such namespace.
    """
    schema = None
    if await _registry_exists(c):
        schema = await c.fetchval(
            f"DELETE FROM {NAMESPACES} WHERE id = $1 RETURNING schema_name",
            namespace,
        )
    if schema is None:
        raise NamespaceNotFound(namespace)
    return str(schema)
