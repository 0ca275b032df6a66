"""HTTP throughput and latency of ``POST /rpc`` under wrk, on SQLite files and on Postgres.

Not a test: it prints figures for docs/PERFORMANCE.md. For each backend it starts the real
server through the CLI (``python -m eventodb serve``) on a free loopback port, creates a
namespace, pre-fills a 100-message stream and a 100-message category, then runs wrk (Lua
scripts in ``scripts/wrk/``) for ``stream.write`` to a new stream per request, ``stream.get``
of 100 messages and ``category.get`` of 100 messages at 1, 8 and 64 connections. Every run
must answer 200 only (counted in Lua). For Postgres it then runs ``scripts/bench_store.py
--backend direct`` at the same concurrencies and prints HTTP writes/s over direct writes/s.
Usage::

    .venv/bin/python scripts/bench_http.py                          # SQLite files and Postgres
    .venv/bin/python scripts/bench_http.py --backends sqlite --duration 5 --repeat 1
    .venv/bin/python scripts/bench_http.py --backends postgres --pg-url postgres://postgres@127.0.0.1

Postgres runs on a fresh database ``bench_http_<random>`` created on ``--pg-url`` and dropped
at the end. The server logs at its default level (one request line per request, batched).
Columns: median req/s and latency percentiles over the repeats, ``cpu us`` = server process CPU
time (user + system, every thread) per request, ``non-200`` = answers other than 200 plus socket
errors (must be 0), ``load`` = 1-minute load average after the runs (2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = ROOT / "scripts" / "wrk"
ADMIN_TOKEN = "ns_ZGVmYXVsdA_" + "0" * 64
READ_STREAM = "read-1"
READ_CATEGORY = "readcat"
SCENARIOS = ("stream.write", "stream.get", "category.get")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The server as a user runs it: the CLI in a subprocess, output to a log file."""

    command = [sys.executable, "-m", "eventodb"]

    def __init__(self, backend_args: list[str], workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.log = self.log_path.open("wb")
        command = [*self.command, "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--token", ADMIN_TOKEN, *backend_args]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except (OSError, urllib.error.URLError) as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.log_path.read_text()
                    raise RuntimeError(f"server did not start:\n{log}") from exc
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all threads; Linux)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rpc(self, token: str, *request: Any) -> Any:
        http = urllib.request.Request(
            self.url + "/rpc",
            data=orjson.dumps(list(request)),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(http, timeout=10) as response:
            return orjson.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def prepare(server: Server) -> str:
    """A fresh namespace with a 100-message stream and a 100-message category; its token."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    token = str(server.rpc(ADMIN_TOKEN, "ns.create", namespace)["token"])
    for i in range(100):
        message = {"type": "Bench", "data": {"i": i, "pad": "x" * 100}}
        server.rpc(token, "stream.write", READ_STREAM, message)
        server.rpc(token, "stream.write", f"{READ_CATEGORY}-{i % 10}", message)
    assert len(server.rpc(token, "stream.get", READ_STREAM, {"batchSize": 100})) == 100
    assert len(server.rpc(token, "category.get", READ_CATEGORY, {"batchSize": 100})) == 100
    return token


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_us: float
    """Server CPU time per request (user + system, all threads)."""
    requests: int
    non200: int
    socket_errors: int


_LINE = re.compile(r"^EVENTODB (.*)$", re.MULTILINE)


def run_wrk(
    server: Server, token: str, scenario: str, connections: int, duration: int
) -> WrkResult:
    if scenario == "stream.write":
        script, args = "write.lua", [f"r{uuid.uuid4().hex[:8]}"]
    else:
        target = READ_STREAM if scenario == "stream.get" else READ_CATEGORY
        script, args = "read.lua", [scenario, target]
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s"]
    command += ["--latency", "--timeout", "10s", "-H", f"Authorization: Bearer {token}"]
    command += ["-s", str(WRK_DIR / script), server.url + "/rpc", "--", *args]
    cpu = server.cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    cpu = server.cpu_seconds() - cpu
    match = _LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    fields = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    socket_errors = sum(fields[k] for k in ("connect", "read", "write", "timeout"))
    if fields["non200"] or fields["status_errors"] or socket_errors:
        print(f"  !! {scenario} c={connections}: {fields}\n{done.stderr}", file=sys.stderr)
    return WrkResult(
        rps=fields["requests"] / (fields["duration_us"] / 1e6),
        p50_ms=fields["p50_us"] / 1000,
        p95_ms=fields["p95_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        cpu_us=cpu * 1e6 / max(1, fields["requests"]),
        requests=fields["requests"],
        non200=fields["non200"],
        socket_errors=socket_errors,
    )


def median_result(runs: list[WrkResult]) -> WrkResult:
    """Median of every column separately (runs are few; each column is reported on its own)."""
    return WrkResult(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p95_ms=statistics.median(r.p95_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
        requests=sum(r.requests for r in runs),
        non200=sum(r.non200 for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
    )


def bench_backend(
    label: str, server: Server, connections: list[int], duration: int, repeat: int
) -> dict[tuple[str, int], WrkResult]:
    token = prepare(server)
    results: dict[tuple[str, int], WrkResult] = {}
    print(f"\n== HTTP {label} (server pid {server.pid}), wrk {duration}s x {repeat}, medians")
    print(
        f"{'request':<14}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'cpu us':>8}{'non-200':>8}{'load':>6}  runs req/s"
    )
    for scenario in SCENARIOS:
        for c in connections:
            runs = [run_wrk(server, token, scenario, c, duration) for _ in range(repeat)]
            m = median_result(runs)
            results[scenario, c] = m
            each = " / ".join(f"{r.rps:.0f}" for r in runs)
            print(
                f"{scenario:<14}{c:>6}{m.rps:>9.0f}{m.p50_ms:>9.2f}{m.p95_ms:>9.2f}"
                f"{m.p99_ms:>9.2f}{m.cpu_us:>8.0f}{m.non200 + m.socket_errors:>8}"
                f"{os.getloadavg()[0]:>6.1f}  {each}",
                flush=True,
            )
    return results


_DIRECT = re.compile(r"write\s+(\d+) writers, distinct streams\s*:\s+(\d+) writes/s")


def run_direct(dsn: str, connections: list[int], repeat: int) -> dict[int, float]:
    """``bench_store.py --backend direct``: writes/s per concurrency (distinct streams)."""
    command = [sys.executable, str(ROOT / "scripts" / "bench_store.py"), "--backend", "direct"]
    command += ["--dsn", dsn, "--concurrency", ",".join(map(str, connections))]
    command += ["--repeat", str(repeat), "--writes", "8000"]
    print("\n$ " + " ".join(command[1:]), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True)
    print(done.stdout, end="")
    return {int(w): float(r) for w, r in _DIRECT.findall(done.stdout)}


async def _admin(base_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite-sync", default="normal")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.2f},{os.getloadavg()[1]:.2f}")

    for backend in args.backends.split(","):
        workdir = Path(tempfile.mkdtemp(prefix="eventodb-bench-http-"))
        database = f"bench_http_{uuid.uuid4().hex[:8]}"
        dsn = re.sub(r"/[^/]*$", f"/{database}", args.pg_url)
        try:
            if backend == "sqlite":
                backend_args = ["--data-dir", str(workdir / "data")]
                backend_args += ["--sqlite-sync", args.sqlite_sync]
                label = f"SQLite files (sync={args.sqlite_sync})"
            elif backend == "postgres":
                asyncio.run(_admin(args.pg_url, f'CREATE DATABASE "{database}"'))
                backend_args, label = ["--db-url", dsn], f"Postgres ({database})"
            else:
                sys.exit(f"unknown backend {backend!r}")
            server = Server(backend_args, workdir)
            try:
                results = bench_backend(label, server, connections, args.duration, args.repeat)
            finally:
                server.stop()
            if backend == "postgres":
                direct = run_direct(dsn, connections, args.repeat)
                print("\nHTTP stream.write / direct write_message (distinct streams)")
                for c in connections:
                    http = results["stream.write", c].rps
                    if c in direct:
                        print(
                            f"  {c:>3} connections: {http:>7.0f} / {direct[c]:>7.0f} writes/s"
                            f" = {http / direct[c]:.0%}"
                        )
        finally:
            if backend == "postgres":
                drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
                asyncio.run(_admin(args.pg_url, drop))
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload at end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
