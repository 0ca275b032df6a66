"""What is particular to the Postgres backend: schema names and quoting, the registry layout,
start-up migrations (including schemas created by upstream EventoDB), storage that disappears
behind our back, and an unreachable server.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventodb.core import tokens
from eventodb.core.errors import BackendError, NamespaceExists, NamespaceNotFound
from eventodb.store import migrations
from eventodb.store.base import Message
from eventodb.store.postgres import PostgresStore
from eventodb.store.postgres.jsonb import jsonb_exact
from eventodb.store.postgres.statements import quote_ident, redact, render, schema_name
from tests.store.storage_access import copy_migrations
from tests.support.fixture_files import FIXTURES
from tests.support.ports import free_port
from tests.support.postgres import reset_database


def _hash(namespace: str) -> str:
    return tokens.hash_token(tokens.generate(namespace))


# -- pure rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "schema"),
    [
        ("default", "eventodb_default"),
        ("tenant-a", "eventodb_tenant_a"),
        ("Test.NS", "eventodb_Test_NS"),
        ("ünï", "eventodb__n_"),  # every code point outside [A-Za-z0-9_] becomes one _
        ('a"; DROP SCHEMA public; --', "eventodb_a___DROP_SCHEMA_public____"),
        ("😀", "eventodb__"),
    ],
)
def test_schema_name_replaces_every_other_code_point(namespace: str, schema: str) -> None:
    assert schema_name(namespace) == schema


def test_identifiers_are_always_quoted() -> None:
    assert quote_ident('we"ird') == '"we""ird"'
    assert render("SELECT {{schema}}.f({{schema_literal}})", "eventodb_x") == (
        "SELECT \"eventodb_x\".f('eventodb_x')"
    )


@pytest.mark.parametrize("schema", ['eventodb_x"; DROP TABLE t; --', "eventodb_x'y", ""])
def test_rendering_refuses_schema_names_we_never_create(schema: str) -> None:
    with pytest.raises(ValueError, match="unsafe schema name"):
        render("SELECT 1 FROM {{schema}}.messages", schema)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:s3cret@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgres://u@db/x", "postgres://u@db/x"),
        ("host=db password=s3cret user=u", "host=db password=*** user=u"),
        ("host=db password='s3 cret' user=u", "host=db password=*** user=u"),
    ],
)
def test_dsns_are_shown_without_their_password(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown


def test_big_floats_are_spelled_so_jsonb_keeps_them_floats() -> None:
    value = {"e": 1e300, "n": [1.5e17, {"x": -2e20}], "s": "1e+5", "small": 1e-7, "i": 10**20}
    text = jsonb_exact('{"e":1e+300,"n":[1.5e+17,{"x":-2e+20}],"s":"1e+5","small":1e-7,'
                       '"i":100000000000000000000}', value)  # fmt: skip
    assert text is not None
    assert "e+" not in text.replace('"1e+5"', "")
    assert '"i":100000000000000000000' in text
    assert '"s":"1e+5"' in text
    assert jsonb_exact('{"a":1}', {"a": 1}) == '{"a":1}'


# -- against a database --------------------------------------------------------------------------

SHIPPED = migrations.load("postgres", "namespace")
OURS_AFTER_UPSTREAM = len([m for m in SHIPPED if m.version > 2])
"""Our namespace migrations on top of upstream EventoDB's 001 and 002."""

pg = pytest.mark.postgres


@pytest.fixture
async def db(postgres_dsn: str) -> AsyncIterator[Any]:
    """A raw connection to an empty session database (nothing of ours in it)."""
    await reset_database(postgres_dsn)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pg
async def test_registry_and_namespace_layout_match_upstream(db: Any, postgres_dsn: str) -> None:
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        await store.create_namespace("tenant-a", "hash-a", "first")
    registry = [r[0] for r in await db.fetch("SELECT version FROM public.schema_migrations")]
    assert sorted(registry) == ["001_namespace_registry.sql", "002_registry_notify.sql"]
    columns = await db.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'eventodb_store' AND table_name = 'namespaces'"
        " ORDER BY ordinal_position"
    )
    assert [tuple(c) for c in columns] == [
        ("id", "text"),
        ("token_hash", "text"),
        ("schema_name", "text"),
        ("description", "text"),
        ("created_at", "bigint"),
        ("metadata", "jsonb"),
    ]
    row = await db.fetchrow("SELECT * FROM eventodb_store.namespaces")
    assert (row["id"], row["schema_name"], row["description"]) == (
        "tenant-a",
        "eventodb_tenant_a",
        "first",
    )
    assert row["metadata"] == "{}"
    assert await db.fetchval(
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_namespaces_token_hash'"
    )
    versions = await db.fetch("SELECT version FROM eventodb_tenant_a._schema_version ORDER BY 1")
    assert [v[0] for v in versions] == [m.version for m in SHIPPED]
    indexes = {
        r[0]
        for r in await db.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'eventodb_tenant_a'"
        )
    }
    assert {"messages_pkey", "messages_id", "messages_stream", "messages_category"} <= indexes
    sequence = await db.fetchval("SELECT pg_get_serial_sequence('eventodb_tenant_a.messages',"
                                 " 'global_position')")  # fmt: skip
    assert sequence == "eventodb_tenant_a.messages_global_position_seq"


