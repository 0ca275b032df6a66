"""Plain-number histograms for monitoring, cheap to update on the hot path.

The store and the HTTP layer count things as plain numbers; the metrics endpoint
(:mod:`eventodb.api.metrics`) turns them into Prometheus histograms when it is scraped. Keeping
the Prometheus client out of the recording side keeps the store free of it and makes a record
one bisect and two additions.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds in seconds for durations from sub-millisecond reads to slow imports."""

SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Upper bounds for counts (writes committed together)."""


class Histogram:
    """Observations counted per bucket, with their sum; safe to update from any thread.

    Args:
        bounds: increasing upper bounds; values above the last one land in ``+Inf``.
    """

    __slots__ = ("_counts", "_lock", "bounds", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` pairs ending with ``(inf, total count)``,
        as Prometheus exposes buckets."""
        with self._lock:
            counts = list(self._counts)
        result: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            result.append((bound, running))
        return result

    @property
    def count(self) -> int:
        return sum(self._counts)
