"""Writes are serialised per stream: optimistic concurrency holds under load (docs/API.md)."""

from __future__ import annotations

import asyncio

from eventodb.core.errors import VersionConflict
from eventodb.store.base import Store, WriteResult
from tests.store.concurrent_writes import check_outcomes, expected_summary, run_workload


async def test_only_one_of_ten_writers_with_the_same_expected_version_wins(
    store: Store, ns: str
) -> None:
    await store.write_message(ns, "s-1", "T", {})

    async def attempt(i: int) -> WriteResult | VersionConflict:
        try:
            return await store.write_message(ns, "s-1", "T", {"i": i}, expected_version=0)
        except VersionConflict as exc:
            return exc

    outcomes = await asyncio.gather(*(attempt(i) for i in range(10)))
    wins = [o for o in outcomes if isinstance(o, WriteResult)]
    conflicts = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert len(wins) == 1
    assert len(conflicts) == 9
    assert wins[0].position == 1
    assert all((c.expected, c.actual) == (0, 1) for c in conflicts)
    assert len(await store.get_stream_messages(ns, "s-1")) == 2


async def test_hundred_unconditioned_concurrent_writes_get_gapless_positions(
    store: Store, ns: str
) -> None:
    results = await asyncio.gather(
        *(store.write_message(ns, "s-1", "T", {"i": i}) for i in range(100))
    )
    assert sorted(r.position for r in results) == list(range(100))
    assert len({r.global_position for r in results}) == 100
    stored = await store.get_stream_messages(ns, "s-1", batch_size=-1)
    assert [m.position for m in stored] == list(range(100))
    assert sorted(m.data["i"] for m in stored) == list(range(100))
    by_gp = {r.global_position: r.position for r in results}
    assert all(by_gp[m.global_position] == m.position for m in stored)


async def test_concurrent_writers_to_distinct_streams_all_land(store: Store, ns: str) -> None:
    async def writer(k: int) -> None:
        for i in range(20):
            await store.write_message(ns, f"w{k}-1", "T", {"i": i})

    await asyncio.gather(*(writer(k) for k in range(8)))
    for k in range(8):
        assert [m.data["i"] for m in await store.get_stream_messages(ns, f"w{k}-1")] == list(
            range(20)
        )
    assert len(await store.get_category_messages(ns, "", batch_size=-1)) == 160


async def test_many_concurrent_writers_get_consistent_outcomes(store: Store, ns: str) -> None:
    """Races on expected versions, plain appends and repeated ids, 64 writers at once: every
    acknowledged write is stored once where it was acknowledged, every refusal is right, and
    the accepted/rejected counts are the ones any correct store gives (on Postgres the writes
    go in group-commit batches; tests/store/postgres/test_group_commit.py compares with single
    writes)."""
    attempts = await run_workload(store, ns)
    stored = await store.get_category_messages(ns, "", batch_size=-1)
    assert check_outcomes(attempts, stored) == expected_summary()
