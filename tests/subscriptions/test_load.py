"""No poke is lost under concurrent load: 20 subscribers of every kind, 8 writers, 2,000 writes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from eventodb.core.hashing import group_member
from eventodb.core.streams import category
from tests.subscriptions.conftest import Tenant
from tests.support.sseclient import Collector, subscribe

pytestmark = pytest.mark.timeout(180)

WRITERS = 8
MESSAGES = 2000
STREAMS = [f"cat{c}-{c * 10 + i}" for c in range(5) for i in range(10)]

SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"stream": "cat0-0"},
    {"stream": "cat1-13"},
    {"stream": "cat2-25"},
    {"stream": "cat4-49"},
    {"category": "cat0"},
    {"category": "cat1"},
    {"category": "cat2"},
    {"category": "cat3"},
    {"category": "cat0", "consumer": 0, "size": 2},
    {"category": "cat0", "consumer": 1, "size": 2},
    {"category": "cat1", "consumer": 0, "size": 4},
    {"category": "cat1", "consumer": 1, "size": 4},
    {"category": "cat1", "consumer": 2, "size": 4},
    {"category": "cat1", "consumer": 3, "size": 4},
    {"all": "true"},
    {"all": "true"},
    {"all": "true"},
    {"all": "true"},
]
LATE_SUBSCRIPTIONS: list[dict[str, Any]] = [{"category": "cat4"}, {"all": "true"}]
"""Subscribed while the writers run, from the start: replay and live overlap under load."""


def wants(params: dict[str, Any], stream: str) -> bool:
    if "stream" in params:
        return bool(params["stream"] == stream)
    if params.get("all") == "true":
        return True
    if category(stream) != params["category"]:
        return False
    if "size" in params:
        return bool(group_member(stream, params["size"]) == params["consumer"])
    return True


async def test_every_subscriber_is_poked_for_every_message_under_concurrent_writes(
    tenant: Tenant,
) -> None:
    collectors = [
        Collector(await subscribe(tenant.port, p, token=tenant.token)) for p in SUBSCRIPTIONS
    ]
    written: list[tuple[str, int, int]] = []
    rng = random.Random(7)
    plan = [rng.choice(STREAMS) for _ in range(MESSAGES)]

    async def writer(index: int) -> None:
        for stream in plan[index::WRITERS]:
            position, gp = await tenant.write(stream, {"w": index})
            written.append((stream, position, gp))

    async def late_subscribers() -> None:
        await asyncio.sleep(0.3)
        for params in LATE_SUBSCRIPTIONS:
            collectors.append(Collector(await subscribe(tenant.port, params, token=tenant.token)))

    try:
        await asyncio.gather(late_subscribers(), *(writer(i) for i in range(WRITERS)))
        assert len(written) == MESSAGES
        params_of = SUBSCRIPTIONS + LATE_SUBSCRIPTIONS
        for params, collector in zip(params_of, collectors, strict=True):
            should = [w for w in written if wants(params, w[0])]
            assert should
            try:
                await collector.wait_for(lambda c, s=should: c.covers_all(s), 20)  # type: ignore[misc]
            except TimeoutError:
                missing = [w for w in should if not collector.covers(w[0], w[1])]
                raise AssertionError(f"{params} missed {len(missing)}: {missing[:5]}") from None
            stray = {p.stream for p in collector.pokes if not wants(params, p.stream)}
            assert not stray, f"{params} was poked for streams it does not watch: {stray}"
    finally:
        for collector in collectors:
            await collector.close()