@pg
@pytest.mark.parametrize(("first", "second"), [("a-b", "a_b"), ("a.b", "a-b"), ("ä", "ö")])
async def test_ids_sharing_a_schema_name_cannot_both_exist(
    db: Any, postgres_dsn: str, first: str, second: str
) -> None:
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        await store.create_namespace(first, _hash(first))
        with pytest.raises(NamespaceExists):
            await store.create_namespace(second, _hash(second))
        assert [n.id for n in await store.list_namespaces()] == [first]


@pg
async def test_hostile_ids_stay_inside_their_identifier(db: Any, postgres_dsn: str) -> None:
    hostile = 'x"; DROP SCHEMA public CASCADE; --'
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        await store.create_namespace(hostile, _hash(hostile))
        await store.write_message(hostile, "s-1", "T", {"ok": True})
        assert len(await store.get_stream_messages(hostile, "s-1")) == 1
    assert await db.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = 'public'") == 1
    assert await db.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema_name(hostile))


@pg
async def test_an_orphaned_schema_is_not_adopted_by_a_new_namespace(
    db: Any, postgres_dsn: str
) -> None:
    await db.execute('CREATE SCHEMA "eventodb_stale"')
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        with pytest.raises(NamespaceExists, match="its schema eventodb_stale already exists"):
            await store.create_namespace("stale", _hash("stale"))
        assert await store.list_namespaces() == []


@pg
async def test_a_failing_registry_migration_stops_open_and_changes_nothing(
    db: Any, postgres_dsn: str, tmp_path: Path
) -> None:
    async with PostgresStore(postgres_dsn, min_pool=1):
        pass
    root = copy_migrations(tmp_path, "postgres")
    (root / "postgres" / "registry" / "099_broken.sql").write_text(
        "ALTER TABLE eventodb_store.namespaces ADD COLUMN extra int;\nSELECT 1/0;\n"
    )
    with pytest.raises(BackendError, match=r"099_broken\.sql.*division by zero"):
        async with PostgresStore(postgres_dsn, min_pool=1, migrations_root=root):
            pass
    names = [r[0] for r in await db.fetch("SELECT version FROM schema_migrations")]
    assert sorted(names) == ["001_namespace_registry.sql", "002_registry_notify.sql"]
    columns = await db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'namespaces'"
    )
    assert "extra" not in {c[0] for c in columns}


# A namespace schema as upstream EventoDB 0.7 leaves it (migrations 001 and 002), the fixture the
# Bun suite uses too: upstream column order and types, `_`-prefixed parameter names, row types
# instead of `message`, version -1.
UPSTREAM_SCHEMA = (
    (FIXTURES / "eventodb_go_0_7_postgres_namespace.sql")
    .read_text("utf-8")
    .replace("__SCHEMA__", "eventodb_legacy")
)
UPSTREAM_MESSAGES = """
INSERT INTO "eventodb_legacy".messages (id, stream_name, type, position, data, time) VALUES
    ('6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e001', 'account-1', 'Opened', 0, '{"n": 1}',
     '2024-05-01 10:00:00.5'),
    ('6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e002', 'account-1', 'Deposited', 1, '{"n": 2}',
     '2024-05-01 10:00:01');
"""


@pg
async def test_a_namespace_created_by_upstream_is_upgraded_in_place(
    db: Any, postgres_dsn: str
) -> None:
    async with PostgresStore(postgres_dsn, min_pool=1):
        pass  # the registry exists, as upstream would have left it
    await db.execute(UPSTREAM_SCHEMA)
    await db.execute(UPSTREAM_MESSAGES)
    await db.execute(
        "INSERT INTO eventodb_store.namespaces VALUES"
        " ('legacy', 'legacy-hash', 'eventodb_legacy', '', 1714557600, '{}')"
    )
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        assert store.migrations_applied == OURS_AFTER_UPSTREAM
        old = await store.get_stream_messages("legacy", "account-1")
        assert [(m.position, m.global_position, m.data) for m in old] == [
            (0, 1, {"n": 1}),
            (1, 2, {"n": 2}),
        ]
        assert old[0].time == datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)
        result = await store.write_message("legacy", "account-1", "Withdrawn", {"n": 3})
        assert (result.position, result.global_position) == (2, 3)
        assert await store.stream_version("legacy", "account-1") == 2
    conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": "eventodb_legacy"})
    try:
        rows = await conn.fetch(
            "SELECT position FROM get_stream_messages('account-1', batch_size => 2)"
        )
        assert [r[0] for r in rows] == [0, 1]
        assert await conn.fetchval("SELECT stream_version('account-9')") is None
        assert await conn.fetchval("SELECT message_store_version()") == "1.3.0"
    finally:
        await conn.close()


