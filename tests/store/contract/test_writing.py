"""Writing (docs/API.md, "stream.write" and "Limits")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventodb.core.errors import DuplicateMessageId, InvalidArgument, VersionConflict
from eventodb.store.base import Store


async def test_positions_are_gapless_per_stream_and_global_positions_increase(
    store: Store, ns: str
) -> None:
    results = [await store.write_message(ns, s, "T", {}) for s in ["a-1", "a-2", "a-1", "b", "a-1"]]
    assert [r.position for r in results] == [0, 0, 1, 0, 2]
    assert [r.global_position for r in results] == [1, 2, 3, 4, 5]
    assert not any(r.duplicate for r in results)


async def test_message_round_trips_with_every_field(store: Store, ns: str) -> None:
    before = datetime.now(UTC)
    data: dict[str, Any] = {"amount": 10, "nested": {"list": [1, 2.5, None, True, "x"]}, "u": "ünï"}
    meta = {"correlationStreamName": "other-1", "n": 1}
    written = await store.write_message(ns, "account-1", "Deposited", data, meta)
    [msg] = await store.get_stream_messages(ns, "account-1")
    after = datetime.now(UTC)
    assert (msg.stream_name, msg.type, msg.position, msg.global_position) == (
        "account-1",
        "Deposited",
        written.position,
        written.global_position,
    )
    assert msg.data == data
    assert msg.metadata == meta
    assert msg.time.tzinfo is not None
    assert msg.time.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= msg.time <= after + timedelta(seconds=1)
    assert len(msg.id) == 36
    assert msg.id == msg.id.lower()


async def test_time_has_microsecond_precision(store: Store, ns: str) -> None:
    for _ in range(5):
        await store.write_message(ns, "s-1", "T", {})
    times = [m.time for m in await store.get_stream_messages(ns, "s-1")]
    assert any(t.microsecond != 0 for t in times)
    assert times == sorted(times)


async def test_absent_and_empty_metadata_stay_distinct(store: Store, ns: str) -> None:
    await store.write_message(ns, "s-1", "T", {})
    await store.write_message(ns, "s-1", "T", {}, {})
    assert [m.metadata for m in await store.get_stream_messages(ns, "s-1")] == [None, {}]


async def test_payload_numbers_are_preserved_exactly(store: Store, ns: str) -> None:
    data = {"big": 2**70, "neg": -(2**65) + 1, "max": 2**63 - 1, "f": 0.1, "e": 1e300}
    await store.write_message(ns, "s-1", "T", data)
    assert (await store.get_stream_messages(ns, "s-1"))[0].data == data


@pytest.mark.parametrize("name", ["account", "Account-1", "ACCOUNT-1", "a b-ç", "x" * 1024])
async def test_any_stream_name_is_stored_exactly(store: Store, ns: str, name: str) -> None:
    await store.write_message(ns, name, "Type With Spaces", {"n": name})
    [msg] = await store.get_stream_messages(ns, name)
    assert msg.stream_name == name
    assert msg.type == "Type With Spaces"


async def test_expected_version_minus_one_means_new_stream(store: Store, ns: str) -> None:
    first = await store.write_message(ns, "s-1", "T", {}, expected_version=-1)
    assert first.position == 0
    with pytest.raises(VersionConflict) as info:
        await store.write_message(ns, "s-1", "T", {}, expected_version=-1)
    assert (info.value.expected, info.value.actual) == (-1, 0)
    assert info.value.details == {"expected": -1, "actual": 0}
    assert info.value.message == "Expected version -1, stream is at version 0"


async def test_expected_version_must_match_the_current_version(store: Store, ns: str) -> None:
    with pytest.raises(VersionConflict) as info:
        await store.write_message(ns, "s-1", "T", {}, expected_version=0)
    assert (info.value.expected, info.value.actual) == (0, -1)
    await store.write_message(ns, "s-1", "T", {})
    second = await store.write_message(ns, "s-1", "T", {}, expected_version=0)
    assert second.position == 1
    for wrong in (0, 2, -2, -100):
        with pytest.raises(VersionConflict):
            await store.write_message(ns, "s-1", "T", {}, expected_version=wrong)
    assert await store.stream_version(ns, "s-1") == 1


async def test_a_conflict_writes_nothing(store: Store, ns: str) -> None:
    await store.write_message(ns, "s-1", "T", {})
    with pytest.raises(VersionConflict):
        await store.write_message(ns, "s-1", "T", {"lost": True}, expected_version=5)
    assert len(await store.get_category_messages(ns, "")) == 1
    after = await store.write_message(ns, "s-2", "T", {})
    assert after.global_position >= 2


async def test_given_ids_are_stored_in_canonical_form(store: Store, ns: str) -> None:
    raw = "{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}"
    await store.write_message(ns, "s-1", "T", {}, message_id=raw)
    [msg] = await store.get_stream_messages(ns, "s-1")
    assert msg.id == "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


async def test_an_empty_id_means_generate_one(store: Store, ns: str) -> None:
    await store.write_message(ns, "s-1", "T", {}, message_id="")
    [msg] = await store.get_stream_messages(ns, "s-1")
    assert msg.id[14] == "7"


async def test_retrying_an_identical_write_with_the_same_id_is_idempotent(
    store: Store, ns: str
) -> None:
    mid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    first = await store.write_message(ns, "s-1", "T", {"a": 1}, {"m": 1}, message_id=mid)
    await store.write_message(ns, "s-1", "T", {"b": 2})
    retry = await store.write_message(
        ns, "s-1", "T", {"a": 1}, {"m": 1}, message_id=mid.upper(), expected_version=-1
    )
    assert (retry.position, retry.global_position) == (first.position, first.global_position)
    assert retry.duplicate
    assert len(await store.get_stream_messages(ns, "s-1")) == 2


@pytest.mark.parametrize(
    ("stream", "type_", "data", "meta"),
    [
        ("s-2", "T", {"a": 1}, None),
        ("s-1", "U", {"a": 1}, None),
        ("s-1", "T", {"a": 2}, None),
        ("s-1", "T", {"a": 1}, {}),
    ],
)
async def test_reusing_an_id_for_different_content_is_refused(
    store: Store, ns: str, stream: str, type_: str, data: dict[str, Any], meta: Any
) -> None:
    mid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    await store.write_message(ns, "s-1", "T", {"a": 1}, None, message_id=mid)
    with pytest.raises(DuplicateMessageId) as info:
        await store.write_message(ns, stream, type_, data, meta, message_id=mid)
    assert info.value.details == {"id": mid, "stream": "s-1"}
    assert len(await store.get_category_messages(ns, "")) == 1


async def test_the_same_id_may_exist_in_two_namespaces(store: Store, ns: str) -> None:
    from eventodb.core import tokens

    await store.create_namespace("other", tokens.hash_token(tokens.generate("other")))
    mid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    await store.write_message(ns, "s-1", "T", {}, message_id=mid)
    result = await store.write_message("other", "s-9", "U", {"x": 1}, message_id=mid)
    assert not result.duplicate


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream_name": ""}, "streamName must be a non-empty string"),
        ({"stream_name": "a\x00b"}, "streamName must not contain NUL"),
        ({"stream_name": "x" * 1025}, "streamName must be at most 1024 bytes"),
        ({"stream_name": "é" * 513}, "streamName must be at most 1024 bytes"),
        ({"message_type": ""}, "message.type must be a non-empty string"),
        ({"message_type": "T\x00"}, "message.type must not contain NUL"),
        ({"data": []}, "message.data must be an object"),
        ({"data": None}, "message.data must be an object"),
        ({"data": "x"}, "message.data must be an object"),
        ({"metadata": [1]}, "message.metadata must be an object"),
        ({"data": {"k": "a\x00"}}, "message.data must not contain NUL"),
        ({"data": {"k\x00": 1}}, "message.data must not contain NUL"),
        ({"metadata": {"k": ["\x00"]}}, "message.metadata must not contain NUL"),
        ({"data": {"big": "x" * (1024 * 1024)}}, "message is too large"),
        ({"message_id": "not-a-uuid"}, "options.id must be a UUID"),
        ({"expected_version": 2**63}, "options.expectedVersion is out of range"),
    ],
)
async def test_invalid_writes_are_refused_and_write_nothing(
    store: Store, ns: str, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {
        "stream_name": "s-1",
        "message_type": "T",
        "data": {},
        "metadata": None,
    }
    args.update(kwargs)
    with pytest.raises(InvalidArgument, match=message):
        await store.write_message(ns, **args)
    assert await store.get_category_messages(ns, "") == []


async def test_deep_payloads_are_refused(store: Store, ns: str) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(600):
        node["k"] = {}
        node = node["k"]
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        await store.write_message(ns, "s-1", "T", deep)
