"""Two versions of the server side by side: the same workload over HTTP, alternating rounds.

Not a test: it measures a change (docs/DESIGN.md, "Performance decisions"). Usage::

    git worktree add /tmp/before HEAD~1      # or any other checkout of the repository
    .venv/bin/python scripts/bench_versions.py /tmp/before . --workload stream.get
    .venv/bin/python scripts/bench_versions.py /tmp/before . --workload write-spread -c 32
    .venv/bin/python scripts/bench_versions.py /tmp/before . --backend sqlite --rounds 8

Each checkout's ``src`` serves from a server of its own (``python -m eventodb serve`` with
that ``src`` first on ``PYTHONPATH``, this script's virtualenv for the dependencies), each on
a database of its own: a fresh Postgres database ``bench_versions_<n>`` on ``--pg-url``
(dropped at the end) or a fresh SQLite data directory. Both get the data, and run the
workloads, of ``scripts/bench_vs_message_db.py`` (its HTTP side). wrk runs against one server,
then the other, ``--rounds`` times, and the script prints for each version the medians
of the rounds: requests per second, p50/p95/p99, ``cpu us`` of its server per request and
``db us`` of Postgres per request (all its processes: run it where nothing else uses them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench_vs_message_db import WORKLOADS, fill_http, http_round
from benchlib import ADMIN_TOKEN, Rate, Server, machine_line, median, run_sql


def fill(server: Server) -> str:
    """A namespace holding the data the workloads read; its token."""
    token: str = server.rpc(ADMIN_TOKEN, "ns.create", "bench", {})["token"]
    fill_http(server, token)
    return token


def start(tree: Path, index: int, args: argparse.Namespace, workdir: Path) -> Server:
    """A server of checkout ``tree`` on a fresh database of its own."""
    os.environ["PYTHONPATH"] = str(tree / "src")
    if args.backend == "sqlite":
        return Server(["--data-dir", str(workdir / "data")], workdir)
    database = f"bench_versions_{index}"
    run_sql(args.pg_url, f"DROP DATABASE IF EXISTS {database}")
    run_sql(args.pg_url, f"CREATE DATABASE {database}")
    url = args.pg_url.rsplit("/", 1)[0] + "/" + database
    return Server(["--db-url", url], workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts: before, after")
    parser.add_argument("--workload", choices=WORKLOADS, default="stream.get")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per round")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    trees = [tree.resolve() for tree in args.trees]
    for tree in trees:
        if not (tree / "src" / "eventodb").is_dir():
            sys.exit(f"{tree} is not a checkout of EventoDB (no src/eventodb)")
    print(machine_line())
    servers: list[tuple[Server, str]] = []
    try:
        for index, tree in enumerate(trees):
            server = start(tree, index, args, Path(tempfile.mkdtemp(prefix="bench-versions-")))
            servers.append((server, fill(server)))
        rounds: list[list[Rate]] = [[] for _ in trees]
        for _ in range(args.rounds):
            for runs, (server, token) in zip(rounds, servers, strict=True):
                runs.append(
                    http_round(server, token, args.workload, args.connections, args.duration)
                )
    finally:
        for server, _ in servers:
            server.stop()
        if args.backend == "postgres":
            for index in range(len(trees)):
                run_sql(args.pg_url, f"DROP DATABASE IF EXISTS bench_versions_{index}")
    print(f"{args.backend} {args.workload}, {args.connections} connections, medians of"
          f" {args.rounds} alternating {args.duration}s rounds")  # fmt: skip
    print(
        "version                        req/s   p50 ms   p95 ms   p99 ms  cpu us   db us errors"
        " steal%"
    )
    for tree, runs in zip(trees, rounds, strict=True):
        m = median(runs)
        db = "-" if m.db_cpu_us is None or args.backend == "sqlite" else f"{m.db_cpu_us:.0f}"
        steal = "-" if m.steal is None else f"{m.steal:.0f}"
        print(
            f"{str(tree)[-28:]:28} {m.rps:9.0f} {m.p50_ms:8.2f} {m.p95_ms:8.2f} {m.p99_ms:8.2f}"
            f" {m.cpu_us:7.0f} {db:>7} {m.errors:6} {steal:>6}"
        )


if __name__ == "__main__":
    main()
