"""Random JSON (and random bytes) at ``/rpc``: never a 5xx, always a well-formed envelope, and a
rejected request never changes the store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventodb.api.rpc import METHODS
from eventodb.core.errors import HTTP_STATUS, ErrorCode
from tests.support.server import ADMIN_TOKEN, Server, Tenant, make_tenant

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "acc-1", "acc", "x" * 1100, "a\x00b", "default"])
)
keys = st.sampled_from(
    [
        "type",
        "data",
        "metadata",
        "id",
        "expectedVersion",
        "position",
        "globalPosition",
        "batchSize",
        "correlation",
        "consumerGroup",
        "member",
        "size",
        "prefix",
        "cursor",
        "limit",
        "token",
        "description",
    ]
) | st.text(max_size=6)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=15,
)
method_names = st.sampled_from(sorted(METHODS)) | st.text(max_size=10) | scalars
requests = st.one_of(
    st.tuples(method_names).map(list),
    st.builds(lambda m, args: [m, *args], method_names, st.lists(json_values, max_size=4)),
    json_values,
)


@pytest.fixture(scope="module")
def victim(server: Server) -> Iterator[Tenant]:
    """A non-admin namespace holding a little data."""
    t = make_tenant(server)
    t.ok("stream.write", "acc-1", {"type": "T", "data": {"n": 1}})
    t.ok("stream.write", "acc-2", {"type": "T", "data": {"n": 2}, "metadata": {"m": 1}})
    yield t
    server.rpc(ADMIN_TOKEN, "ns.delete", t.namespace)


def snapshot(server: Server, t: Tenant) -> tuple[Any, ...]:
    namespaces = sorted(e["namespace"] for e in server.ok(ADMIN_TOKEN, "ns.list"))
    info = t.ok("ns.info", t.namespace)
    return namespaces, info["messageCount"], t.ok("ns.streams")


def check_response(status: int, body: Any) -> None:
    assert status < 500, body
    if status == 200:
        return
    assert isinstance(body, dict)
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) <= {"code", "message", "details"}
    assert isinstance(error["message"], str)
    assert error["message"]
    code = ErrorCode(error["code"])
    assert status == HTTP_STATUS[code]
    if "details" in error:
        assert isinstance(error["details"], dict)


@FUZZ
@given(request=requests)
def test_random_json_requests(server: Server, victim: Tenant, request: Any) -> None:
    before = snapshot(server, victim)
    response = server.client.post(
        "/rpc", json=request, headers={"Authorization": f"Bearer {victim.token}"}
    )
    check_response(response.status_code, response.json())
    if response.status_code != 200 or request[0] not in ("stream.write", "ns.delete"):
        assert snapshot(server, victim) == before


@FUZZ
@given(body=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_random_bytes(server: Server, victim: Tenant, body: bytes) -> None:
    response = server.client.post(
        "/rpc", content=body, headers={"Authorization": f"Bearer {victim.token}"}
    )
    check_response(response.status_code, response.json())
