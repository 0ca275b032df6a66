"""One poke per message on contended streams: 8 writers on 4 hot streams, 0 pokes missing.

Concurrent writes to one stream commit in position order, but the writers learn of their
commits (and publish them) in any order: a poke for position 7 may reach the broker before the
poke for position 6. A subscriber that keeps up must still be poked for each of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.subscriptions.conftest import Tenant
from tests.support.sseclient import Collector, subscribe

pytestmark = pytest.mark.timeout(180)

WRITERS = 8
HOT_STREAMS = ["hot-1", "hot-2", "hot-3", "hot-4"]
EACH = 250
"""Writes per writer: 2,000 in all, 500 per stream."""

SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"all": "true"},
    {"category": "hot"},
    {"stream": "hot-1"},
    {"stream": "hot-4"},
]


async def test_every_message_of_contended_streams_gets_its_own_poke(tenant: Tenant) -> None:
    collectors = [
        Collector(await subscribe(tenant.port, p, token=tenant.token)) for p in SUBSCRIPTIONS
    ]
    written: list[tuple[str, int]] = []

    async def writer(index: int) -> None:
        for i in range(EACH):
            stream = HOT_STREAMS[(index + i) % len(HOT_STREAMS)]
            position, _ = await tenant.write(stream, {"w": index, "i": i})
            written.append((stream, position))

    try:
        await asyncio.gather(*(writer(i) for i in range(WRITERS)))
        assert len(written) == WRITERS * EACH
        for params, collector in zip(SUBSCRIPTIONS, collectors, strict=True):
            wanted = {w for w in written if "stream" not in params or w[0] == params["stream"]}

            def received(c: Collector) -> set[tuple[str, int]]:
                return {(p.stream, p.position) for p in c.pokes}

            try:
                await collector.wait_for(lambda c, w=wanted: w <= received(c), 20)  # type: ignore[misc]
            except TimeoutError:
                missing = sorted(wanted - received(collector))
                raise AssertionError(f"{params}: {len(missing)} missing: {missing[:10]}") from None
            counts = Counter((p.stream, p.position) for p in collector.pokes)
            duplicates = [key for key, n in counts.items() if n > 1]
            assert not duplicates, f"{params}: poked twice for {duplicates[:10]}"
            assert set(counts) == wanted
    finally:
        for collector in collectors:
            await collector.close()
