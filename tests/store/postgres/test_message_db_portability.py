"""A plain Message DB database (tests/fixtures/message_db_1_3_0.sql, written to with plain SQL)
adopted in place with ``eventodb adopt``, released again, or copied with ``eventodb import
--from-message-db`` — the real CLI and server in subprocesses, a real Postgres database per test
(docs/MIGRATION.md, "From Message DB")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventodb.core import jsoncodec, timefmt
from tests.support.cli import run_cli
from tests.support.fixture_files import FIXTURES
from tests.support.postgres import create_database, drop_database, run_sync, with_database
from tests.support.server import ADMIN_TOKEN, Server, make_tenant, server_args
from tests.support.sseclient import subscribe

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

FIXTURE = FIXTURES / "message_db_1_3_0.sql"


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _install(url: str) -> None:
    await _execute(url, FIXTURE.read_text())


@pytest.fixture
def message_db(postgres_dsn: str) -> Iterator[str]:
    """A fresh database holding plain Message DB 1.3.0 in schema ``message_store``."""
    admin = with_database(postgres_dsn, "postgres")
    url = run_sync(create_database, admin)
    run_sync(_install, url)
    try:
        yield url
    finally:
        run_sync(drop_database, admin, url)


class Client:
    """A Message DB client: plain SQL with ``search_path`` on the schema, as Eventide's do."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def write(
        self, stream: str, kind: str, data: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> int:
        position: int = await self.conn.fetchval(
            "SELECT write_message($1, $2, $3, $4::jsonb, $5::jsonb)",
            str(uuid.uuid4()),
            stream,
            kind,
            jsoncodec.dumps_str(data),
            None if meta is None else jsoncodec.dumps_str(meta),
        )
        return position

    async def rows(self) -> list[list[Any]]:
        """Every message as ``category.get`` spells it, read with plain SQL."""
        rows = await self.conn.fetch(
            "SELECT id::text, stream_name, type, position, global_position, data::text,"
            " metadata::text, time FROM messages ORDER BY global_position"
        )
        return [
            [
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                jsoncodec.loads(r[5]),
                None if r[6] is None else jsoncodec.loads(r[6]),
                timefmt.format_time(r[7]),
            ]
            for r in rows
        ]


async def _client(url: str) -> Client:
    conn = await asyncpg.connect(url, server_settings={"search_path": "message_store"})
    return Client(conn)


async def _seed(client: Client) -> None:
    for i in range(30):
        meta = {"correlationStreamName": f"order-{i % 3}"} if i % 2 else None
        await client.write(f"account-{i % 7}", "Deposited", {"amount": i, "f": i / 3}, meta)
        await client.write(f"withdrawal-{i % 5}+x", "Withdrawn", {"i": i})


async def _dump(url: str) -> list[Any]:
    """Everything adoption could touch: the schema's objects and rows, and the registry."""
    conn = await asyncpg.connect(url)
    try:
        objects = await conn.fetch(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname IN ('message_store', 'eventodb_store')"
            " ORDER BY 1"
        )
        functions = await conn.fetch(
            "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'message_store'"
            " ORDER BY 1"
        )
        rows = await conn.fetch("SELECT * FROM message_store.messages ORDER BY global_position")
        registry = None
        if await conn.fetchval("SELECT to_regclass('eventodb_store.namespaces')"):
            registry = await conn.fetch("SELECT * FROM eventodb_store.namespaces ORDER BY id")
        return [
            list(map(tuple, x)) if x is not None else None for x in (objects, functions, rows)
        ] + [None if registry is None else [tuple(r) for r in registry]]
    finally:
        await conn.close()


