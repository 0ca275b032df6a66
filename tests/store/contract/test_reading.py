"""Reading streams and categories, last message, version, listings (docs/API.md, "Methods")."""

from __future__ import annotations

from typing import Any

import pytest

from eventodb.core.errors import InvalidArgument
from eventodb.core.hashing import group_member
from eventodb.store.base import ConsumerGroup, Store


async def _write_all(store: Store, ns: str, streams: list[str], **extra: Any) -> None:
    for stream in streams:
        await store.write_message(ns, stream, "T", {"s": stream}, **extra)


# -- streams -----------------------------------------------------------------------------------


async def test_stream_read_starts_at_position_and_respects_the_batch(store: Store, ns: str) -> None:
    await _write_all(store, ns, ["s-1"] * 5 + ["s-2"])
    read = await store.get_stream_messages(ns, "s-1", position=2, batch_size=2)
    assert [m.position for m in read] == [2, 3]
    assert [m.position for m in await store.get_stream_messages(ns, "s-1", position=-5)] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert await store.get_stream_messages(ns, "s-1", position=5) == []
    assert await store.get_stream_messages(ns, "nope-1") == []


async def test_global_position_overrides_position(store: Store, ns: str) -> None:
    await _write_all(store, ns, ["s-1", "s-2", "s-1", "s-2", "s-1"])
    read = await store.get_stream_messages(ns, "s-1", position=0, global_position=3)
    assert [(m.position, m.global_position) for m in read] == [(1, 3), (2, 5)]


@pytest.mark.parametrize(("batch", "expected"), [(-1, 5), (0, 0), (1, 1), (3, 3), (10_000, 5)])
async def test_batch_size_limits_stream_reads(
    store: Store, ns: str, batch: int, expected: int
) -> None:
    await _write_all(store, ns, ["s-1"] * 5)
    assert len(await store.get_stream_messages(ns, "s-1", batch_size=batch)) == expected
    with_gp = await store.get_stream_messages(ns, "s-1", global_position=1, batch_size=batch)
    assert len(with_gp) == expected


