"""The plain-number counters, the log output and the socket binding behind the operability
features (the black-box side is tests/api/test_operability.py)."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import pytest

from eventodb.api.metrics import RequestMetrics
from eventodb.api.requestlog import RequestLog
from eventodb.api.server import StartupError, bind
from eventodb.core.stats import Histogram
from eventodb.logs import FLUSH_INTERVAL, LogOutput
from eventodb.store.base import OTHER_NAMESPACES, HealthCheck, StoreStats
from eventodb.store.sqlite import SQLiteStore


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    h = Histogram((1, 5, 10))
    for v in (0.5, 1, 3, 7, 100):
        h.observe(v)
    assert h.cumulative() == [(1, 2), (5, 3), (10, 4), (float("inf"), 5)]
    assert (h.count, h.sum) == (5, 111.5)


def test_store_stats_label_the_first_namespaces_and_sum_the_rest() -> None:
    stats = StoreStats(max_namespaces=2)
    for ns in ("a", "b", "c", "a", "d"):
        stats.record_write(ns)
    stats.record_read("x", 3)
    stats.record_read("y", 4)
    stats.record_read("z", 5)
    assert stats.writes == {"a": 2, "b": 1, OTHER_NAMESPACES: 2}
    assert stats.messages_read == {"x": 3, "y": 4, OTHER_NAMESPACES: 5}


def test_request_metrics_bound_their_labels_and_do_not_time_streams() -> None:
    metrics = RequestMetrics()
    metrics.record("/rpc", "stream.write", 200, 0.001)
    metrics.record("/../etc/passwd", None, 404, 0.001)
    metrics.record("/subscribe", None, 200, 30.0)
    metrics.record("/console/app.js", None, 200, 0.001)
    assert metrics.requests == {
        ("/rpc", "stream.write", 200): 1,
        ("other", "", 404): 1,
        ("/subscribe", "", 200): 1,
        ("/console", "", 200): 1,
    }
    assert set(metrics.durations) == {("/rpc", "stream.write"), ("other", ""), ("/console", "")}


class _SlowStore(SQLiteStore):
    """A store with one component whose check never answers."""

    def _health_checks(self) -> list[tuple[str, HealthCheck]]:
        async def hang() -> None:
            await asyncio.sleep(10)

        async def broken() -> None:
            raise OSError("disk on fire")

        return [("slow", hang), ("broken", broken)]


async def test_health_checks_are_cut_at_their_deadline_and_report_the_cause() -> None:
    store = _SlowStore(None)
    slow, broken = await store.check_health(within=0.05)
    assert (slow.name, slow.ok, slow.error) == (
        "slow",
        False,
        "TimeoutError: no answer within 0.05s",
    )
    assert slow.seconds < 1
    assert (broken.ok, broken.error) == (False, "OSError: disk on fire")


async def test_log_lines_come_out_in_order_batched_or_not() -> None:
    stream = io.StringIO()
    output = LogOutput(stream, "json")
    output.emit(1.0, "info", "eventodb.http", "request 1", {"status": 200}, batch=True)
    output.emit(2.0, "info", "eventodb.http", "request 2", {"status": 200}, batch=True)
    assert stream.getvalue() == ""  # batched
    output.emit(3.5, "warning", "eventodb", "something else")
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["msg"] for e in entries] == ["request 1", "request 2", "something else"]
    assert entries[2] == {
        "time": "1970-01-01T00:00:03.500Z",
        "level": "warning",
        "logger": "eventodb",
        "msg": "something else",
    }
    output.emit(4.0, "info", "eventodb.http", "request 3", batch=True)
    await asyncio.sleep(FLUSH_INTERVAL * 3)
    assert stream.getvalue().splitlines()[-1].endswith('"msg":"request 3"}')


def test_console_lines_quote_values_that_need_it() -> None:
    stream = io.StringIO()
    output = LogOutput(stream, "console")
    output.emit(0.0, "error", "eventodb.http", "POST /rpc 500", {"id": "a1", "error": "X: y z"})
    assert stream.getvalue() == (
        '1970-01-01T00:00:00.000Z ERROR eventodb.http: POST /rpc 500 id=a1 error="X: y z"\n'
    )


async def test_request_lines_on_the_console_quote_what_needs_it_every_time() -> None:
    stream = io.StringIO()
    output = LogOutput(stream, "console")
    request_log = RequestLog(output)
    for namespace in ("a b", "a b", "plain"):
        request_log("POST", "/rpc", 200, 1.5, "stream.write", namespace, "r=1", None)
    request_log("POST", "/rpc", 500, 2.0, "unknown", "a b", "r2", "X: y z")
    output.flush()
    messages = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert messages == [
        'POST /rpc 200 1.50ms rpc=stream.write ns="a b" id="r=1"',
        'POST /rpc 200 1.50ms rpc=stream.write ns="a b" id="r=1"',
        'POST /rpc 200 1.50ms rpc=stream.write ns=plain id="r=1"',
        'POST /rpc 500 2.00ms rpc=unknown ns="a b" id=r2 error="X: y z"',
    ]
    assert " ERROR eventodb.http: " in stream.getvalue().splitlines()[-1]


def test_binding_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(StartupError) as caught:
            bind("127.0.0.1", port)
    assert str(caught.value) == f"cannot listen on 127.0.0.1:{port}: address already in use"


def test_binding_every_interface_gives_one_port_for_every_family() -> None:
    sockets = bind("", 0)
    try:
        assert len({s.getsockname()[1] for s in sockets}) == 1
        assert {s.family for s in sockets} <= {socket.AF_INET, socket.AF_INET6}
    finally:
        for s in sockets:
            s.close()