def _adopt(url: str, *extra: str) -> str:
    """Adopt ``message_store`` as namespace ``legacy``; its token."""
    result = run_cli("adopt", "--db-url", url, "--namespace", "legacy", *extra)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    return lines[lines.index("NAMESPACE TOKEN (shown only now, keep it):") + 1]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(url: str) -> Server:
        server = Server([f"--token={ADMIN_TOKEN}", "--db-url", url], workdir=tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.stop() == 0, server.output()


def everything(server: Server, token: str) -> list[list[Any]]:
    messages: list[list[Any]] = []
    position = 0
    while page := server.ok(token, "category.get", "", {"position": position}):
        messages += page
        position = page[-1][4] + 1
    return messages


# -- adopt -------------------------------------------------------------------------------------


def test_an_adopted_database_is_served_as_it_was_and_sql_clients_keep_working(
    message_db: str, serve: Any
) -> None:
    async def before() -> list[list[Any]]:
        client = await _client(message_db)
        await _seed(client)
        rows = await client.rows()
        await client.conn.close()
        return rows

    written_by_sql = asyncio.run(before())
    token = _adopt(message_db)
    server = serve(message_db)
    assert everything(server, token) == written_by_sql

    async def interleave_and_subscribe() -> None:
        client = await _client(message_db)
        sub = await subscribe(server.port, {"stream": "account-1"}, token=token)
        try:
            replayed = await asyncio.wait_for(sub.next_poke(), 10)  # the existing messages
            assert replayed is not None
            positions = []
            for i in range(6):
                if i % 2:
                    positions.append(await client.write("account-1", "BySQL", {"i": i}))
                else:
                    result = await asyncio.to_thread(
                        server.ok,
                        token,
                        "stream.write",
                        "account-1",
                        {"type": "ByHTTP", "data": {}},
                    )
                    positions.append(result["position"])
            assert positions == list(range(positions[0], positions[0] + 6))
            # The subscriber hears of every write, the plain-SQL ones included.
            seen: set[int] = set()
            while max(seen, default=-1) < positions[-1]:
                poke = await asyncio.wait_for(sub.next_poke(), 10)
                assert poke is not None
                seen.add(poke.position)
            assert set(positions) <= seen
            # Consumer groups: the server and Message DB's SQL function pick the same messages.
            for member in range(3):
                by_sql = await client.conn.fetch(
                    "SELECT global_position FROM get_category_messages('account', 1, 1000,"
                    " consumer_group_member => $1, consumer_group_size => 3)",
                    member,
                )
                by_http = await asyncio.to_thread(
                    server.ok,
                    token,
                    "category.get",
                    "account",
                    {"consumerGroup": {"member": member, "size": 3}},
                )
                assert [m[4] for m in by_http] == [r[0] for r in by_sql]
            assert everything(server, token) == await client.rows()
        finally:
            await sub.aclose()
            await client.conn.close()

    asyncio.run(interleave_and_subscribe())


def test_a_dry_run_reports_the_changes_and_changes_nothing(message_db: str) -> None:
    before = asyncio.run(_dump(message_db))
    result = run_cli("adopt", "--db-url", message_db, "--namespace", "legacy", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Would adopt schema message_store (Message DB 1.3.0, 0 messages")
    assert "replace function message_store.write_message(" in out
    assert "add table message_store._schema_version" in out
    assert "register namespace 'legacy' for schema message_store" in out
    assert out.endswith("Dry run: nothing was changed.\n")
    assert "TOKEN" not in out
    assert asyncio.run(_dump(message_db)) == before


def test_refusals_change_nothing(message_db: str) -> None:
    untouched = asyncio.run(_dump(message_db))
    not_message_db = run_cli("adopt", "--db-url", message_db, "--schema", "public",
                             "--namespace", "x")  # fmt: skip
    assert not_message_db.returncode == 1
    assert not_message_db.stderr == (
        "Error: schema public is not a Message DB installation: it has no messages table\n"
    )
    missing = run_cli("adopt", "--db-url", message_db, "--schema", "nope", "--namespace", "x")
    assert (missing.returncode, missing.stderr) == (1, "Error: schema nope does not exist\n")
    assert asyncio.run(_dump(message_db)) == untouched

    _adopt(message_db)
    before = asyncio.run(_dump(message_db))
    twice = run_cli("adopt", "--db-url", message_db, "--namespace", "other")
    assert twice.returncode == 1
    assert twice.stderr == (
        "Error: schema message_store is registered already, as namespace 'legacy'\n"
    )
    # A second Message DB schema under a namespace id that is taken.
    second = FIXTURE.read_text().replace("message_store.", "ms2.")
    second = second.replace("SCHEMA IF NOT EXISTS message_store", "SCHEMA IF NOT EXISTS ms2")
    run_sync(_execute, message_db, second)
    taken = run_cli("adopt", "--db-url", message_db, "--schema", "ms2", "--namespace", "legacy")
    assert (taken.returncode, taken.stderr) == (1, "Error: namespace 'legacy' exists already\n")
    assert asyncio.run(_dump(message_db)) == before


def test_a_schema_without_message_dbs_functions_or_indexes_is_refused(message_db: str) -> None:
    """A messages table alone is not Message DB: the functions and unique indexes must be there."""
    for schema, drop in [
        ("ms3", "DROP FUNCTION ms3.stream_version(varchar), ms3.write_message"),
        ("ms4", "DROP INDEX ms4.messages_stream"),
    ]:
        install = FIXTURE.read_text().replace("message_store.", f"{schema}.")
        install = install.replace(
            "SCHEMA IF NOT EXISTS message_store", f"SCHEMA IF NOT EXISTS {schema}"
        )
        run_sync(_execute, message_db, install + f";\n{drop};")
    untouched = asyncio.run(_dump(message_db))
    where = "Error: schema {} is not a Message DB installation"
    no_functions = run_cli("adopt", "--db-url", message_db, "--schema", "ms3", "--namespace", "x")
    assert (no_functions.returncode, no_functions.stderr) == (
        1,
        where.format("ms3") + ": function write_message, stream_version missing\n",
    )
    no_index = run_cli("adopt", "--db-url", message_db, "--schema", "ms4", "--namespace", "x")
    assert (no_index.returncode, no_index.stderr) == (
        1,
        where.format("ms4") + ": unique index messages_stream missing\n",
    )
    assert asyncio.run(_dump(message_db)) == untouched


def test_release_keeps_the_data_and_the_schema_can_be_adopted_again(
    message_db: str, serve: Any
) -> None:
    async def write() -> None:
        client = await _client(message_db)
        await _seed(client)
        await client.conn.close()

    asyncio.run(write())
    token = _adopt(message_db)
    server = serve(message_db)
    messages = everything(server, token)
    released = server.ok(ADMIN_TOKEN, "ns.release", "legacy")
    assert released["namespace"] == "legacy"
    assert server.rpc(token, "stream.get", "account-1").status_code == 403
    assert "legacy" not in [n["namespace"] for n in server.ok(ADMIN_TOKEN, "ns.list")]

    token = _adopt(message_db)  # already migrated: only registered again
    assert everything(server, token) == messages
    result = run_cli("adopt", "--db-url", message_db, "--namespace", "legacy", "--release")
    assert result.returncode == 0, result.stderr
    assert "schema message_store and its messages are untouched" in result.stdout

    async def rows() -> int:
        client = await _client(message_db)
        count: int = await client.conn.fetchval("SELECT count(*) FROM messages")
        await client.conn.close()
        return count

    assert asyncio.run(rows()) == len(messages)
    again = run_cli("adopt", "--db-url", message_db, "--namespace", "legacy", "--release")
    assert (again.returncode, again.stderr) == (1, "Error: Namespace 'legacy' not found\n")


# -- copy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_import_from_message_db_copies_every_field_and_resumes(
    message_db: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async def write(count: int) -> list[list[Any]]:
        client = await _client(message_db)
        for i in range(count):
            await client.write(f"account-{i % 7}", "Deposited", {"n": i, "f": i / 7}, {"k": i})
        rows = await client.rows()
        await client.conn.close()
        return rows

    rows = asyncio.run(write(40))
    server = Server(server_args(kind, request, tmp_path), workdir=tmp_path, kind=kind)
    try:
        target = make_tenant(server)
        url = f"{message_db}?schema=message_store"
        args = ["import", "--url", server.url, "--token", target.token, "--from-message-db", url]
        first = run_cli(*args)
        assert first.returncode == 0, first.stderr
        assert "Verified: 40 messages, last global position 40." in first.stderr
        assert target.ok("category.get", "", {"position": 0}) == rows

        rows = asyncio.run(write(25))  # more SQL writes, then continue the copy
        refused = run_cli(*args)
        assert refused.returncode == 1
        assert "--resume" in refused.stderr
        resumed = run_cli(*args, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "Resuming after global position 40" in resumed.stderr
        assert "Verified: 65 messages, last global position 65." in resumed.stderr
        assert target.ok("category.get", "", {"position": 0}) == rows
    finally:
        assert server.stop() == 0, server.output()
