"""The Postgres backend: :class:`PostgresStore` (``store.py``), its SQL (``statements.py``), its
migration runner (``migrate.py``), its connections (``pool.py``), the notification relay
(``notify.py``), and the commands' access to plain Message DB schemas (``adopt.py``,
``snapshot.py``)."""

from eventodb.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
