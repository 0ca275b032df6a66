"""Applying the SQLite backend's migrations: the registry, and namespace databases at start-up
and at creation.

The counterpart of :mod:`eventodb.store.postgres.migrate`, shaped alike. Each migration runs in
a transaction of its own and records itself as its last step (the file name in
``schema_migrations``; in a namespace database also its version in ``_schema_version``), so a
database is always at a whole version. Runs on the database's writer thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from eventodb.store import migrations
from eventodb.store.sqlite import statements

Report = Callable[[int, int], None]
"""``(done, total)``: rows the fill of older rows has done so far."""


def migrate_registry(
    c: sqlite3.Connection, available: list[migrations.Migration], target: str
) -> int:
    """Apply the registry migrations not yet recorded.

    Args:
        target: the database, as failures name it.

    Returns:
        How many ran.

    Raises:
        BackendError: a migration failed (naming it and ``target``); it changed nothing.
    """
    try:
        done = {r[0] for r in c.execute("SELECT version FROM schema_migrations")}
    except sqlite3.OperationalError:
        done = set()
    pending = [m for m in available if m.name not in done]
    for m in pending:
        _apply(c, m, target, namespace=False)
    return len(pending)


def schema_version(c: sqlite3.Connection) -> int:
    """The database's namespace migration version; 0 without a ``_schema_version`` table."""
    try:
        return int(c.execute("SELECT max(version) FROM _schema_version").fetchone()[0] or 0)
    except sqlite3.OperationalError:
        return 0


def migrate_namespace(
    c: sqlite3.Connection, available: list[migrations.Migration], target: str, report: Report
) -> int:
    """Apply the namespace migrations above the database's version, in order.

    The fill of older rows (:func:`fill_fast_paths`) runs in transactions of its own before
    the migration that records it.

    Returns:
        How many ran.

    Raises:
        BackendError: a migration failed (naming it and ``target``); it changed nothing.
    """
    current = schema_version(c)
    pending = [m for m in available if m.version > current]
    for m in pending:
        if m.version == migrations.FILL_VERSION:
            try:
                fill_fast_paths(c, report)
            except sqlite3.Error as exc:
                raise migrations.failed(target, m.name, exc) from None
        _apply(c, m, target, namespace=True)
    return len(pending)


def fill_fast_paths(c: sqlite3.Connection, report: Report) -> None:
    """Fill ``wire_json`` and ``cardinal_id_hash`` of rows written before migration 004.

    One transaction per :data:`~eventodb.store.migrations.FILL_BATCH` global positions, with
    ``report(done, total)`` after each; idempotent, so an interrupted fill simply resumes.
    """
    low, high, total = c.execute(statements.UNFILLED_RANGE).fetchone()
    if not total:
        return
    done = 0
    batch = migrations.FILL_BATCH
    for start in range(low, high + 1, batch):
        c.execute("BEGIN IMMEDIATE")
        try:
            done += c.execute(statements.FILL, (start, start + batch)).rowcount
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        report(done, total)


def _apply(c: sqlite3.Connection, m: migrations.Migration, target: str, *, namespace: bool) -> None:
    """Run one migration in its own transaction and record it."""
    c.execute("BEGIN IMMEDIATE")
    try:
        c.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        for statement in split_statements(m.sql):
            c.execute(statement)
        now = int(time.time())
        if namespace:
            c.execute(
                "INSERT OR IGNORE INTO _schema_version (version, applied_at) VALUES (?, ?)",
                (m.version, now),
            )
        c.execute(
            "INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (m.name, now),
        )
        c.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - any failure must roll the migration back
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise migrations.failed(target, m.name, exc) from None


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements, so each runs inside our own transaction.

    (``sqlite3.executescript`` would COMMIT first, breaking all-or-nothing migrations.)
    """
    found: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if _has_code(current):
                found.append(current.strip())
            current = ""
    if _has_code(current):
        found.append(current.strip())
    return found


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())
