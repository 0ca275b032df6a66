"""SSE subscriptions: poke latency, memory per idle subscription, most concurrent subscriptions.

Not a test: it starts the real server (``python -m eventodb``) in a subprocess and prints
figures for docs/PERFORMANCE.md. Usage::

    .venv/bin/python scripts/bench_sse.py                       # test mode (SQLite in memory)
    .venv/bin/python scripts/bench_sse.py --db-url postgres://postgres@127.0.0.1/bench
    .venv/bin/python scripts/bench_sse.py --latency-only        # skip the 10,000-connection run

Latency is measured from the moment the write's RPC response has been read (write
acknowledged) to the moment the poke for it has been read by the subscriber, over real sockets
on this machine, both timed as their bytes are read (raw asyncio protocols, no HTTP library);
the server publishes a poke as soon as the write commits, so a poke can beat the RPC response
(a negative figure). With many subscribers the figure includes this client's
own time to read every socket (one Python process reads them all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchlib import ADMIN_TOKEN as TOKEN
from benchlib import free_port, machine_line


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class ServerProcess:
    def __init__(self, db_url: str | None, heartbeat: float) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="eventodb-bench-sse-"))
        args = [f"--port={self.port}", "--host=127.0.0.1", f"--token={TOKEN}"]
        args += [f"--sse-heartbeat={heartbeat}", "--log-level=warn"]
        args += ["--db-url", db_url] if db_url else ["--test-mode"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_")}
        self.log = (self.workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventodb", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            preexec_fn=_raise_fd_limit,  # the server needs one fd per subscription
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError((self.workdir / "server.log").read_text())

    def rss_kib(self) -> int:
        return _rss_kib(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


class Arrivals:
    """When each (stream, position) poke was read, by any subscriber; a waiter is woken once a
    poke has reached every subscriber (no polling: a polling loop would take the CPU the server
    needs, and uvloop runs a sub-millisecond sleep as a busy loop)."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, int], list[float]] = {}
        self._waiting: dict[tuple[str, int], tuple[int, asyncio.Future[None]]] = {}

    def record(self, key: tuple[str, int], when: float) -> None:
        times = self.times.setdefault(key, [])
        times.append(when)
        waiting = self._waiting.get(key)
        if waiting is not None and len(times) >= waiting[0] and not waiting[1].done():
            waiting[1].set_result(None)

    async def wait(self, key: tuple[str, int], count: int) -> None:
        """Until ``count`` subscribers have read the poke of ``key``."""
        if len(self.times.get(key, ())) >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = (count, future)
        try:
            await future
        finally:
            del self._waiting[key]


