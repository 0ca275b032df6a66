"""Moving data in and out: ``export``, ``import`` (from a file or a Message DB database),
``copy`` between servers, and ``adopt`` (docs/MIGRATION.md).

The commands are clients: of running servers over HTTP, and of Postgres for Message DB
databases (through :mod:`eventodb.store.postgres.adopt` and
:mod:`eventodb.store.postgres.snapshot`).
"""
