"""The message methods (docs/API.md, "Methods"): results, shapes, and every validation row."""

from __future__ import annotations

import concurrent.futures
import re
import uuid
from typing import Any

import pytest

from tests.support.server import Tenant, error_of

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
MSG = {"type": "T", "data": {"a": 1}}


def write(t: Tenant, stream: str, type_: str = "T", **extra: Any) -> dict[str, int]:
    result: dict[str, int] = t.ok("stream.write", stream, {"type": type_, "data": {}, **extra})
    return result


# -- results and shapes ---------------------------------------------------------------------------


def test_write_then_get_returns_seven_element_messages(tenant: Tenant) -> None:
    assert tenant.ok("stream.write", "acc-1", {"type": "Opened", "data": {"n": 1}}) == {
        "position": 0,
        "globalPosition": 1,
    }
    tenant.ok("stream.write", "acc-1", {"type": "Dep", "data": {"n": 2}, "metadata": {"m": True}})
    messages = tenant.ok("stream.get", "acc-1")
    assert len(messages) == 2
    first, second = messages
    assert len(first) == 7
    uuid.UUID(first[0])
    assert first[0] == first[0].lower()
    assert first[1:6] == ["Opened", 0, 1, {"n": 1}, None]
    assert second[1:6] == ["Dep", 1, 2, {"n": 2}, {"m": True}]
    assert TIME.match(first[6])


