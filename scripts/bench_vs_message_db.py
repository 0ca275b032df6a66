"""EventoDB over HTTP against a Python program calling Message DB's own functions, same run.

Not a test: it prints the figures of docs/PERFORMANCE.md. Usage::

    .venv/bin/python scripts/bench_vs_message_db.py                     # everything, ~10 min
    .venv/bin/python scripts/bench_vs_message_db.py --backends postgres --connections 8
    .venv/bin/python scripts/bench_vs_message_db.py --workloads stream.get --duration 3
    .venv/bin/python scripts/bench_vs_message_db.py --backends postgres --preload 250000
    .venv/bin/python scripts/bench_vs_message_db.py --backends sqlite --sqlite-sync full

Postgres: a fresh database ``bench_mdb_<random>`` on ``--pg-url`` holds, side by side,

* our namespace, served by the real server (``python -m eventodb serve --db-url ...``), and
* schema ``message_store``: Message DB 1.3.0's own table, indexes and functions as Message DB
  publishes them, with no NOTIFY (``tests/fixtures/message_db_1_3_0.sql``).

Both are filled with the same data (``--preload N`` first writes N messages of 20 other
categories on both sides, so that the categories read start deep into the table, as in a store
that has been in use), and both tables are analyzed before each workload (as
autovacuum would; this keeps the reads of later workloads from paying for plans made without
statistics). For every workload and connection count the script runs, in alternating rounds,
wrk against ``POST /rpc`` and the "direct" client: one Python process with N asyncpg connections
(on uvloop) calling ``message_store.write_message`` / ``get_stream_messages`` /
``get_category_messages`` in a loop and fetching the rows. Medians of ``--repeat`` rounds;
``ratio`` = HTTP req/s ÷ direct req/s; CPU time per request: ``cpu us`` of the server,
``db us`` of Postgres (all its processes) serving the HTTP side, ``d.cpu us`` of the direct
client and ``d.db us`` of Postgres serving it (so run it on a machine where nothing else uses
Postgres; ``-`` when its processes are not visible from here). The database is dropped at
the end.

SQLite: the server on a data directory of SQLite files (``--sqlite-sync normal`` by default,
``full`` to fsync every commit); HTTP writes and 100-message reads.

Workloads (names as in ``--workloads``):

* ``write-spread``: each write a new stream of its own category (no lock contention);
* ``write-category``: each write a new stream of one category (one advisory lock for all);
* ``stream.get``: 100 messages of one stream;
* ``category.get``: 100 messages of a 100-message category (10 streams);
* ``group.get``: consumer-group member 0 of 4, batch 100, of 2,000 messages in 400 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from benchlib import (
    ADMIN_TOKEN,
    ROOT,
    Rate,
    Server,
    machine_line,
    machine_ticks,
    median,
    percentile,
    postgres_cpu,
    postgres_cpu_since,
    run_sql,
    run_wrk,
    steal_since,
)

FIXTURE = ROOT / "tests" / "fixtures" / "message_db_1_3_0.sql"
WORKLOADS = ("write-spread", "write-category", "stream.get", "category.get", "group.get")
PAD = "x" * 32
READ_STREAM = "read-1"
READ_CATEGORY = "readcat"
GROUP_CATEGORY = "grp"


def _payload(i: int) -> str:
    return f'{{"i":{i},"pad":"{PAD}"}}'


# -- filling both sides with the same data -------------------------------------------------------


def _read_data() -> list[tuple[str, str]]:
    """(stream, data) of every message the read workloads need, in write order."""
    rows = []
    for i in range(100):
        rows.append((READ_STREAM, _payload(i)))
        rows.append((f"{READ_CATEGORY}-{i % 10}", _payload(i)))
    for i in range(2000):
        rows.append((f"{GROUP_CATEGORY}-{i % 400}", _payload(i)))
    return rows


def fill_http(server: Server, token: str) -> None:
    import orjson

    for stream, data in _read_data():
        server.rpc(token, "stream.write", stream, {"type": "Bench", "data": orjson.loads(data)})


async def fill_direct(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for stream, data in _read_data():
            await conn.execute(
                "SELECT message_store.write_message($1, $2, 'Bench', $3::jsonb)",
                str(uuid.uuid4()),
                stream,
                data,
            )
    finally:
        await conn.close()


# -- the direct client ---------------------------------------------------------------------------

Call = Callable[[Any, int, int], Awaitable[Any]]


def direct_call(workload: str, run: str) -> Call:
    """One request of ``workload`` as a Message DB client makes it: (connection, worker, n)."""
    if workload.startswith("write"):
        spread = workload == "write-spread"

        async def write(conn: Any, worker: int, n: int) -> Any:
            stream = f"d{run}t{worker}n{n}-1" if spread else f"d{run}-t{worker}n{n}"
            return await conn.fetchval(
                "SELECT message_store.write_message($1, $2, 'Bench', $3::jsonb)",
                str(uuid.uuid4()),
                stream,
                _payload(n),
            )

        return write
    if workload == "stream.get":
        sql, args = "SELECT * FROM message_store.get_stream_messages($1, 0, 100)", [READ_STREAM]
    elif workload == "category.get":
        sql, args = "SELECT * FROM message_store.get_category_messages($1, 1, 100)", [READ_CATEGORY]
    else:
        sql = "SELECT * FROM message_store.get_category_messages($1, 1, 100, NULL, 0, 4)"
        args = [GROUP_CATEGORY]

    async def read(conn: Any, worker: int, n: int) -> Any:
        return await conn.fetch(sql, *args)

    return read


async def run_direct(dsn: str, workload: str, connections: int, seconds: float) -> Rate:
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    call = direct_call(workload, uuid.uuid4().hex[:8])
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        n = 0
        while True:
            start = time.perf_counter()
            if start >= deadline:
                return
            await call(conns[k], k, n)
            latencies.append(time.perf_counter() - start)
            n += 1

    started = time.perf_counter()
    db_before = postgres_cpu()
    machine_before = machine_ticks()
    cpu = time.process_time()
    try:
        await asyncio.gather(*(worker(k) for k in range(connections)))
    finally:
        cpu = time.process_time() - cpu
        db_cpu = postgres_cpu_since(db_before)
        steal = steal_since(machine_before)
        elapsed = time.perf_counter() - started
        for conn in conns:
            await conn.close()
    latencies.sort()
    calls = max(1, len(latencies))
    return Rate(
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p95_ms=percentile(latencies, 0.95) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        cpu_us=cpu * 1e6 / calls,
        db_cpu_us=None if db_cpu is None else db_cpu * 1e6 / calls,
        steal=steal,
    )


def direct_round(dsn: str, workload: str, connections: int, seconds: float) -> Rate:
    try:
        import uvloop
    except ImportError:  # the baseline gets the fastest loop available
        return asyncio.run(run_direct(dsn, workload, connections, seconds))
    return uvloop.run(run_direct(dsn, workload, connections, seconds))


# -- HTTP ----------------------------------------------------------------------------------------


def http_round(server: Server, token: str, workload: str, connections: int, seconds: int) -> Rate:
    if workload.startswith("write"):
        mode = "spread" if workload == "write-spread" else "category"
        return run_wrk(
            server, token, "write.lua", [f"h{uuid.uuid4().hex[:8]}", mode], connections, seconds
        )
    if workload == "stream.get":
        args = ["stream.get", READ_STREAM]
    elif workload == "category.get":
        args = ["category.get", READ_CATEGORY]
    else:
        args = ["category.get", GROUP_CATEGORY, "0", "4"]
    return run_wrk(server, token, "read.lua", args, connections, seconds)


# -- reports -------------------------------------------------------------------------------------


def _header(extra: str, cpu: str) -> None:
    print(
        f"{'workload':<16}{'conns':>6}{'HTTP/s':>9}{extra}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'cpu us':>8}{cpu}{'errors':>7}{'load':>6}{'steal%':>7}"
    )


def _row(workload: str, c: int, http: Rate, extra: str, cpu: str, steal: float | None) -> None:
    """One line of the table; ``steal`` is the median over every round of the row."""
    print(
        f"{workload:<16}{c:>6}{http.rps:>9.0f}{extra}{http.p50_ms:>9.2f}{http.p95_ms:>9.2f}"
        f"{http.p99_ms:>9.2f}{http.cpu_us:>8.0f}{cpu}{http.errors:>7}{os.getloadavg()[0]:>6.1f}"
        f"{_rounded(steal):>7}",
        flush=True,
    )


def _rounded(value: float | None) -> str:
    """A figure rounded to a whole number; ``-`` where it is not known."""
    return "-" if value is None else f"{value:.0f}"


def bench_postgres(args: argparse.Namespace, workloads: list[str], connections: list[int]) -> None:
    database = f"bench_mdb_{uuid.uuid4().hex[:8]}"
    base = args.pg_url.rsplit("/", 1)[0]
    dsn = f"{base}/{database}"
    workdir = Path(tempfile.mkdtemp(prefix="eventodb-bench-mdb-"))
    run_sql(args.pg_url, f'CREATE DATABASE "{database}"')
    try:
        asyncio.run(_install_fixture(dsn))
        server = Server(["--db-url", dsn], workdir)
        try:
            token = _namespace(server)
            if args.preload:
                asyncio.run(_preload(dsn, args.preload))
            fill_http(server, token)
            asyncio.run(fill_direct(dsn))
            print(
                f"\n== Postgres: HTTP (server pid {server.pid}) vs direct Message DB 1.3.0, "
                f"{args.duration}s rounds x {args.repeat}, alternating, medians"
            )
            _header(f"{'direct/s':>10}{'ratio':>7}", f"{'db us':>7}{'d.cpu us':>9}{'d.db us':>8}")
            for workload in workloads:
                asyncio.run(_analyze(dsn))
                for c in connections:
                    https, directs = [], []
                    for _ in range(args.repeat):
                        https.append(http_round(server, token, workload, c, args.duration))
                        directs.append(direct_round(dsn, workload, c, args.duration))
                    http, direct = median(https), median(directs)
                    ratio = http.rps / direct.rps if direct.rps else 0.0
                    cpu = f"{_rounded(http.db_cpu_us):>7}{_rounded(direct.cpu_us):>9}"
                    cpu += f"{_rounded(direct.db_cpu_us):>8}"
                    steal = median(https + directs).steal
                    _row(workload, c, http, f"{direct.rps:>10.0f}{ratio:>7.2f}", cpu, steal)
        finally:
            server.stop()
    finally:
        run_sql(args.pg_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


def bench_sqlite(args: argparse.Namespace, workloads: list[str], connections: list[int]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="eventodb-bench-sqlite-"))
    try:
        server = Server(
            ["--data-dir", str(workdir / "data"), "--sqlite-sync", args.sqlite_sync], workdir
        )
        try:
            token = _namespace(server)
            fill_http(server, token)
            print(
                f"\n== SQLite files (--sqlite-sync {args.sqlite_sync}): HTTP (server pid "
                f"{server.pid}), {args.duration}s rounds x {args.repeat}, medians"
            )
            _header("", "")
            for workload in workloads:
                for c in connections:
                    runs = [
                        http_round(server, token, workload, c, args.duration)
                        for _ in range(args.repeat)
                    ]
                    rate = median(runs)
                    _row(workload, c, rate, "", "", rate.steal)
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _namespace(server: Server) -> str:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    return str(server.rpc(ADMIN_TOKEN, "ns.create", namespace)["token"])


async def _install_fixture(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(FIXTURE.read_text())
    finally:
        await conn.close()


_SCHEMAS = (
    "SELECT nspname FROM pg_namespace WHERE nspname = 'message_store'"
    " OR nspname LIKE 'eventodb\\_%' AND nspname <> 'eventodb_store'"
)
"""Both sides' schemas: Message DB's and the server's namespaces (the registry's excluded)."""


PRELOAD_CATEGORIES = 20
PRELOAD_STREAMS = 1000
"""Streams per category of ``--preload``'s messages."""


