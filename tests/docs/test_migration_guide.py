"""docs/MIGRATION.md holds: the server started on storage the Go server left (Postgres database,
SQLite data directory) serves it unchanged, and the Message DB worked example runs as written.
Real server and CLI in subprocesses, real databases."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventodb.core import tokens
from tests.docs.conftest import DOCS
from tests.store.postgres.test_backend import UPSTREAM_MESSAGES, UPSTREAM_SCHEMA
from tests.store.postgres.test_message_db_portability import FIXTURE
from tests.support.fixture_files import FIXTURES
from tests.support.ports import free_port
from tests.support.postgres import create_database, drop_database, run_sync, with_database
from tests.support.server import ADMIN_TOKEN, Server

pytestmark = pytest.mark.timeout(120)

GUIDE = DOCS / "MIGRATION.md"
LEGACY_TOKEN = tokens.generate("legacy")


@pytest.fixture
def database(postgres_dsn: str) -> Iterator[str]:
    """A fresh, empty Postgres database."""
    admin = with_database(postgres_dsn, "postgres")
    url = run_sync(create_database, admin)
    try:
        yield url
    finally:
        run_sync(drop_database, admin, url)


def _check_served_unchanged(server: Server, times: list[str]) -> None:
    """The Go server's messages, token and positions, as it left them."""
    old = server.ok(LEGACY_TOKEN, "stream.get", "account-1")
    assert [m[:6] for m in old] == [
        ["6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e001", "Opened", 0, 1, {"n": 1}, None],
        ["6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e002", "Deposited", 1, 2, {"n": 2}, None],
    ]
    assert [m[6] for m in old] == times
    written = server.ok(LEGACY_TOKEN, "stream.write", "account-1", {"type": "W", "data": {}})
    assert written == {"position": 2, "globalPosition": 3}
    listed = {n["namespace"]: n["messageCount"] for n in server.ok(ADMIN_TOKEN, "ns.list")}
    assert listed["legacy"] == 3
    assert server.ok(ADMIN_TOKEN, "sys.health")["status"] == "ok"
    assert "namespace migration" in server.output()


@pytest.mark.postgres
def test_a_go_server_postgres_database_is_served_unchanged(database: str, tmp_path: Path) -> None:
    async def lay_out() -> None:
        conn = await asyncpg.connect(database)
        try:
            await conn.execute((FIXTURES / "eventodb_go_0_7_postgres_registry.sql").read_text())
            await conn.execute(UPSTREAM_SCHEMA + UPSTREAM_MESSAGES)
            await conn.execute(
                "INSERT INTO eventodb_store.namespaces VALUES"
                " ('legacy', $1, 'eventodb_legacy', 'from Go', 1714557600, '{}')",
                tokens.hash_token(LEGACY_TOKEN),
            )
        finally:
            await conn.close()

    run_sync(lay_out)
    server = Server([f"--token={ADMIN_TOKEN}", "--db-url", database], workdir=tmp_path)
    try:
        _check_served_unchanged(server, ["2024-05-01T10:00:00.5Z", "2024-05-01T10:00:01Z"])
    finally:
        assert server.stop() == 0, server.output()


def test_a_go_server_sqlite_data_directory_is_served_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "metadata.db") as conn:
        conn.executescript((FIXTURES / "eventodb_go_0_7_sqlite_registry.sql").read_text())
        conn.execute(
            "INSERT INTO namespaces VALUES ('legacy', ?, 'legacy.db', 'from Go', 1714557600, '{}')",
            (tokens.hash_token(LEGACY_TOKEN),),
        )
    with sqlite3.connect(data / "legacy.db") as conn:
        conn.executescript((FIXTURES / "eventodb_go_0_7_sqlite_namespace.sql").read_text())
        conn.executemany(
            "INSERT INTO messages (id, stream_name, type, position, data, metadata, time)"
            " VALUES (?, 'account-1', ?, ?, ?, NULL, ?)",
            [
                ("6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e001", "Opened", 0, '{"n":1}', 1714557600),
                ("6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e002", "Deposited", 1, '{"n":2}', 1714557601),
            ],
        )
    server = Server([f"--token={ADMIN_TOKEN}", f"--data-dir={data}"], workdir=tmp_path)
    try:
        _check_served_unchanged(server, ["2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z"])
    finally:
        assert server.stop() == 0, server.output()


def _worked_example() -> str:
    guide = GUIDE.read_text("utf-8")
    section = guide.split("### Worked example", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1)


@pytest.mark.postgres
def test_the_message_db_worked_example_runs(database: str, tmp_path: Path) -> None:
    async def install() -> None:
        conn = await asyncpg.connect(database)
        try:
            await conn.execute(FIXTURE.read_text())
        finally:
            await conn.close()

    run_sync(install)
    port = free_port()
    script = _worked_example().replace("8080", str(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_")}
    env |= {
        "MESSAGE_DB": database,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout
    assert "Would adopt schema message_store (Message DB 1.3.0, 1 messages" in out
    assert "Dry run: nothing was changed." in out
    last: Any = re.search(r'\["[0-9a-f-]{36}","Opened",0,1,.*\]', out)
    assert last is not None, out
    assert json.loads(last.group(0))[4] == {"owner": "ann"}  # the message written with SQL
    # stream.version after the SQL write, then the release, then the rows still there.
    assert re.search(
        r"\n1\s*Released namespace 'accounts': schema message_store and its messages are"
        r" untouched\.\n2\n$",
        out,
    ), out
