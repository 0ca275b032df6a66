"""Pokes across processes on one Postgres: two servers, plain SQL writers, a killed LISTEN
connection. Every subscriber on every process must be poked for every write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.subscriptions.conftest import Tenant, start_server
from tests.support.postgres import plain_connection
from tests.support.server import ADMIN_TOKEN, Server, unique
from tests.support.sseclient import Collector, subscribe

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

KINDS: list[dict[str, Any]] = [
    {"stream": "acct-1"},
    {"category": "acct"},
    {"category": "acct", "consumer": 0, "size": 2},
    {"category": "acct", "consumer": 1, "size": 2},
    {"all": "true"},
]


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Two server processes on the same Postgres database."""
    first = start_server("postgres", request, tmp_path_factory.mktemp("pg-a"))
    second = start_server("postgres", request, tmp_path_factory.mktemp("pg-b"))
    yield first, second
    for srv in (first, second):
        assert srv.stop() == 0, srv.output()


@pytest.fixture
async def tenants(servers: tuple[Server, Server]) -> AsyncIterator[tuple[Tenant, Tenant]]:
    """One namespace, reachable through either server."""
    namespace = unique("pg")
    token = servers[0].ok(ADMIN_TOKEN, "ns.create", namespace)["token"]
    pair = (Tenant(servers[0], namespace, token), Tenant(servers[1], namespace, token))
    yield pair
    for t in pair:
        await t.aclose()
    servers[0].rpc(ADMIN_TOKEN, "ns.delete", namespace)


@pytest.fixture
async def sql(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with plain_connection(postgres_dsn) as conn:
        yield conn


def schema_of(namespace: str) -> str:
    """``eventodb_`` + the id (our test namespaces only use ``[A-Za-z0-9_]``)."""
    return f'"eventodb_{namespace}"'


async def sql_write(conn: asyncpg.Connection, namespace: str, stream: str) -> tuple[int, int]:
    """A Message DB client's write: ``write_message`` called directly, no server involved."""
    position = await conn.fetchval(
        f"SELECT {schema_of(namespace)}.write_message($1, $2, 'T', '{{}}'::jsonb)",
        str(uuid.uuid4()),
        stream,
    )
    gp = await conn.fetchval(
        f"SELECT global_position FROM {schema_of(namespace)}.messages"
        " WHERE stream_name = $1 AND position = $2",
        stream,
        position,
    )
    return int(position), int(gp)


def wants(params: dict[str, Any], stream: str, member: dict[str, int]) -> bool:
    if "stream" in params:
        return bool(params["stream"] == stream)
    if params.get("all") == "true":
        return True
    if not stream.startswith(params["category"] + "-"):
        return False
    return "size" not in params or member[stream] == params["consumer"]


async def open_everywhere(pair: tuple[Tenant, Tenant]) -> list[tuple[dict[str, Any], Collector]]:
    return [
        (params, Collector(await subscribe(t.port, params, token=t.token)))
        for t in pair
        for params in KINDS
    ]


async def check_all_poked(
    tenant: Tenant,
    subs: list[tuple[dict[str, Any], Collector]],
    written: list[tuple[str, int, int]],
) -> None:
    # Group ownership as category.get reports it (the oracle for consumer groups).
    member: dict[str, int] = {}
    for m in range(2):
        for row in await tenant.category("acct", consumerGroup={"member": m, "size": 2}):
            member[row[1]] = m
    for params, collector in subs:
        should = [w for w in written if wants(params, w[0], member)]
        assert should, params
        try:
            await collector.wait_for(lambda c, s=should: c.covers_all(s), 15)  # type: ignore[misc]
        except TimeoutError:
            missing = [w for w in should if not collector.covers(w[0], w[1])]
            raise AssertionError(f"{params} missed {len(missing)}: {missing[:5]}") from None


async def close_all(subs: list[tuple[dict[str, Any], Collector]]) -> None:
    for _, collector in subs:
        await collector.close()


async def test_writes_through_either_server_or_plain_sql_reach_subscribers_of_both(
    tenants: tuple[Tenant, Tenant], sql: asyncpg.Connection
) -> None:
    subs = await open_everywhere(tenants)
    try:
        written: list[tuple[str, int, int]] = []
        for i in range(30):
            stream = f"acct-{i % 7}"
            if i % 3 == 2:
                written.append((stream, *await sql_write(sql, tenants[0].namespace, stream)))
            else:
                written.append((stream, *await tenants[i % 3].write(stream)))
        written.append(("acct-1", *await sql_write(sql, tenants[0].namespace, "acct-1")))
        await check_all_poked(tenants[0], subs, written)
    finally:
        await close_all(subs)


async def test_killing_the_listen_connections_loses_no_poke(
    tenants: tuple[Tenant, Tenant], sql: asyncpg.Connection, postgres_dsn: str
) -> None:
    namespace = tenants[0].namespace
    subs = await open_everywhere(tenants)
    writers = [await asyncpg.connect(postgres_dsn) for _ in range(3)]
    written: list[tuple[str, int, int]] = []
    stop = asyncio.Event()

    # A fresh stream per write, so a later write can never stand in for a lost poke.
    async def sql_writer(conn: asyncpg.Connection, index: int) -> None:
        i = 0
        while not stop.is_set():
            stream = f"acct-sql{index}x{i}" if i % 10 else "acct-1"
            written.append((stream, *await sql_write(conn, namespace, stream)))
            i += 1

    async def server_writer(tenant: Tenant) -> None:
        i = 0
        while not stop.is_set():
            stream = f"acct-{tenant.port}x{i}"
            written.append((stream, *await tenant.write(stream)))
            i += 1

    try:
        tasks = [asyncio.ensure_future(sql_writer(c, n)) for n, c in enumerate(writers)]
        tasks += [asyncio.ensure_future(server_writer(t)) for t in tenants]
        killed = 0
        for _ in range(4):
            await asyncio.sleep(0.3)
            killed += await sql.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'eventodb-listen' AND datname = current_database()"
            )
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
        assert killed >= 8, "both servers' LISTEN connections should have been killed 4 times"
        assert len(written) > 100
        await check_all_poked(tenants[0], subs, written)
        for srv in (tenants[0].server, tenants[1].server):
            assert "after a notification gap" in srv.output()
    finally:
        stop.set()
        for conn in writers:
            await conn.close()
        await close_all(subs)


def test_servers_share_one_database(servers: tuple[Server, Server], tmp_path: Path) -> None:
    """Sanity check of the fixture: a namespace created on one server is usable on the other."""
    namespace = unique("pg")
    token = servers[0].ok(ADMIN_TOKEN, "ns.create", namespace)["token"]
    try:
        result = servers[1].ok(token, "stream.write", "x-1", {"type": "T", "data": {}})
        assert result["position"] == 0
    finally:
        servers[0].rpc(ADMIN_TOKEN, "ns.delete", namespace)