def test_payload_numbers_beyond_64_bits_round_trip_exactly(tenant: Tenant) -> None:
    raw = (
        b'["stream.write","acc-1",'
        b'{"type":"T","data":{"big":123456789012345678901234567890,"f":1.5}}]'
    )
    response = tenant.server.client.post(
        "/rpc", content=raw, headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert response.status_code == 200
    body = tenant.server.client.post(
        "/rpc",
        content=b'["stream.get","acc-1"]',
        headers={"Authorization": f"Bearer {tenant.token}"},
    ).content
    assert b'"big":123456789012345678901234567890' in body
    assert b'"f":1.5' in body


def test_explicit_null_metadata_means_absent_and_empty_object_round_trips(tenant: Tenant) -> None:
    tenant.ok("stream.write", "acc-1", {"type": "T", "data": {}, "metadata": None})
    tenant.ok("stream.write", "acc-1", {"type": "T", "data": {}, "metadata": {}})
    messages = tenant.ok("stream.get", "acc-1")
    assert [m[5] for m in messages] == [None, {}]


def test_write_with_expected_version(tenant: Tenant) -> None:
    assert tenant.ok("stream.write", "acc-1", MSG, {"expectedVersion": -1})["position"] == 0
    assert tenant.ok("stream.write", "acc-1", MSG, {"expectedVersion": 0.9})["position"] == 1
    response = tenant.rpc("stream.write", "acc-1", MSG, {"expectedVersion": 5})
    assert error_of(response) == (
        409,
        "STREAM_VERSION_CONFLICT",
        "Expected version 5, stream is at version 1",
    )
    assert response.json()["error"]["details"] == {"expected": 5, "actual": 1}
    assert tenant.message_count() == 2


def test_write_with_id_is_idempotent_and_canonicalised(tenant: Tenant) -> None:
    given = "{" + str(uuid.uuid4()).upper() + "}"
    first = tenant.ok("stream.write", "acc-1", MSG, {"id": given})
    again = tenant.ok("stream.write", "acc-1", MSG, {"id": given})
    assert first == again
    assert tenant.message_count() == 1
    stored = tenant.ok("stream.last", "acc-1")[0]
    assert stored == given[1:-1].lower()
    response = tenant.rpc("stream.write", "acc-1", {"type": "Other", "data": {}}, {"id": given})
    status, code, _ = error_of(response)
    assert (status, code) == (409, "DUPLICATE_MESSAGE_ID")
    assert response.json()["error"]["details"]["stream"] == "acc-1"


def test_empty_id_means_generated(tenant: Tenant) -> None:
    tenant.ok("stream.write", "acc-1", MSG, {"id": ""})
    assert tenant.message_count() == 1


def test_stream_get_options(tenant: Tenant) -> None:
    for _ in range(5):
        write(tenant, "acc-1")
    write(tenant, "other-1")
    assert [m[2] for m in tenant.ok("stream.get", "acc-1", {"position": 2})] == [2, 3, 4]
    assert [m[2] for m in tenant.ok("stream.get", "acc-1", {"position": -3, "batchSize": 2})] == [
        0,
        1,
    ]
    assert tenant.ok("stream.get", "acc-1", {"position": 99}) == []
    assert tenant.ok("stream.get", "acc-1", {"batchSize": 0}) == []
    assert len(tenant.ok("stream.get", "acc-1", {"batchSize": -1})) == 5
    by_global = tenant.ok("stream.get", "acc-1", {"globalPosition": 4, "position": 0})
    assert [m[2] for m in by_global] == [3, 4]
    assert tenant.ok("stream.get", "nothing-here") == []
    assert tenant.ok("stream.get", "nodash") == []
    assert [m[2] for m in tenant.ok("stream.get", "acc-1", {"position": 3.7})] == [3, 4]


def test_stream_last_and_version(tenant: Tenant) -> None:
    assert tenant.ok("stream.last", "acc-1") is None
    assert tenant.ok("stream.version", "acc-1") is None
    write(tenant, "acc-1", "A")
    write(tenant, "acc-1", "B")
    assert tenant.ok("stream.last", "acc-1")[1:3] == ["B", 1]
    assert tenant.ok("stream.last", "acc-1", {"type": "A"})[1:3] == ["A", 0]
    assert tenant.ok("stream.last", "acc-1", {"type": "Z"}) is None
    assert tenant.ok("stream.last", "acc-1", {"type": ""})[1] == "B"
    assert tenant.ok("stream.version", "acc-1") == 1


def test_category_get_shapes_filters_and_groups(tenant: Tenant) -> None:
    for i in range(1, 5):
        write(tenant, f"test-{i}")
    write(tenant, "test")
    write(tenant, "other-1", metadata={"correlationStreamName": "reply-9"})
    write(tenant, "test-5", metadata={"correlationStreamName": "reply-1"})
    messages = tenant.ok("category.get", "test")
    assert [m[1] for m in messages] == ["test-1", "test-2", "test-3", "test-4", "test", "test-5"]
    assert len(messages[0]) == 8
    assert messages[0][2:5] == ["T", 0, 1]
    assert TIME.match(messages[0][7])
    group0 = tenant.ok("category.get", "test", {"consumerGroup": {"member": 0, "size": 2}})
    assert [m[1] for m in group0] == ["test-1", "test-3"]
    group1 = tenant.ok("category.get", "test", {"consumerGroup": {"member": 1, "size": 2}})
    assert [m[1] for m in group1] == ["test-2", "test-4", "test-5"]
    assert tenant.ok("category.get", "test", {"consumerGroup": {}})[0][1] == "test-1"
    assert [m[1] for m in tenant.ok("category.get", "test", {"correlation": "reply"})] == ["test-5"]
    assert [m[4] for m in tenant.ok("category.get", "test", {"position": 3, "batchSize": 2})] == [
        3,
        4,
    ]
    by_global = tenant.ok("category.get", "test", {"position": 1, "globalPosition": 6})
    assert [m[4] for m in by_global] == [7]
    everything = tenant.ok("category.get", "")
    assert [m[4] for m in everything] == [1, 2, 3, 4, 5, 6, 7]
    assert tenant.ok("category.get", "test-1") == []
    assert tenant.ok("category.get", "none") == []
    assert tenant.ok("category.get", "test", {"condition": "1=1", "batchSize": 1})[0][1] == "test-1"


# -- validation rows ------------------------------------------------------------------------------

WRITE_ROWS: list[tuple[list[Any], str]] = [
    ([], "stream.write requires at least 2 arguments: streamName and message"),
    (["acc-1"], "stream.write requires at least 2 arguments: streamName and message"),
    (["", MSG], "streamName must be a non-empty string"),
    ([None, MSG], "streamName must be a non-empty string"),
    ([5, MSG], "streamName must be a non-empty string"),
    (["acc-1", None], "message must be an object"),
    (["acc-1", [1]], "message must be an object"),
    (["acc-1", "m"], "message must be an object"),
    (["acc-1", {"data": {}}], "message.type must be a non-empty string"),
    (["acc-1", {"type": "", "data": {}}], "message.type must be a non-empty string"),
    (["acc-1", {"type": 1, "data": {}}], "message.type must be a non-empty string"),
    (["acc-1", {"type": "T"}], "message.data must be an object"),
    (["acc-1", {"type": "T", "data": None}], "message.data must be an object"),
    (["acc-1", {"type": "T", "data": [1]}], "message.data must be an object"),
    (["acc-1", {"type": "T", "data": "x"}], "message.data must be an object"),
    (["acc-1", {"type": "T", "data": {}, "metadata": 1}], "message.metadata must be an object"),
    (["acc-1", {"type": "T", "data": {}, "metadata": []}], "message.metadata must be an object"),
    (["acc-1", MSG, None], "options must be an object"),
    (["acc-1", MSG, []], "options must be an object"),
    (["acc-1", MSG, {"id": 5}], "options.id must be a string"),
    (["acc-1", MSG, {"id": None}], "options.id must be a string"),
    (["acc-1", MSG, {"id": "not-a-uuid"}], "options.id must be a UUID"),
    (["acc-1", MSG, {"expectedVersion": "1"}], "options.expectedVersion must be a number"),
    (["acc-1", MSG, {"expectedVersion": None}], "options.expectedVersion must be a number"),
    (["acc-1", MSG, {"expectedVersion": True}], "options.expectedVersion must be a number"),
    (["acc-1", MSG, {"expectedVersion": 2**63}], "options.expectedVersion is out of range"),
    (["acc-1", MSG, {"expectedVersion": -1e30}], "options.expectedVersion is out of range"),
    (["a" * 1025, MSG], "streamName must be at most 1024 bytes"),
    (["acc\x00-1", MSG], "streamName must not contain NUL characters"),
    (["acc-1", {"type": "T" * 1025, "data": {}}], "message.type must be at most 1024 bytes"),
    (
        ["acc-1", {"type": "T", "data": {"k": "a\x00b"}}],
        "message.data must not contain NUL characters",
    ),
]

GET_ROWS: list[tuple[list[Any], str]] = [
    ([], "stream.get requires at least 1 argument: streamName"),
    ([""], "streamName must be a non-empty string"),
    ([{}], "streamName must be a non-empty string"),
    (["acc-1", None], "options must be an object"),
    (["acc-1", "x"], "options must be an object"),
    (["acc-1", {"position": "1"}], "options.position must be a number"),
    (["acc-1", {"position": None}], "options.position must be a number"),
    (["acc-1", {"position": False}], "options.position must be a number"),
    (["acc-1", {"position": 1e19}], "options.position is out of range"),
    (["acc-1", {"globalPosition": [1]}], "options.globalPosition must be a number"),
    (["acc-1", {"globalPosition": -(2**63) - 1}], "options.globalPosition is out of range"),
    (["acc-1", {"batchSize": "10"}], "options.batchSize must be a number"),
    (["acc-1", {"batchSize": 10001}], "options.batchSize must be <= 10000 or -1 for unlimited"),
    (["acc-1", {"batchSize": -2}], "options.batchSize must be >= 0 or -1 for unlimited"),
    (["acc-1", {"batchSize": 2**64}], "options.batchSize is out of range"),
]

LAST_ROWS: list[tuple[list[Any], str]] = [
    ([], "stream.last requires at least 1 argument: streamName"),
    ([""], "streamName must be a non-empty string"),
    (["acc-1", None], "options must be an object"),
    (["acc-1", {"type": 1}], "options.type must be a string"),
    (["acc-1", {"type": None}], "options.type must be a string"),
]

VERSION_ROWS: list[tuple[list[Any], str]] = [
    ([], "stream.version requires 1 argument: streamName"),
    ([""], "streamName must be a non-empty string"),
    ([1], "streamName must be a non-empty string"),
]

CG = "options.consumerGroup"


def group(value: dict[str, Any]) -> list[Any]:
    return ["c", {"consumerGroup": value}]


CATEGORY_ROWS: list[tuple[list[Any], str]] = [
    ([], "category.get requires at least 1 argument: categoryName"),
    ([None], "categoryName must be a string"),
    ([1], "categoryName must be a string"),
    (["c", None], "options must be an object"),
    (["c", {"position": "1"}], "options.position must be a number"),
    (["c", {"globalPosition": None}], "options.globalPosition must be a number"),
    (["c", {"batchSize": True}], "options.batchSize must be a number"),
    (["c", {"batchSize": 20000}], "options.batchSize must be <= 10000 or -1 for unlimited"),
    (["c", {"correlation": 1}], "options.correlation must be a string"),
    (["c", {"consumerGroup": None}], "options.consumerGroup must be an object"),
    (["c", {"consumerGroup": 1}], "options.consumerGroup must be an object"),
    (group({"member": "0", "size": 2}), f"{CG}.member must be a number"),
    (group({"member": 0, "size": None}), f"{CG}.size must be a number"),
    (group({"member": -1, "size": 2}), f"{CG}.member must be non-negative"),
    (group({"member": 0, "size": 0}), f"{CG}.size must be positive"),
    (group({"member": 2, "size": 2}), f"{CG}.member must be < size"),
    (group({"member": 0}), f"{CG} requires both member and size"),
    (group({"size": 2}), f"{CG} requires both member and size"),
    (["c" * 1025], "categoryName must be at most 1024 bytes"),
]

STREAMS_ROWS: list[tuple[list[Any], str]] = [
    ([None], "options must be an object"),
    ([5], "options must be an object"),
    ([{"prefix": 1}], "prefix must be a string"),
    ([{"cursor": None}], "cursor must be a string"),
    ([{"limit": "5"}], "limit must be a number"),
    ([{"limit": 0}], "limit must be between 1 and 1000"),
    ([{"limit": 1001}], "limit must be between 1 and 1000"),
]

ROWS = (
    [("stream.write", r, m) for r, m in WRITE_ROWS]
    + [("stream.get", r, m) for r, m in GET_ROWS]
    + [("stream.last", r, m) for r, m in LAST_ROWS]
    + [("stream.version", r, m) for r, m in VERSION_ROWS]
    + [("category.get", r, m) for r, m in CATEGORY_ROWS]
    + [("ns.streams", r, m) for r, m in STREAMS_ROWS]
)


@pytest.mark.parametrize(("method", "args", "message"), ROWS)
def test_validation_rows_answer_400_and_write_nothing(
    tenant: Tenant, method: str, args: list[Any], message: str
) -> None:
    response = tenant.rpc(method, *args)
    assert error_of(response) == (400, "INVALID_REQUEST", message)
    assert tenant.message_count() == 0


def test_type_errors_win_over_value_errors_in_spec_order(tenant: Tenant) -> None:
    """A too-long stream name is a value error; a non-object message is reported first."""
    response = tenant.rpc("stream.write", "a" * 2000, "not an object")
    assert error_of(response)[2] == "message must be an object"
    response = tenant.rpc("stream.get", "a" * 2000, {"position": "x"})
    assert error_of(response)[2] == "options.position must be a number"


def test_version_conflicts_among_concurrent_writers(tenant: Tenant) -> None:
    write(tenant, "acc-1")

    def attempt(_: int) -> int:
        return tenant.rpc("stream.write", "acc-1", MSG, {"expectedVersion": 0}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert sorted(results) == [200] + [409] * 7
