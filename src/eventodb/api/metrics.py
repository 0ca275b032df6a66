"""``GET /metrics``: the server's counters in Prometheus' text exposition format.

Recording is plain arithmetic on the hot path (:class:`RequestMetrics` here, ``store.stats`` in
the store, counters on the broker); :class:`Collector` reads them only when Prometheus scrapes.
The Prometheus client thus never runs per request and the store never imports it. Every label
has a bounded set of values: paths outside the known routes are ``other``, unknown RPC method
names are ``unknown``, and namespaces past ``--metrics-namespaces`` are summed under
``namespace="/other"``. The metric names are listed in docs/API.md, "Metrics".
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from eventodb.api.health import Report
from eventodb.api.rpc import Services
from eventodb.core.stats import LATENCY_BUCKETS, Histogram

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode("latin-1")

ROUTES = frozenset(
    {"/rpc", "/subscribe", "/import", "/health", "/ready", "/version", "/metrics", "/console"}
)
"""Paths counted under their own label (the console's files under ``/console``); anything else
counts as ``other``."""

UNTIMED = frozenset({"/subscribe"})
"""Paths whose requests are streams that last as long as the client wants: counted, not timed."""


class RequestMetrics:
    """HTTP requests by path, RPC method and status, with durations by path and RPC method."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], Histogram] = {}

    def record(self, path: str, rpc: str | None, status: int, seconds: float) -> None:
        """Count one finished request (``rpc`` is ``None`` outside ``/rpc``)."""
        if path not in ROUTES:
            path = "/console" if path.startswith("/console/") else "other"
        method = rpc or ""
        key = (path, method, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        if path in UNTIMED:
            return
        histogram = self.durations.get((path, method))
        if histogram is None:
            histogram = self.durations[path, method] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Cumulative buckets with their ``le`` label text (``+Inf`` last)."""
    return [
        ("+Inf" if bound == float("inf") else repr(float(bound)), count)
        for bound, count in histogram.cumulative()
    ]


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=_buckets(histogram), sum_value=histogram.sum
    )


class EventoDBCollector(Collector):
    """Builds every EventoDB metric family from the plain counters, at scrape time."""

    def __init__(self, services: Services, requests: RequestMetrics) -> None:
        self.services = services
        self.requests = requests
        self.readiness: Report | None = None
        """The readiness outcome to report with the next scrape (set by the endpoint)."""

    def collect(self) -> Iterator[Metric]:
        yield from self._http()
        yield from self._store()
        yield from self._subscriptions()
        report = self.readiness
        if report is not None:
            up = GaugeMetricFamily(
                "eventodb_component_up",
                "Whether a store component passed its readiness check (1) or not (0)",
                labels=["component"],
            )
            for c in report.components:
                up.add_metric([c.name], 1.0 if c.ok else 0.0)
            yield up

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "eventodb_http_requests",
            "HTTP requests by path, RPC method and status",
            labels=["path", "rpc", "status"],
        )
        for (path, rpc, status), count in list(self.requests.requests.items()):
            requests.add_metric([path, rpc, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "eventodb_http_request_duration_seconds",
            "Time to answer an HTTP request, by path and RPC method (SSE streams not timed)",
            labels=["path", "rpc"],
        )
        for (path, rpc), histogram in list(self.requests.durations.items()):
            durations.add_metric([path, rpc], _buckets(histogram), histogram.sum)
        yield durations
        yield GaugeMetricFamily(
            "eventodb_http_requests_in_flight",
            "HTTP requests being served, SSE streams included",
            value=self.services.in_flight,
        )

    def _store(self) -> Iterator[Metric]:
        stats = self.services.store.stats
        for name, doc, counts in (
            ("eventodb_messages_written", "Messages written, by namespace", stats.writes),
            (
                "eventodb_messages_read",
                "Messages returned by reads (subscription replays included), by namespace",
                stats.messages_read,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["namespace"])
            for namespace, count in list(counts.items()):
                family.add_metric([namespace], count)
            yield family
        yield CounterMetricFamily(
            "eventodb_version_conflicts",
            "Writes refused because the stream was not at the expected version",
            value=stats.version_conflicts,
        )
        yield CounterMetricFamily(
            "eventodb_store_errors",
            "Store operations that failed in the database (BACKEND_ERROR)",
            value=stats.errors,
        )
        yield CounterMetricFamily(
            "eventodb_messages_imported",
            "Messages loaded through /import",
            value=stats.messages_imported,
        )
        yield GaugeMetricFamily(
            "eventodb_imports_in_progress",
            "Imports running now",
            value=self.services.imports_running,
        )
        yield _histogram(
            "eventodb_write_batch_size",
            "Writes committed together in one transaction (group commit)",
            stats.write_batches,
        )
        yield _histogram(
            "eventodb_read_batch_size",
            "Reads answered together by one statement (Postgres)",
            stats.read_batches,
        )
        pool = self.services.store.pool_usage()
        if pool is not None:
            connections = GaugeMetricFamily(
                "eventodb_pool_connections",
                "Pooled database connections by state",
                labels=["state"],
            )
            connections.add_metric(["in_use"], pool.size - pool.idle)
            connections.add_metric(["idle"], pool.idle)
            yield connections
            yield GaugeMetricFamily(
                "eventodb_pool_max_connections",
                "Most connections the pool opens",
                value=pool.max,
            )
            yield _histogram(
                "eventodb_pool_wait_seconds",
                "Time spent waiting for a pooled connection",
                stats.pool_waits,
            )

    def _subscriptions(self) -> Iterator[Metric]:
        broker = self.services.broker
        yield GaugeMetricFamily(
            "eventodb_sse_subscribers", "Open SSE subscriptions", value=broker.subscriber_count()
        )
        yield CounterMetricFamily(
            "eventodb_sse_pokes_sent", "Pokes sent to SSE subscribers", value=broker.pokes_sent
        )
        yield CounterMetricFamily(
            "eventodb_sse_pokes_coalesced",
            "Pokes not sent one by one because a slow subscriber's queue overflowed"
            " (replaced by a re-read that sends the latest position per stream)",
            value=broker.pokes_coalesced,
        )


class Exposition:
    """The metrics registry of one app: EventoDB's families plus process, platform and GC."""

    def __init__(self, services: Services, requests: RequestMetrics) -> None:
        self.collector = EventoDBCollector(services, requests)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def render(self, readiness: Report | None) -> bytes:
        """The text exposition, with ``readiness`` as ``eventodb_component_up``."""
        self.collector.readiness = readiness
        return bytes(generate_latest(self.registry))
