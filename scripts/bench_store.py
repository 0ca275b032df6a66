"""Store-level throughput: writes with 1/8/32 concurrent writers, 100-message reads.

Not a test: it prints figures for docs/PERFORMANCE.md. Usage::

    .venv/bin/python scripts/bench_store.py --backend sqlite-file
    .venv/bin/python scripts/bench_store.py --backend sqlite-memory
    .venv/bin/python scripts/bench_store.py --backend postgres --dsn postgres://postgres@127.0.0.1/x
    .venv/bin/python scripts/bench_store.py --backend direct --dsn postgres://...

``direct`` calls the namespace schema's ``write_message`` through asyncpg with the same
concurrency, so the store's overhead shows as a ratio against ``postgres``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from eventodb.core import tokens
from eventodb.store.base import Store
from eventodb.store.sqlite import SQLiteStore

WriteFn = Callable[[str, int], Awaitable[Any]]


async def _run_writers(write: WriteFn, writers: int, per_writer: int, one_stream: bool) -> float:
    run = uuid.uuid4().hex[:8]

    async def writer(k: int) -> None:
        for i in range(per_writer):
            stream = f"one{run}-1" if one_stream else f"w{run}{k}-{i}"
            await write(stream, i)

    start = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(writers)))
    return writers * per_writer / (time.perf_counter() - start)


async def _reads(fn: Callable[[], Awaitable[Any]], seconds: float) -> float:
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await fn()
        count += 1
    return count / (time.perf_counter() - start)


async def _open(backend: str, dsn: str | None, sync: str) -> Store:
    if backend == "sqlite-file":
        store: Store = SQLiteStore(tempfile.mkdtemp(prefix="eventodb-bench-"), synchronous=sync)
    elif backend == "sqlite-memory":
        store = SQLiteStore(None)
    else:
        from eventodb.store.postgres import PostgresStore

        assert dsn, "--dsn is required for postgres"
        store = PostgresStore(dsn)
    await store.open()
    return store


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--backend",
        choices=["sqlite-file", "sqlite-memory", "postgres", "direct"],
        default="sqlite-file",
    )
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--sync", default="NORMAL", help="SQLite synchronous mode")
    parser.add_argument("--writes", type=int, default=4000, help="writes per configuration")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    store = await _open(
        "postgres" if args.backend == "direct" else args.backend, args.dsn, args.sync
    )
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    await store.create_namespace(namespace, tokens.hash_token(tokens.generate(namespace)))
    write: WriteFn

    if args.backend == "direct":
        import asyncpg

        pool = await asyncpg.create_pool(args.dsn, min_size=8, max_size=40)
        schema = await pool.fetchval(
            "SELECT schema_name FROM eventodb_store.namespaces WHERE id = $1", namespace
        )

        async def direct(stream: str, i: int) -> Any:
            return await pool.fetchval(
                f'SELECT "{schema}".write_message($1, $2, $3, $4::jsonb)',
                str(uuid.uuid4()),
                stream,
                "Bench",
                f'{{"i":{i}}}',
            )

        write = direct
    else:

        async def via_store(stream: str, i: int) -> Any:
            return await store.write_message(namespace, stream, "Bench", {"i": i})

        write = via_store

    print(f"backend={args.backend} sync={args.sync}")
    for writers in [int(c) for c in args.concurrency.split(",")]:
        for one_stream in (False, True):
            rates = [
                await _run_writers(write, writers, max(1, args.writes // writers), one_stream)
                for _ in range(args.repeat)
            ]
            target = "one stream" if one_stream else "distinct streams"
            print(
                f"write  {writers:>2} writers, {target:<16}: "
                f"{statistics.median(rates):>8.0f} writes/s (median of {args.repeat})"
            )

    if args.backend != "direct":
        for i in range(100):
            await store.write_message(namespace, "read-1", "Bench", {"i": i, "pad": "x" * 100})
        stream_rate = await _reads(
            lambda: store.get_stream_messages(namespace, "read-1", batch_size=100), 3.0
        )
        category_rate = await _reads(
            lambda: store.get_category_messages(namespace, "read", batch_size=100), 3.0
        )
        for label, rate in (("stream.get  ", stream_rate), ("category.get", category_rate)):
            print(f"read   {label} 100 messages: {rate:>8.0f} reads/s ({rate * 100:.0f} msg/s)")
    await store.delete_namespace(namespace)
    await store.close()


if __name__ == "__main__":
    # The server runs on uvloop, so the figures are taken on it too.
    import uvloop

    uvloop.run(main())
