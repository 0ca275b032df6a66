"""What a subscription delivers (docs/API.md, "What you get"), in every mode and on every backend:
replay of existing messages, then live pokes; no race between the two; paging past 1,000."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.subscriptions.conftest import Tenant
from tests.support.sseclient import Collector, subscribe

pytestmark = pytest.mark.timeout(90)

LIVE_DEADLINE = 0.5
"""Seconds within which a live poke must arrive after the write is acknowledged."""

Written = tuple[str, int, int]

MODES: dict[str, dict[str, Any]] = {
    "stream": {"stream": "acct-1"},
    "category": {"category": "acct"},
    "group-0": {"category": "acct", "consumer": 0, "size": 2},
    "group-1": {"category": "acct", "consumerGroupMember": 1, "consumerGroupSize": 2},
    "all": {"all": "true"},
}

STREAMS = ["acct-1", "acct-2", "acct-3", "acct-4", "acct", "other-1", "acct-1+retry"]


async def expected(tenant: Tenant, params: dict[str, Any], written: list[Written]) -> set[Written]:
    """The messages a subscription should be poked for, with ``category.get`` as the oracle
    for consumer groups (a member's pokes must agree with what it fetches)."""
    if "stream" in params:
        return {w for w in written if w[0] == params["stream"]}
    if params.get("all") == "true":
        return set(written)
    member = params.get("consumer", params.get("consumerGroupMember"))
    size = params.get("size", params.get("consumerGroupSize"))
    options: dict[str, Any] = {}
    if size is not None:
        options["consumerGroup"] = {"member": member, "size": size}
    rows = await tenant.category(params["category"], **options)
    in_category = {(r[1], r[3], r[4]) for r in rows}
    return {w for w in written if w in in_category}


def received(collector: Collector) -> set[Written]:
    return {(p.stream, p.position, p.global_position) for p in collector.pokes}


@pytest.mark.parametrize("mode", list(MODES))
async def test_replays_existing_messages_then_pokes_live_writes_quickly(
    tenant: Tenant, mode: str
) -> None:
    params = MODES[mode]
    written = [(s, *await tenant.write(s)) for s in STREAMS * 2]
    collector = Collector(await subscribe(tenant.port, params, token=tenant.token))
    try:
        replay = await expected(tenant, params, written)
        assert replay, "the scenario must give every mode something to replay"
        await collector.wait_for(lambda c: received(c) >= replay)
        assert received(collector) == replay
        assert [p.position for p in collector.pokes if p.stream == "acct-1"] == sorted(
            p.position for p in collector.pokes if p.stream == "acct-1"
        )

        loop = asyncio.get_running_loop()
        live: list[Written] = []
        for stream in STREAMS:
            position, gp = await tenant.write(stream)
            acknowledged = loop.time()
            live.append((stream, position, gp))
            wanted = await expected(tenant, params, [live[-1]])
            if not wanted:
                continue
            key = (stream, position)
            await collector.wait_for(lambda c, key=key: key in c.arrived, 5)  # type: ignore[misc]
            latency = collector.arrived[(stream, position)] - acknowledged
            assert latency < LIVE_DEADLINE, f"poke for {stream}@{position} took {latency:.3f}s"
        await asyncio.sleep(0.2)  # let any wrong extra poke arrive
        assert received(collector) == replay | await expected(tenant, params, live)
    finally:
        await collector.close()


async def test_subscription_starts_at_the_requested_position(tenant: Tenant) -> None:
    written = [(s, *await tenant.write(s)) for s in ["acct-1", "acct-1", "acct-2", "acct-1"]]
    from_gp = written[2][2]
    by_stream = Collector(
        await subscribe(tenant.port, {"stream": "acct-1", "position": 1}, token=tenant.token)
    )
    by_category = Collector(
        await subscribe(tenant.port, {"category": "acct", "position": from_gp}, token=tenant.token)
    )
    try:
        await by_stream.wait_for(lambda c: len(c.pokes) >= 2)
        await by_category.wait_for(lambda c: len(c.pokes) >= 2)
        await asyncio.sleep(0.2)
        assert received(by_stream) == {w for w in written if w[0] == "acct-1" and w[1] >= 1}
        assert received(by_category) == {w for w in written if w[2] >= from_gp}
    finally:
        await by_stream.close()
        await by_category.close()


@pytest.mark.parametrize("mode", list(MODES))
async def test_write_right_after_subscribing_is_never_missed(tenant: Tenant, mode: str) -> None:
    """No gap between replay and live: subscribe, write at once without waiting for ``ready``."""
    params = MODES[mode]
    rounds = 8
    for round_ in range(rounds):
        # A fresh start position each round, so only the new writes are expected.
        start = await tenant.write("warmup-1")
        params_now = dict(params)
        if "stream" in params:
            params_now["stream"] = f"acct-{round_ + 10}"
            params_now["position"] = 0
        else:
            params_now["position"] = start[1] + 1
        response_task = asyncio.ensure_future(
            subscribe(tenant.port, params_now, token=tenant.token, wait_ready=False)
        )
        streams = [params_now.get("stream") or f"acct-{round_ * 7 + i}" for i in range(4)]
        writes = asyncio.gather(*(tenant.write(s) for s in streams))
        response = await response_task
        collector = Collector(response)
        try:
            results = await writes
            wanted = await expected(
                tenant, params_now, [(s, *r) for s, r in zip(streams, results, strict=True)]
            )
            assert wanted or "group" in mode
            await collector.wait_for(lambda c, w=wanted: c.covers_all(w), 5)  # type: ignore[misc]
        finally:
            await collector.close()


async def test_replay_pages_through_thousands_of_messages(tenant: Tenant) -> None:
    total = 1500

    async def writer(n: int) -> list[Written]:
        return [("big-1", *await tenant.write("big-1", {"i": i})) for i in range(n)]

    batches = await asyncio.gather(*(writer(total // 5) for _ in range(5)))
    written = {w for batch in batches for w in batch}
    stream = Collector(await subscribe(tenant.port, {"stream": "big-1"}, token=tenant.token))
    everything = Collector(await subscribe(tenant.port, {"all": "true"}, token=tenant.token))
    try:
        await stream.wait_for(lambda c: len(c.pokes) >= total, 30)
        await everything.wait_for(lambda c: len(c.pokes) >= total, 30)
        assert received(stream) == written
        assert received(everything) == written
        assert [p.position for p in stream.pokes] == list(range(total))
    finally:
        await stream.close()
        await everything.close()


async def test_consumer_group_members_share_the_category_exactly_once(tenant: Tenant) -> None:
    size = 3
    members = [
        Collector(
            await subscribe(
                tenant.port,
                {"category": "order", "consumer": m, "size": size},
                token=tenant.token,
            )
        )
        for m in range(size)
    ]
    try:
        streams = [f"order-{i}" for i in range(30)] + ["order-7+retry", "order"]
        for s in streams:
            await tenant.write(s)
        with_id = [s for s in streams if "-" in s]

        def all_seen(_: Collector) -> bool:
            return sum(len(m.high_water()) for m in members) >= len(with_id)

        await members[0].wait_for(all_seen, 10)
        await asyncio.sleep(0.3)
        owners: dict[str, list[int]] = {}
        for index, member in enumerate(members):
            for s in member.high_water():
                owners.setdefault(s, []).append(index)
            fetched = await tenant.category("order", consumerGroup={"member": index, "size": size})
            assert received(member) == {(r[1], r[3], r[4]) for r in fetched}
        assert sorted(owners) == sorted(with_id)
        assert all(len(o) == 1 for o in owners.values()), owners
        assert owners["order-7+retry"] == owners["order-7"]
    finally:
        for member in members:
            await member.close()