class Subscriber(asyncio.Protocol):
    """A raw SSE reader: records when each (stream, position) poke arrived."""

    def __init__(self, arrivals: Arrivals | None) -> None:
        self.arrivals = arrivals
        self.ready = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.pokes = 0
        self.closed = False
        self.transport: asyncio.BaseTransport | None = None

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.ready.done():
            self.buffer += data
            if b": ready" in self.buffer:
                self.ready.set_result(None)
                self.buffer = self.buffer[self.buffer.index(b": ready") :]
            elif self.buffer.startswith(b"HTTP/1.1 ") and not self.buffer.startswith(
                b"HTTP/1.1 200"
            ):
                self.ready.set_exception(RuntimeError(self.buffer[:200].decode("latin-1")))
            return
        self.buffer += data
        # Chunk-size lines sit between events; pokes are located by their "data: " lines.
        while True:
            start = self.buffer.find(b"data: {")
            if start < 0:
                self.buffer = self.buffer[-8:]
                return
            end = self.buffer.find(b"\n", start)
            if end < 0:
                self.buffer = self.buffer[start:]
                return
            poke = orjson.loads(self.buffer[start + 6 : end])
            self.buffer = self.buffer[end + 1 :]
            self.pokes += 1
            if self.arrivals is not None:
                self.arrivals.record((poke["stream"], poke["position"]), now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before ready"))


class Writer(asyncio.Protocol):
    """A raw keep-alive HTTP/1.1 client for ``POST /rpc``: one request at a time, answered
    with the time its last byte was read (in ``data_received``, like a poke's arrival, so that
    both figures are taken the same way rather than after an HTTP library's own processing)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.answer: asyncio.Future[tuple[float, bytes]] | None = None
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.answer is None:
            return
        head = self.buffer[:end].lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        answer, self.answer = self.answer, None
        if not head.startswith(b"http/1.1 200"):
            answer.set_exception(RuntimeError(head.decode("latin-1") + body.decode()))
        else:
            answer.set_result((now, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError(f"the server closed the connection: {exc}"))

    async def rpc(self, *request: Any) -> tuple[float, Any]:
        """(time the answer was read, decoded result)."""
        assert self.transport is not None
        body = orjson.dumps(list(request))
        answer = self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        async with asyncio.timeout(30):
            answered, raw = await answer
        return answered, orjson.loads(raw)


async def open_subscriptions(
    port: int,
    query: str,
    count: int,
    arrivals: Arrivals | None,
    batch: int = 200,
) -> list[Subscriber]:
    loop = asyncio.get_running_loop()
    request = (f"GET /subscribe?{query}&token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
    subs: list[Subscriber] = []

    async def one() -> Subscriber:
        transport, sub = await loop.create_connection(
            lambda: Subscriber(arrivals), "127.0.0.1", port
        )
        sub.transport = transport
        transport.write(request)
        await asyncio.wait_for(sub.ready, 30)
        return sub

    for start in range(0, count, batch):
        subs += await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    return subs


def close_all(subs: list[Subscriber]) -> None:
    for sub in subs:
        if sub.transport is not None:
            sub.transport.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(
    server: ServerProcess, subscribers: int, writes: int, writer: ServerProcess | None = None
) -> dict[str, Any]:
    """Subscribers on ``server``; writes through ``writer`` (another process) when given."""
    arrivals = Arrivals()
    stream = f"lat{subscribers}x{os.getpid()}{time.monotonic_ns() % 10_000}-1"
    subs = await open_subscriptions(server.port, f"stream={stream}", subscribers, arrivals)
    samples: list[float] = []
    write_port = (writer or server).port
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(Writer, "127.0.0.1", write_port)
    try:
        for _ in range(20):  # warm up the connection and the code paths
            await client.rpc("stream.write", f"warm-{subscribers}", {"type": "T", "data": {}})
        acks: dict[int, float] = {}
        sent_at: dict[int, float] = {}
        for _ in range(writes):
            sent = time.perf_counter()
            acked, result = await client.rpc("stream.write", stream, {"type": "T", "data": {}})
            position = result["position"]
            acks[position] = acked
            sent_at[position] = sent
            # Let every subscriber read this poke before the next write.
            # (A poke that never comes shows as a missing one in "pokes received".)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await arrivals.wait((stream, position), subscribers)
            await asyncio.sleep(0.005)
    finally:
        transport.close()
    from_sent: list[float] = []
    for position, acked in acks.items():
        got = arrivals.times.get((stream, position), [])
        samples += [(t - acked) * 1000 for t in got]
        from_sent += [(t - sent_at[position]) * 1000 for t in got]
    expected = writes * subscribers
    close_all(subs)
    await asyncio.sleep(0.5)
    return {
        "subscribers": subscribers,
        "writes": writes,
        "pokes": f"{len(samples)}/{expected}",
        "p50_ms": round(_pct(samples, 0.50), 3),
        "p95_ms": round(_pct(samples, 0.95), 3),
        "p99_ms": round(_pct(samples, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "from_request_p50_ms": round(_pct(from_sent, 0.50), 3),
        "from_request_p95_ms": round(_pct(from_sent, 0.95), 3),
        "from_request_p99_ms": round(_pct(from_sent, 0.99), 3),
    }


async def capacity(server: ServerProcess, target: int, step: int) -> dict[str, Any]:
    base = server.rss_kib()
    subs: list[Subscriber] = []
    reached = 0
    error = ""
    rss_at: dict[int, int] = {}
    started = time.perf_counter()
    try:
        while reached < target:
            subs += await open_subscriptions(
                server.port, "all=true", min(step, target - reached), None
            )
            reached = len(subs)
            await asyncio.sleep(0.2)
            rss_at[reached] = server.rss_kib()
            print(f"  {reached} idle subscriptions, server RSS {rss_at[reached] / 1024:.1f} MiB")
    except (OSError, RuntimeError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    open_seconds = time.perf_counter() - started
    # Are they all alive? One write pokes every one of them.
    before = sum(s.pokes for s in subs)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        t0 = time.perf_counter()
        await client.post("/rpc", json=["stream.write", "cap-1", {"type": "T", "data": {}}])
        while sum(s.pokes for s in subs) - before < len(subs):
            if time.perf_counter() - t0 > 30:
                break
            await asyncio.sleep(0.01)
        fanout = time.perf_counter() - t0
    poked = sum(s.pokes for s in subs) - before
    peak = max(rss_at.values()) if rss_at else base
    close_all(subs)
    return {
        "held": reached,
        "poked_by_one_write": poked,
        "fanout_seconds": round(fanout, 3),
        "open_seconds": round(open_seconds, 1),
        "server_rss_base_mib": round(base / 1024, 1),
        "server_rss_peak_mib": round(peak / 1024, 1),
        "kib_per_subscription": round((peak - base) / max(reached, 1), 2),
        "error": error,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--capacity", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument(
        "--subscribers", default="1,100,1000", help="comma list of subscription counts"
    )
    parser.add_argument(
        "--cross-process",
        action="store_true",
        help="(Postgres) write through a second server process: pokes travel by LISTEN/NOTIFY",
    )
    options = parser.parse_args()
    _raise_fd_limit()
    print(machine_line())
    print(
        f"fd limit: {resource.getrlimit(resource.RLIMIT_NOFILE)}; backend: "
        f"{options.db_url or 'test mode (SQLite in memory)'}"
    )

    server = ServerProcess(options.db_url, heartbeat=15.0)
    writer = ServerProcess(options.db_url, heartbeat=15.0) if options.cross_process else None
    try:
        how = " (writes through a second server process)" if writer else ""
        print(f"poke latency (write acknowledged -> poke read by the subscriber){how}:")
        for subscribers in (int(n) for n in options.subscribers.split(",")):
            writes = 500 if subscribers < 100 else 200 if subscribers < 1000 else 100
            row = await latency(server, subscribers, writes, writer)
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    finally:
        server.stop()
        if writer is not None:
            writer.stop()
    if options.latency_only:
        return
    server = ServerProcess(options.db_url, heartbeat=15.0)
    try:
        print(f"idle subscriptions (all=true), up to {options.capacity}:")
        row = await capacity(server, options.capacity, options.step)
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    finally:
        server.stop()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