async def _preload(dsn: str, count: int) -> None:
    """``count`` messages in 20 other categories on both sides, before the workloads' data.

    Messages of a category are spread through a real store's table; with the preload, the
    categories the reads ask for start deep into the table instead of at its first rows.
    Written with SQL (the same messages on both sides); the server's rows get the columns its
    writes fill in (``wire_json``, ``cardinal_id_hash``), as they would through the server.
    """
    spread = PRELOAD_CATEGORIES * PRELOAD_STREAMS
    stream = (
        f"'pre' || (i % {PRELOAD_CATEGORIES}) || '-' || (i / {PRELOAD_CATEGORIES}"
        f" % {PRELOAD_STREAMS})"
    )
    conn = await asyncpg.connect(dsn)
    try:
        for (schema,) in await conn.fetch(_SCHEMAS):
            if schema == "eventodb_default":
                continue  # the server's default namespace; the workloads use their own
            table = f'"{schema}".messages'
            if schema == "message_store":
                await conn.execute(
                    f"INSERT INTO {table} (stream_name, position, type, data)"
                    f" SELECT {stream}, i / {spread}, 'Bench', '{_payload(0)}'::jsonb"
                    " FROM generate_series(0, $1 - 1) AS i",
                    count,
                )
                continue
            # A subquery whose global position and time are drawn once per row (volatile).
            await conn.execute(
                f"INSERT INTO {table} (stream_name, position, global_position, type, data, time,"
                " wire_json, cardinal_id_hash)"
                " SELECT s, p, g, 'Bench', d::jsonb, t,"
                f" \"{schema}\".message_json_tail('Bench', p, g, d, NULL, t),"
                f' "{schema}".hash_64("{schema}".cardinal_id(s))'
                f" FROM (SELECT {stream} AS s, i / {spread} AS p, '{_payload(0)}' AS d,"
                f" nextval('\"{schema}\".messages_global_position_seq') AS g,"
                " now() AT TIME ZONE 'utc' AS t FROM generate_series(0, $1 - 1) AS i) r",
                count,
            )
    finally:
        await conn.close()


