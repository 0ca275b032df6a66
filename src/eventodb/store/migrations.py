"""Numbered ``.sql`` migrations shipped as package data, per backend and level.

Files are named ``NNN_description.sql``; the number orders them and is the version recorded in
a namespace's ``_schema_version``; the file name is what ``schema_migrations`` records.
Runners live with their backend (``store/<backend>/migrate.py``, shaped alike); this module
finds and orders the files and holds what the runners share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from eventodb.core.errors import BackendError

Level = Literal["registry", "namespace"]

_NAME = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.sql$")

FILL_VERSION = 5
"""The namespace migration that the fill of older rows must precede: migration 004 added the
columns of the fast paths (``wire_json``, ``cardinal_id_hash``), 005 records that the rows
written before it were filled in."""
FILL_BATCH = 10_000
"""Global positions per transaction when the fast-path columns of older rows are filled in."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def failed(target: str, migration: str, cause: BaseException) -> BackendError:
    """The error of a migration that failed; the database was left as it was before it."""
    return BackendError(f"migration {migration} failed on {target}: {cause}")


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
