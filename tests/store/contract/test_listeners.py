"""Pokes: every committed write is announced to listeners, and nothing else is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from eventodb.core.errors import VersionConflict
from eventodb.store.base import Gap, Message, Poke, Store


async def _settle() -> None:
    # Postgres may also deliver through LISTEN/NOTIFY; give it time to show any duplicate.
    await asyncio.sleep(0.3)


async def test_each_committed_write_pokes_listeners_once(store: Store, ns: str) -> None:
    seen: list[Poke | Gap] = []
    store.add_listener(seen.append)
    first = await store.write_message(ns, "acct-1", "T", {})
    second = await store.write_message(ns, "acct-2", "T", {})
    third = await store.write_message(ns, "acct-1", "T", {})
    await _settle()
    pokes = [p for p in seen if isinstance(p, Poke)]
    assert pokes == [
        Poke(ns, "acct-1", 0, first.global_position),
        Poke(ns, "acct-2", 0, second.global_position),
        Poke(ns, "acct-1", 1, third.global_position),
    ]


async def test_rejected_writes_retries_and_imports_do_not_poke(store: Store, ns: str) -> None:
    mid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    await store.write_message(ns, "acct-1", "T", {}, message_id=mid)
    seen: list[Poke | Gap] = []
    store.add_listener(seen.append)
    with pytest.raises(VersionConflict):
        await store.write_message(ns, "acct-1", "T", {}, expected_version=7)
    retry = await store.write_message(ns, "acct-1", "T", {}, message_id=mid)
    assert retry.duplicate
    imported = Message(
        "00000000-0000-4000-8000-000000000001", "imp-1", "T", 0, 50, {}, None, datetime.now(UTC)
    )
    await store.import_messages(ns, [imported])
    await _settle()
    assert [p for p in seen if isinstance(p, Poke)] == []


async def test_a_failing_listener_neither_fails_the_write_nor_starves_others(
    store: Store, ns: str
) -> None:
    def broken(_: Poke | Gap) -> None:
        raise RuntimeError("listener bug")

    seen: list[Poke | Gap] = []
    store.add_listener(broken)
    store.add_listener(seen.append)
    result = await store.write_message(ns, "acct-1", "T", {})
    await _settle()
    assert Poke(ns, "acct-1", 0, result.global_position) in seen


async def test_removed_listeners_hear_nothing(store: Store, ns: str) -> None:
    seen: list[Poke | Gap] = []
    remove = store.add_listener(seen.append)
    remove()
    await store.write_message(ns, "acct-1", "T", {})
    await _settle()
    assert seen == []