@pg
async def test_a_schema_dropped_behind_our_back_gives_a_clear_error(
    db: Any, postgres_dsn: str
) -> None:
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        await store.create_namespace("gone", _hash("gone"))
        await store.write_message("gone", "s-1", "T", {})
        await db.execute('DROP SCHEMA "eventodb_gone" CASCADE')
        for attempt in (
            store.write_message("gone", "s-1", "T", {}),
            store.get_stream_messages("gone", "s-1"),
            store.get_category_messages("gone", "s"),
            store.namespace_stats("gone"),
        ):
            with pytest.raises(BackendError, match="namespace 'gone' is missing") as info:
                await attempt
            assert "eventodb_gone" in info.value.message
        assert [n.id for n in await store.list_namespaces()] == ["gone"]
        assert await store.delete_namespace("gone") == 0  # clean-up still possible
        with pytest.raises(NamespaceNotFound):
            await store.get_stream_messages("gone", "s-1")


@pg
async def test_start_up_survives_a_missing_schema_and_reports_it(
    db: Any, postgres_dsn: str
) -> None:
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        await store.create_namespace("gone", _hash("gone"))
        await store.create_namespace("fine", _hash("fine"))
    await db.execute('DROP SCHEMA "eventodb_gone" CASCADE')
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        assert store.missing_schemas == ["gone"]
        assert (await store.write_message("fine", "s-1", "T", {})).position == 0
        with pytest.raises(BackendError, match="missing"):
            await store.stream_version("gone", "s-1")
        assert await store.delete_namespace("gone") == 0  # out of the shared registry


@pg
async def test_a_namespace_deleted_by_another_server_is_not_found_here(
    db: Any, postgres_dsn: str
) -> None:
    async with (
        PostgresStore(postgres_dsn, min_pool=1) as here,
        PostgresStore(postgres_dsn, min_pool=1) as there,
    ):
        await here.create_namespace("shared", _hash("shared"))
        await here.write_message("shared", "s-1", "T", {})  # "here" caches the namespace
        assert len(await there.get_stream_messages("shared", "s-1")) == 1
        assert await there.delete_namespace("shared") == 1
        with pytest.raises(NamespaceNotFound):
            await here.write_message("shared", "s-1", "T", {})
        with pytest.raises(NamespaceNotFound):
            await here.get_stream_messages("shared", "s-1")


async def test_an_unreachable_server_fails_open_naming_the_url_without_password() -> None:
    url = f"postgresql://eventodb:s3cret-pw@127.0.0.1:{free_port()}/events"
    store = PostgresStore(url, connect_timeout=2)
    with pytest.raises(BackendError) as info:
        await store.open()
    message = info.value.message
    assert message.startswith(
        "Failed to connect to Postgres at postgresql://eventodb:***@127.0.0.1:"
    )
    assert "/events" in message
    assert "s3cret" not in message
    await store.close()


async def test_a_store_that_is_not_open_says_so() -> None:
    store = PostgresStore("postgresql://nobody@127.0.0.1:1/x")
    with pytest.raises(BackendError, match="store is not open"):
        await store.get_stream_messages("default", "s-1")


@pg
async def test_imports_never_move_the_sequence_backwards(db: Any, postgres_dsn: str) -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)

    def msg(gp: int, stream: str) -> Message:
        return Message(str(uuid.uuid4()), stream, "T", 0, gp, {}, None, t)

    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        await store.create_namespace("imp", _hash("imp"))
        # An export of two categories, imported category by category: the global sequence
        # never moves backwards.
        await store.import_messages("imp", [msg(100, "b-1")])
        await store.import_messages("imp", [msg(5, "a-1")])
        after = await store.write_message("imp", "c-1", "T", {})
        assert after.global_position == 101
        # A failed import does not move it either (same as SQLite's rolled-back AUTOINCREMENT).
        with pytest.raises(Exception, match="already exists"):
            await store.import_messages("imp", [msg(500, "d-1"), msg(5, "e-1")])
        assert (await store.write_message("imp", "c-1", "T", {})).global_position == 102


def test_the_server_exits_non_zero_naming_an_unreachable_database() -> None:
    url = f"postgres://eventodb:s3cret-pw@127.0.0.1:{free_port()}/events"
    done = subprocess.run(
        [sys.executable, "-m", "eventodb", "--db-url", url, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Failed to connect to Postgres at postgres://eventodb:***@127.0.0.1:" in output
    assert "s3cret" not in output


@pg
async def test_an_id_whose_schema_name_is_taken_is_an_existing_namespace(
    postgres_dsn: str,
) -> None:
    """``store`` would live in ``eventodb_store``, the registry's own schema."""
    async with PostgresStore(postgres_dsn, min_pool=1) as store:
        with pytest.raises(NamespaceExists, match="its schema eventodb_store already exists"):
            await store.create_namespace("store", _hash("store"))
        assert not await store.namespace_exists("store")
        assert "store" not in {n.id for n in await store.list_namespaces()}
