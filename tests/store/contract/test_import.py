"""Bulk insert with given positions (the path of docs/API.md, "Import"), all or nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from eventodb.core import validation
from eventodb.core.errors import InvalidArgument, PositionExists
from eventodb.store.base import ImportGroup, ImportStopped, Message, Store

T0 = datetime(2025, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)


def _msg(gp: int, stream: str, pos: int, uid: int | None = None) -> Message:
    uid = gp if uid is None else uid
    return Message(
        f"00000000-0000-4000-8000-{uid:012d}",
        stream,
        "Imported",
        pos,
        gp,
        {"gp": gp},
        {"correlationStreamName": "x-1"} if gp % 2 else None,
        T0,
    )


async def test_import_preserves_positions_ids_and_times(store: Store, ns: str) -> None:
    batch = [_msg(10, "a-1", 0), _msg(20, "a-1", 1), _msg(15, "b-1", 0)]
    await store.import_messages(ns, batch)
    read = await store.get_category_messages(ns, "")
    assert [(m.global_position, m.stream_name, m.position) for m in read] == [
        (10, "a-1", 0),
        (15, "b-1", 0),
        (20, "a-1", 1),
    ]
    assert read[0] == batch[0]


async def test_the_first_and_last_representable_times_are_imported_as_they_are(
    store: Store, ns: str
) -> None:
    # asyncpg once turned them into -infinity and infinity, and the messages vanished from
    # every read (the database renders no time for those).
    times = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    ]
    batch = [replace(_msg(gp, "edge-1", gp - 1), time=time) for gp, time in enumerate(times, 1)]
    await store.import_messages(ns, batch)
    assert await store.get_stream_messages(ns, "edge-1") == batch
    assert await store.get_category_messages(ns, "edge") == batch
    body = await store.read_stream_json(ns, "edge-1")
    assert [m[6] for m in json.loads(body)] == [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00.000001Z",
    ]


async def test_writes_after_an_import_get_higher_global_positions(store: Store, ns: str) -> None:
    await store.write_message(ns, "a-1", "T", {})
    await store.import_messages(ns, [_msg(100, "a-1", 1)])
    await store.import_messages(ns, [_msg(50, "c-1", 0)])
    after = await store.write_message(ns, "a-1", "T", {})
    assert (after.position, after.global_position) == (2, 101)


@pytest.mark.parametrize(
    ("clash", "message"),
    [
        (_msg(1, "z-1", 0, uid=99), "global position already exists: 1"),
        (_msg(7, "z-1", 0, uid=1), "message id already exists"),
        (_msg(7, "a-1", 0, uid=98), "stream position already exists"),
    ],
)
async def test_a_colliding_record_aborts_the_whole_batch(
    store: Store, ns: str, clash: Message, message: str
) -> None:
    await store.import_messages(ns, [_msg(1, "a-1", 0)])
    with pytest.raises(PositionExists, match=message) as info:
        await store.import_messages(ns, [_msg(5, "y-1", 0), clash])
    assert info.value.index == 1
    assert [m.global_position for m in await store.get_category_messages(ns, "")] == [1]


def _group(*messages: Message) -> ImportGroup:
    return ImportGroup(messages, [validation.encode_payload(m.data, m.metadata) for m in messages])


async def test_groups_are_imported_in_order_up_to_the_first_that_fails(
    store: Store, ns: str
) -> None:
    """A backend may commit several groups in one transaction; what a failing group leaves
    behind is what separate transactions would: the groups before it, none of it or after."""
    await store.import_groups(ns, [_group(_msg(1, "a-1", 0), _msg(2, "a-1", 1))])
    groups = [
        _group(_msg(3, "b-1", 0), _msg(4, "b-1", 1)),
        _group(_msg(5, "c-1", 0)),
        _group(_msg(6, "d-1", 0), _msg(2, "e-1", 0, uid=97)),  # global position 2 exists
        _group(_msg(8, "f-1", 0)),
    ]
    with pytest.raises(ImportStopped) as info:
        await store.import_groups(ns, groups)
    assert info.value.committed == 2
    assert isinstance(info.value.error, PositionExists)
    assert info.value.error.index == 1  # within its group
    assert info.value.error.message == "global position already exists: 2"
    read = await store.get_category_messages(ns, "")
    assert [m.global_position for m in read] == [1, 2, 3, 4, 5]


async def test_a_group_colliding_with_an_earlier_group_of_the_same_call_stops_there(
    store: Store, ns: str
) -> None:
    groups = [_group(_msg(1, "a-1", 0)), _group(_msg(2, "a-1", 0))]  # a-1@0 twice
    with pytest.raises(ImportStopped) as info:
        await store.import_groups(ns, groups)
    assert info.value.committed == 1
    assert "stream position already exists: a-1@0" in info.value.error.message
    assert [m.global_position for m in await store.get_category_messages(ns, "")] == [1]


async def test_groups_into_a_missing_namespace_stop_before_the_first(store: Store) -> None:
    with pytest.raises(ImportStopped) as info:
        await store.import_groups("nowhere", [_group(_msg(1, "a-1", 0))])
    assert info.value.committed == 0


async def test_an_empty_import_is_a_no_op(store: Store, ns: str) -> None:
    await store.import_messages(ns, [])
    assert await store.get_category_messages(ns, "") == []


VALID = "00000000-0000-4000-8000-000000000002"
UPPER = "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Message(VALID, "b-1", "T", 0, 2, {"k": "a\x00"}, None, T0), "data must not contain NUL"),
        (Message(VALID, "", "T", 0, 2, {}, None, T0), "stream must be a non-empty string"),
        (Message(VALID, "b-1", "", 0, 2, {}, None, T0), "type must be a non-empty string"),
        (Message("not-a-uuid", "b-1", "T", 0, 2, {}, None, T0), "id must be a canonical"),
        (Message(UPPER, "b-1", "T", 0, 2, {}, None, T0), "id must be a canonical"),
    ],
)
async def test_an_import_that_breaks_a_write_rule_is_refused_whole(
    store: Store, ns: str, bad: Message, message: str
) -> None:
    from eventodb.core.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=f"record 1: .*{message}"):
        await store.import_messages(ns, [_msg(1, "a-1", 0), bad])
    assert await store.get_category_messages(ns, "") == []


MAX = validation.MAX_IMPORTED_POSITION


@pytest.mark.parametrize(
    ("pos", "gpos", "message"),
    [
        (0, MAX + 1, f"record 0: gpos must be at most {MAX}"),
        (MAX + 1, 5, f"record 0: pos must be at most {MAX}"),
        (0, (1 << 63) - 1, f"record 0: gpos must be at most {MAX}"),
        ((1 << 63) - 1, 5, f"record 0: pos must be at most {MAX}"),
        (-1, 5, "record 0: pos must not be negative"),
        (0, 0, "record 0: gpos must be positive"),
    ],
)
async def test_positions_that_would_leave_no_room_for_writes_are_refused(
    store: Store, ns: str, pos: int, gpos: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=f"^{message}$"):
        await store.import_messages(ns, [_msg(gpos, "a-1", pos, uid=1)])
    assert await store.get_category_messages(ns, "") == []


async def test_writes_continue_after_an_import_at_the_highest_positions(
    store: Store, ns: str
) -> None:
    await store.import_messages(ns, [_msg(MAX, "a-1", MAX, uid=1)])
    written = await store.write_message(ns, "a-1", "T", {})
    assert (written.position, written.global_position) == (MAX + 1, MAX + 1)
    other = await store.write_message(ns, "b-1", "T", {})
    assert (other.position, other.global_position) == (0, MAX + 2)
