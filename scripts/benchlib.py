"""What the HTTP benchmark scripts share: the server as a user runs it, and wrk runs against it.

Not a test and not part of the package; imported by ``scripts/bench_*.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from eventodb.core import tokens

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = ROOT / "scripts" / "wrk"
ADMIN_TOKEN = tokens.TEST_TOKEN


def run_sql(url: str, sql: str) -> None:
    """One statement on a connection of its own (the benchmarks create and drop databases)."""

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The server as a user runs it: the CLI in a subprocess, output to a log file."""

    command = [sys.executable, "-m", "eventodb"]

    def __init__(self, backend_args: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.log = self.log_path.open("wb")
        command = [*self.command, "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--token", ADMIN_TOKEN, *backend_args]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
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
        _, ticks, _ = _proc_stat(Path(f"/proc/{self.pid}"))
        return ticks / os.sysconf("SC_CLK_TCK")

    def rpc(self, token: str, *request: Any) -> Any:
        http = urllib.request.Request(
            self.url + "/rpc",
            data=orjson.dumps(list(request)),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(http, timeout=30) as response:
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


@dataclass
class Rate:
    """One measured round (or the median of several): throughput and latency."""

    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_us: float = 0.0
    """CPU time per request of the server (user + system, all threads), or of the direct
    client; 0 where not measured."""
    db_cpu_us: float | None = None
    """CPU time per request of the Postgres processes (:func:`postgres_cpu_since`); ``None``
    where not measured or not visible."""
    errors: int = 0
    """Answers other than 200 plus socket errors (must be 0)."""
    steal: float | None = None
    """Percent of the machine's CPU time taken by the hypervisor during the round
    (:func:`steal_since`); ``None`` where not known."""


_LINE = re.compile(r"^EVENTODB (.*)$", re.MULTILINE)


def run_wrk(
    server: Server, token: str, script: str, script_args: list[str], connections: int, seconds: int
) -> Rate:
    """wrk with ``scripts/wrk/<script>`` against ``/rpc``; fails loudly on any non-200."""
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s"]
    command += ["--latency", "--timeout", "10s", "-H", f"Authorization: Bearer {token}"]
    command += ["-s", str(WRK_DIR / script), server.url + "/rpc", "--", *script_args]
    db_before = postgres_cpu()
    machine_before = machine_ticks()
    cpu = server.cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    cpu = server.cpu_seconds() - cpu
    db_cpu = postgres_cpu_since(db_before)
    steal = steal_since(machine_before)
    match = _LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    fields = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    socket_errors = sum(fields[k] for k in ("connect", "read", "write", "timeout"))
    errors = fields["non200"] + fields["status_errors"] + socket_errors
    if errors:
        print(f"  !! {script} {script_args} c={connections}: {fields}\n{done.stderr}")
    return Rate(
        rps=fields["requests"] / (fields["duration_us"] / 1e6),
        p50_ms=fields["p50_us"] / 1000,
        p95_ms=fields["p95_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        cpu_us=cpu * 1e6 / max(1, fields["requests"]),
        db_cpu_us=None if db_cpu is None else db_cpu * 1e6 / max(1, fields["requests"]),
        errors=errors,
        steal=steal,
    )


def machine_ticks() -> tuple[int, int] | None:
    """CPU ticks of the whole machine so far: (stolen, all), from ``/proc/stat`` (Linux).

    Steal is time a virtual machine's CPU was ready to run but its host ran something else.
    On the shared 2-core machines of docs/PERFORMANCE.md it came and went within minutes and
    moved every absolute figure with it: the machine line shows it, and so does every row of
    the benchmarks that report wrk rounds (:func:`steal_since`).
    """
    try:
        return parse_proc_stat(Path("/proc/stat").read_text())
    except OSError:
        return None


def parse_proc_stat(text: str) -> tuple[int, int] | None:
    """(stolen, all) ticks from the text of ``/proc/stat``; ``None`` without a steal field."""
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    fields = text.split("\n", 1)[0].split()
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]
    return ticks[7], sum(ticks)


def steal_since(before: tuple[int, int] | None) -> float | None:
    """Percent of the machine's CPU time stolen since ``before`` (:func:`machine_ticks`)."""
    after = machine_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100 * (after[0] - before[0]) / (after[1] - before[1])


PostgresCPU = dict[tuple[int, int], int]
"""CPU clock ticks so far of each Postgres process, keyed by (pid, start time)."""


def postgres_cpu() -> PostgresCPU:
    """User + system CPU ticks so far of every Postgres process on this machine (Linux).

    Backends, WAL writer, checkpointer and autovacuum alike: what the database costs, as long
    as nothing else uses this Postgres while a benchmark runs. Debian's and most builds name
    their processes ``postgres``, some packages ``postmaster``; a Postgres on another machine or
    in a container is not seen (the columns then show ``-``).
    """
    ticks: PostgresCPU = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, used, started = _proc_stat(entry)
        except OSError:
            continue  # ended meanwhile
        if name in ("postgres", "postmaster"):
            ticks[(int(entry.name), started)] = used
    return ticks


def _proc_stat(process: Path) -> tuple[str, int, int]:
    """A process's name, user + system CPU ticks so far (all threads) and start time (ticks
    after boot), from ``/proc/<pid>/stat``. Raises OSError once the process has ended."""
    head, _, rest = (process / "stat").read_text().rpartition(")")
    fields = rest.split()
    return head.partition("(")[2], int(fields[11]) + int(fields[12]), int(fields[19])


def postgres_cpu_since(before: PostgresCPU) -> float | None:
    """Seconds of CPU the Postgres processes used since ``before`` (:func:`postgres_cpu`).

    Counted over the processes alive now: a backend that ended meanwhile is left out whole
    (the benchmarks keep their connections open while they measure), rather than taking its
    whole lifetime off the total. ``None`` when no Postgres process is visible.
    """
    after = postgres_cpu()
    if not after:
        return None
    used = sum(ticks - before.get(key, 0) for key, ticks in after.items())
    return used / os.sysconf("SC_CLK_TCK")


def median(runs: list[Rate]) -> Rate:
    """Median of every column separately (runs are few; each column is reported on its own)."""
    return Rate(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p95_ms=statistics.median(r.p95_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
        db_cpu_us=_median_or_none([r.db_cpu_us for r in runs]),
        errors=sum(r.errors for r in runs),
        steal=_median_or_none([r.steal for r in runs]),
    )


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def machine_line() -> str:
    """Cores, load average and a speed figure, printed first by every benchmark.

    Machines of the same size differ: two 2-core VMs of one kind gave absolute figures 2.5-4x
    apart. The time of a fixed pure-Python loop (best of three) lets a reader scale the figures
    of docs/PERFORMANCE.md to another machine; ratios measured in one run do not need it.
    """
    best = float("inf")
    before = machine_ticks()
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    steal = steal_since(before)
    load = os.getloadavg()
    return (
        f"cores={os.cpu_count()} load={load[0]:.2f},{load[1]:.2f},{load[2]:.2f}"
        f" python-loop={best:.2f}s (10M additions, best of 3)"
        f" steal={'-' if steal is None else f'{steal:.0f}%'}"
    )
