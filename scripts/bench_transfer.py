"""Import and export throughput of the real CLI against a real server (docs/PERFORMANCE.md).

Writes an NDJSON file of N messages over S streams (payloads like a small domain event, times
with microseconds), starts ``eventodb`` on the chosen backend, then per round: creates a fresh
namespace, times ``eventodb import`` of the file into it, and times ``eventodb export`` of that
namespace to a file (gzip off). Prints every round, the medians and the load average seen.

    .venv/bin/python scripts/bench_transfer.py --backend sqlite --messages 100000 --rounds 3
    .venv/bin/python scripts/bench_transfer.py --backend postgres \\
        --dsn postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from benchlib import machine_line

from eventodb.core import jsoncodec, tokens

ADMIN = tokens.TEST_TOKEN


def write_file(path: Path, messages: int, streams: int) -> None:
    with path.open("wb") as out:
        for g in range(1, messages + 1):
            record = {
                "id": str(uuid.UUID(int=g)),
                "stream": f"account-{g % streams}",
                "type": "Deposited",
                "pos": (g - 1) // streams,
                "gpos": g,
                "data": {"amount": g % 997, "currency": "EUR", "reference": f"ref-{g:012d}"},
                "meta": {"correlationStreamName": f"transfer-{g % 50}"} if g % 3 else None,
                "time": f"2025-01-15T10:{g // 60_000_000 % 60:02d}:{g // 1_000_000 % 60:02d}"
                f".{g % 1_000_000:06d}Z",
            }
            out.write(jsoncodec.dumps(record) + b"\n")


def cli(*args: str) -> float:
    """Seconds the command took; fails loudly."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "eventodb", *args], capture_output=True, check=False
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"eventodb {args[0]} failed:\n{done.stderr.decode()}")
    return took


async def fresh_database(admin_dsn: str) -> str:
    name = f"eventodb_bench_{os.getpid()}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


async def drop_database(admin_dsn: str, dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18_600)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eventodb-bench-transfer-"))
    data = work / "messages.ndjson"
    write_file(data, args.messages, args.streams)
    size = data.stat().st_size
    print(machine_line())
    print(f"{args.messages:,} messages, {args.streams:,} streams, {size / 1e6:.1f} MB")

    dsn = asyncio.run(fresh_database(args.dsn)) if args.backend == "postgres" else None
    store = ["--db-url", dsn] if dsn else ["--data-dir", str(work / "data")]
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "eventodb", *store, f"--token={ADMIN}", f"--port={args.port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"})
    try:
        for _ in range(200):
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        load_before = os.getloadavg()
        imports: list[float] = []
        exports: list[float] = []
        for round_ in range(args.rounds):
            created = client.post("/rpc", json=["ns.create", f"bench{round_}"]).json()
            token = created["token"]
            took = cli("import", "--url", url, "--token", token, "--input", str(data))
            imports.append(args.messages / took)
            out = work / f"export{round_}.ndjson"
            took = cli("export", "--url", url, "--token", token, "--output", str(out))
            exports.append(args.messages / took)
            print(
                f"round {round_ + 1}: import {imports[-1]:,.0f} msg/s,"
                f" export {exports[-1]:,.0f} msg/s (load {os.getloadavg()[0]:.2f})"
            )
        load_after = os.getloadavg()
        print(
            f"{args.backend}: import median {statistics.median(imports):,.0f} msg/s,"
            f" export median {statistics.median(exports):,.0f} msg/s"
            f" (1-min load before {load_before[0]:.2f}, after {load_after[0]:.2f};"
            f" {os.cpu_count()} cores; the times include starting the CLI)"
        )
    finally:
        client.close()
        server.terminate()
        server.wait(30)
        if dsn is not None:
            asyncio.run(drop_database(args.dsn, dsn))


if __name__ == "__main__":
    main()
