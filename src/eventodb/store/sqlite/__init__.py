"""The SQLite backend: :class:`SQLiteStore` (``store.py``), its SQL (``statements.py``), its
migration runner (``migrate.py``), the threads that own its connections (``worker.py``) and its
data directory (``files.py``)."""

from eventodb.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