@pytest.mark.parametrize(
    ("batch", "message"),
    [(10_001, "batchSize must be <= 10000 or -1"), (-2, "batchSize"), (-(2**40), "batchSize")],
)
async def test_out_of_range_batch_sizes_are_refused(
    store: Store, ns: str, batch: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await store.get_stream_messages(ns, "s-1", batch_size=batch)
    with pytest.raises(InvalidArgument, match=message):
        await store.get_category_messages(ns, "s", batch_size=batch)


async def test_default_batch_is_one_thousand(store: Store, ns: str) -> None:
    from eventodb.core import tokens

    await store.create_namespace("bulk", tokens.hash_token(tokens.generate("bulk")))
    for _ in range(1001):
        await store.write_message("bulk", "s-1", "T", {})
    assert len(await store.get_stream_messages("bulk", "s-1")) == 1000
    assert len(await store.get_category_messages("bulk", "s")) == 1000
    assert len(await store.get_stream_messages("bulk", "s-1", batch_size=-1)) == 1001


# -- categories --------------------------------------------------------------------------------


async def test_category_read_selects_by_category_in_global_order(store: Store, ns: str) -> None:
    await _write_all(store, ns, ["acct-1", "other-1", "acct-2", "acct", "acct-1+x", "accts-1"])
    read = await store.get_category_messages(ns, "acct")
    assert [(m.stream_name, m.global_position) for m in read] == [
        ("acct-1", 1),
        ("acct-2", 3),
        ("acct", 4),
        ("acct-1+x", 5),
    ]
    assert [
        m.global_position for m in await store.get_category_messages(ns, "acct", position=4)
    ] == [
        4,
        5,
    ]
    assert len(await store.get_category_messages(ns, "")) == 6
    assert await store.get_category_messages(ns, "acct-1") == []
    assert await store.get_category_messages(ns, "ACCT") == []


async def test_category_read_batches(store: Store, ns: str) -> None:
    await _write_all(store, ns, [f"c-{i}" for i in range(5)])
    assert [
        m.global_position for m in await store.get_category_messages(ns, "c", batch_size=2)
    ] == [
        1,
        2,
    ]
    assert await store.get_category_messages(ns, "c", batch_size=0) == []
    assert len(await store.get_category_messages(ns, "c", batch_size=-1)) == 5
    assert len(await store.get_category_messages(ns, "c", position=-3)) == 5


async def test_empty_category_contains_streams_with_empty_category(store: Store, ns: str) -> None:
    await _write_all(store, ns, ["-x", "a-1"])
    assert len(await store.get_category_messages(ns, "")) == 2


async def test_correlation_matches_the_category_of_the_correlation_stream(
    store: Store, ns: str
) -> None:
    metas: list[dict[str, Any] | None] = [
        {"correlationStreamName": "order-1"},
        {"correlationStreamName": "order"},
        {"correlationStreamName": "orders-1"},
        {"correlationStreamName": "Order-1"},
        {"other": "order-1"},
        None,
        {"correlationStreamName": "order-2+x"},
    ]
    for i, meta in enumerate(metas):
        await store.write_message(ns, f"acct-{i}", "T", {}, meta)
    read = await store.get_category_messages(ns, "acct", correlation="order")
    assert [m.stream_name for m in read] == ["acct-0", "acct-1", "acct-6"]
    assert await store.get_category_messages(ns, "acct", correlation="order-1") == []
    assert len(await store.get_category_messages(ns, "acct", correlation="")) == 7
    assert len(await store.get_category_messages(ns, "", correlation="Order")) == 1


async def test_batch_limit_applies_after_the_filters(store: Store, ns: str) -> None:
    for i in range(6):
        meta = {"correlationStreamName": "x-1"} if i % 2 else None
        await store.write_message(ns, f"a-{i}", "T", {}, meta)
    read = await store.get_category_messages(ns, "a", correlation="x", batch_size=2)
    assert [m.stream_name for m in read] == ["a-1", "a-3"]


async def test_consumer_group_members_partition_the_category(store: Store, ns: str) -> None:
    streams = [f"acct-{i}" for i in range(12)] + ["acct-3+retry", "acct", "acct-"]
    await _write_all(store, ns, streams)
    for size in (1, 2, 3, 5):
        seen: list[int] = []
        for member in range(size):
            read = await store.get_category_messages(
                ns, "acct", consumer_group=ConsumerGroup(member, size)
            )
            for m in read:
                assert group_member(m.stream_name, size) == member
            seen.extend(m.global_position for m in read)
        # every message whose stream has an id, exactly once; "acct" (no id) in no member
        assert sorted(seen) == [i + 1 for i, s in enumerate(streams) if s != "acct"]


async def test_consumer_group_vectors_from_the_spec(store: Store, ns: str) -> None:
    await _write_all(store, ns, ["test-1", "test-2", "test-3", "test-4"])
    zero_of_two = await store.get_category_messages(ns, "test", consumer_group=ConsumerGroup(0, 2))
    assert [m.stream_name for m in zero_of_two] == ["test-1", "test-3"]
    three_of_four = await store.get_category_messages(
        ns, "test", consumer_group=ConsumerGroup(3, 4)
    )
    assert [m.stream_name for m in three_of_four] == ["test-4"]


async def test_compound_ids_go_to_the_member_of_their_cardinal_id(store: Store, ns: str) -> None:
    await _write_all(store, ns, ["account-123", "account-123+retry"])
    member = await store.get_category_messages(ns, "account", consumer_group=ConsumerGroup(3, 4))
    assert [m.stream_name for m in member] == ["account-123", "account-123+retry"]


@pytest.mark.parametrize(
    ("member", "size", "message"),
    [
        (-1, 2, "member must be non-negative"),
        (0, 0, "size must be positive"),
        (0, -1, "size must be positive"),
        (2, 2, "member must be < size"),
    ],
)
async def test_invalid_consumer_groups_are_refused(
    store: Store, ns: str, member: int, size: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await store.get_category_messages(ns, "c", consumer_group=ConsumerGroup(member, size))


async def test_consumer_group_and_correlation_combine(store: Store, ns: str) -> None:
    for i in range(8):
        await store.write_message(ns, f"a-{i}", "T", {}, {"correlationStreamName": "x-1"})
        await store.write_message(ns, f"a-{i}", "T", {})
    group = ConsumerGroup(1, 2)
    read = await store.get_category_messages(ns, "a", correlation="x", consumer_group=group)
    expected = [f"a-{i}" for i in range(8) if group_member(f"a-{i}", 2) == 1]
    assert [m.stream_name for m in read] == expected
    assert all(m.metadata for m in read)


# -- last message and version ------------------------------------------------------------------


async def test_last_message_and_version(store: Store, ns: str) -> None:
    assert await store.get_last_stream_message(ns, "s-1") is None
    assert await store.stream_version(ns, "s-1") is None
    await store.write_message(ns, "s-1", "A", {"n": 0})
    await store.write_message(ns, "s-1", "B", {"n": 1})
    await store.write_message(ns, "s-1", "A", {"n": 2})
    await store.write_message(ns, "s-1", "B", {"n": 3})
    last = await store.get_last_stream_message(ns, "s-1")
    assert last is not None
    assert (last.position, last.data) == (3, {"n": 3})
    last_a = await store.get_last_stream_message(ns, "s-1", "A")
    assert last_a is not None
    assert last_a.position == 2
    assert await store.get_last_stream_message(ns, "s-1", "C") is None
    empty_type = await store.get_last_stream_message(ns, "s-1", "")
    assert empty_type is not None
    assert empty_type.position == 3
    assert await store.stream_version(ns, "s-1") == 3


# -- listings ----------------------------------------------------------------------------------


async def test_list_streams_sorts_by_code_point_and_pages(store: Store, ns: str) -> None:
    names = ["b-1", "a-2", "a-1", "B-1", "a_1", "é-1", "a-1"]
    await _write_all(store, ns, names)
    listed = await store.list_streams(ns)
    assert [s.stream for s in listed] == ["B-1", "a-1", "a-2", "a_1", "b-1", "é-1"]
    assert listed[1].version == 1
    last = await store.get_last_stream_message(ns, "a-1")
    assert last is not None
    assert listed[1].last_activity == last.time
    page1 = await store.list_streams(ns, limit=2)
    page2 = await store.list_streams(ns, cursor=page1[-1].stream, limit=2)
    assert [s.stream for s in page1 + page2] == ["B-1", "a-1", "a-2", "a_1"]


async def test_list_streams_prefix_is_literal(store: Store, ns: str) -> None:
    await _write_all(store, ns, ["a%-1", "ab-1", "a_-1", "aX-1", "A%-1"])
    assert [s.stream for s in await store.list_streams(ns, prefix="a%")] == ["a%-1"]
    assert [s.stream for s in await store.list_streams(ns, prefix="a_")] == ["a_-1"]
    assert [s.stream for s in await store.list_streams(ns, prefix="a")] == [
        "a%-1",
        "aX-1",
        "a_-1",
        "ab-1",
    ]
    assert await store.list_streams(ns, prefix="zzz") == []


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_list_streams_limit_must_be_1_to_1000(store: Store, ns: str, limit: int) -> None:
    with pytest.raises(InvalidArgument, match="limit must be between 1 and 1000"):
        await store.list_streams(ns, limit=limit)


async def test_list_categories_counts_streams_and_messages(store: Store, ns: str) -> None:
    assert await store.list_categories(ns) == []
    await _write_all(store, ns, ["account", "account-1", "account-1", "account-2", "b-1", "-z"])
    listed = [
        (c.category, c.stream_count, c.message_count) for c in await store.list_categories(ns)
    ]
    assert listed == [("", 1, 1), ("account", 3, 4), ("b", 1, 1)]