async def _analyze(dsn: str) -> None:
    """Fresh statistics for both sides' tables, as autovacuum keeps them on a default Postgres.

    Without them (autovacuum off, or behind after the write workloads grew the tables) the
    planner prices the server's prepared reads as if a stream held 0.5 % of the table and plans
    every execution anew, about 0.1 ms of its CPU per read (see docs/DEPLOYMENT.md).
    """
    conn = await asyncpg.connect(dsn)
    try:
        for (schema,) in await conn.fetch(_SCHEMAS):
            await conn.execute(f'ANALYZE "{schema}".messages')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--duration", type=int, default=5, help="seconds per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per side")
    parser.add_argument(
        "--preload",
        type=int,
        default=0,
        help="Postgres: messages of other categories written before the workloads' data",
    )
    parser.add_argument(
        "--sqlite-sync",
        choices=("normal", "full"),
        default="normal",
        help="SQLite: the server's --sqlite-sync (full: fsync every commit)",
    )
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    workloads = args.workloads.split(",")
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        sys.exit(f"unknown workloads: {', '.join(sorted(unknown))}")
    connections = [int(c) for c in args.connections.split(",")]
    print(machine_line())
    for backend in args.backends.split(","):
        if backend == "postgres":
            bench_postgres(args, workloads, connections)
        elif backend == "sqlite":
            sqlite_workloads = [w for w in workloads if w in ("write-spread", "stream.get")]
            bench_sqlite(args, sqlite_workloads, connections)
        else:
            sys.exit(f"unknown backend {backend!r}")
    print(f"\nload at end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
