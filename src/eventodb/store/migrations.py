"""Numbered ``.sql`` migrations shipped as package data, per backend and level.

Files are named ``NNN_description.sql``; the number orders them and is the version recorded in
a namespace's ``_schema_version``; the file name is what ``schema_migrations`` records.
Runners live with their backend; this module only finds and orders the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

Level = Literal["registry", "namespace"]

_NAME = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


class MigrationError(RuntimeError):
    """A migration failed; the database was left as it was before it."""

    def __init__(self, target: str, migration: str, cause: BaseException) -> None:
        super().__init__(f"migration {migration} failed on {target}: {cause}")
        self.target = target
        self.migration = migration


def load(backend: str, level: Level, root: Path | None = None) -> list[Migration]:
    """The migrations of ``backend``/``level`` in version order.

    Args:
        root: a directory holding ``<backend>/<level>/*.sql`` instead of the packaged ones
            (tests use it to inject failing migrations).
    """
    base: Traversable = Path(root) if root is not None else resources.files("eventodb.migrations")
    folder = base / backend / level
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {backend}/{level}: {versions}")
    return found


def split_sqlite_statements(sql: str) -> list[str]:
    """Split a script into complete statements, so each runs inside our own transaction.

    (``sqlite3.executescript`` would COMMIT first, breaking all-or-nothing migrations.)
    """
    import sqlite3

    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if _has_code(current):
                statements.append(current.strip())
            current = ""
    if _has_code(current):
        statements.append(current.strip())
    return statements


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())
