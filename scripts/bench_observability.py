"""CPU cost per request of request ids, metrics and request log lines (not a test).

Runs the ASGI app in-process over an in-memory store and drives it with ready-made ASGI
messages (no sockets, no HTTP parsing), so the figures are the app's own CPU time per request:

* per piece: the request id, the per-request record, ``RequestMetrics.record``, and one request
  line in each log format (written to ``/dev/null``);
* end to end: ``POST /rpc ["sys.version"]`` and ``GET /health`` with metrics and request lines
  off, then on (console and JSON); the difference is what operability adds to a request.

Usage::

    .venv/bin/python scripts/bench_observability.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import timeit
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

from eventodb.api import app as app_module
from eventodb.api.app import EventoDBApp, create_app
from eventodb.api.metrics import RequestMetrics
from eventodb.api.requestlog import RequestLog
from eventodb.core import tokens
from eventodb.logs import LogOutput
from eventodb.store.sqlite import SQLiteStore

TOKEN = "ns_ZGVmYXVsdA_" + "0" * 64


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": headers,
    }


async def _drive(app: EventoDBApp, scope: dict[str, Any], body: bytes, count: int) -> float:
    """CPU microseconds per request over ``count`` requests, writing out their log lines.

    The requests never suspend, so the batched log lines pile up and are written by the
    ``flush`` at the end (one write, as a batch in the server), which is timed too.
    """
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: Any) -> None:
        return None

    for _ in range(200):  # warm up caches and the auth token cache
        await app(scope, receive, send)
    app.request_log.flush()
    started = time.process_time()
    for _ in range(count):
        await app(scope, receive, send)
    app.request_log.flush()
    return (time.process_time() - started) / count * 1e6


async def _discard(message: MutableMapping[str, Any]) -> None:
    """A ``send`` that drops what it is given."""


def _pieces(log_stream: Any) -> dict[str, float]:
    scope = _scope("POST", "/rpc", [(b"authorization", f"Bearer {TOKEN}".encode())])
    metrics = RequestMetrics()
    console = RequestLog(LogOutput(log_stream, "console"))
    json_log = RequestLog(LogOutput(log_stream, "json"))
    cases: dict[str, Callable[[], object]] = {
        "request id": lambda: app_module._request_id(scope),
        "request record": lambda: app_module._Request(_discard, b"abcd1234-1"),
        "metrics.record": lambda: metrics.record("/rpc", "stream.write", 200, 0.0012),
        "request line (console)": lambda: console(
            "POST", "/rpc", 200, 1.2, "stream.write", "default", "abcd1234-1", None
        ),
        "request line (json)": lambda: json_log(
            "POST", "/rpc", 200, 1.2, "stream.write", "default", "abcd1234-1", None
        ),
    }
    number = 50_000
    results = {}
    for name, fn in cases.items():
        results[name] = min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6
    return results


async def main(count: int, devnull: TextIO) -> None:
    print("per piece (us per call, best of 3):")
    for name, micros in _pieces(devnull).items():
        print(f"  {name:<24} {micros:6.2f}")

    store = SQLiteStore(None)
    await store.open()
    await store.create_namespace("default", tokens.hash_token(TOKEN))
    auth = [(b"authorization", f"Bearer {TOKEN}".encode())]
    rpc = _scope("POST", "/rpc", auth)
    health = _scope("GET", "/health", [])
    configurations = [
        ("off (no metrics, no request lines)", False, RequestLog(None, enabled=False)),
        ("on, console lines", True, RequestLog(LogOutput(devnull))),
        ("on, json lines", True, RequestLog(LogOutput(devnull, "json"))),
    ]
    print(f"\nend to end (us CPU per request, {count} requests, in-process ASGI):")
    print(f"  {'configuration':<36} {'sys.version':>11} {'/health':>8}")
    baseline: tuple[float, float] | None = None
    for name, metrics, request_log in configurations:
        app = create_app(store, metrics=metrics, request_log=request_log)
        rpc_us = await _drive(app, rpc, b'["sys.version"]', count)
        health_us = await _drive(app, health, b"", count)
        extra = ""
        if baseline is None:
            baseline = (rpc_us, health_us)
        else:
            extra = f"   (+{rpc_us - baseline[0]:.1f} / +{health_us - baseline[1]:.1f})"
        print(f"  {name:<36} {rpc_us:11.1f} {health_us:8.1f}{extra}")
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    with open(os.devnull, "w") as sink:
        asyncio.run(main(parser.parse_args().requests, sink))
