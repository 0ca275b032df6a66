"""The store through PgBouncer in session mode, which docs/DEPLOYMENT.md allows in front of
Postgres: the pool's connections open (PgBouncer refuses start-up parameters it does not know),
get their session settings, write and read, and the LISTEN connection hears other writers.

PgBouncer is Debian's ``pgbouncer`` (``/usr/sbin/pgbouncer`` or ``$EVENTODB_PGBOUNCER``;
``.ci/run`` installs it); without it these tests are skipped, and fail with ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from eventodb.store.base import ConsumerGroup, Poke
from eventodb.store.postgres.statements import schema_name
from tests.support.ports import free_port
from tests.support.postgres import (
    SESSION_SETTINGS,
    open_postgres_store,
    plain_connection,
    session_settings,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

PGBOUNCER = Path(os.environ.get("EVENTODB_PGBOUNCER", "/usr/sbin/pgbouncer"))
NS = "bounced"


@pytest.fixture
def bouncer_dsn(postgres_dsn: str, tmp_path: Path) -> Iterator[str]:
    """``postgres_dsn`` through a PgBouncer of its own, in session mode."""
    if not PGBOUNCER.exists():
        message = f"{PGBOUNCER} is missing: install Debian's pgbouncer (apt-get install pgbouncer)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    target = urlsplit(postgres_dsn)
    port = free_port()
    config = tmp_path / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={target.hostname or '127.0.0.1'} port={target.port or 5432}"
        f" user={target.username or 'postgres'}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        "auth_type = any\npool_mode = session\nunix_socket_dir =\n"
    )
    command = [str(PGBOUNCER), str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]  # it refuses to run as root
    output = tmp_path / "pgbouncer.log"
    with output.open("wb") as log:
        bouncer = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, bouncer, output)
            netloc = f"{target.username or 'postgres'}@127.0.0.1:{port}"
            yield urlunsplit((target.scheme, netloc, target.path, "", ""))
        finally:
            bouncer.terminate()
            bouncer.wait(10)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], output: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited: {output.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail("pgbouncer did not listen within 10 s")


async def test_the_store_works_through_pgbouncer_in_session_mode(
    bouncer_dsn: str, postgres_dsn: str
) -> None:
    async with open_postgres_store(bouncer_dsn) as store:
        await store.create_namespace(NS, "hash")
        assert await store._pool.run("show", session_settings) == SESSION_SETTINGS
        for i in range(4):
            await store.write_message(NS, f"account-{i}", "Opened", {"i": i})
        body = await store.read_category_json(NS, "account", consumer_group=ConsumerGroup(0, 1))
        assert body.count('"Opened"') == 4

        # A writer that does not go through this store: its NOTIFY reaches the store's LISTEN
        # connection (while someone hears other writers), which PgBouncer keeps as it is in
        # session mode.
        pokes: asyncio.Queue[Any] = asyncio.Queue()
        unsubscribe = store.add_listener(pokes.put_nowait)
        try:
            async with store.hear_other_writers():
                async with plain_connection(postgres_dsn) as sql:
                    await sql.execute(
                        f'SELECT "{schema_name(NS)}".write_message($1, $2, $3, $4)',
                        str(uuid.uuid4()),
                        "account-9",
                        "Opened",
                        "{}",
                    )
                poke = await asyncio.wait_for(pokes.get(), 5)
        finally:
            unsubscribe()
        assert isinstance(poke, Poke)
        assert (poke.namespace, poke.stream, poke.position) == (NS, "account-9", 0)
