"""A token of namespace A can never read, write, list, inspect, delete or subscribe to anything
of namespace B, nor learn whether B or its streams exist — across every method."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import ADMIN_TOKEN, Server, Tenant, make_tenant, unique

SECRET = "secret-1"


@pytest.fixture
def pair(server: Server) -> Iterator[tuple[Tenant, Tenant]]:
    """A (the prober) and B (the victim); B holds one message in ``secret-1``."""
    a, b = make_tenant(server), make_tenant(server)
    b.ok("stream.write", SECRET, {"type": "Hidden", "data": {"pin": 1234}})
    yield a, b
    for t in (a, b):
        server.rpc(ADMIN_TOKEN, "ns.delete", t.namespace)


READS: list[list[Any]] = [
    ["stream.get", SECRET],
    ["stream.get", SECRET, {"globalPosition": 1}],
    ["stream.last", SECRET],
    ["stream.version", SECRET],
    ["category.get", "secret"],
    ["category.get", ""],
    ["ns.streams"],
    ["ns.streams", {"prefix": "secret"}],
    ["ns.categories"],
    ["ns.head"],
]


@pytest.mark.parametrize("request_", READS, ids=lambda r: " ".join(map(str, r)))
def test_reads_of_a_never_see_b(pair: tuple[Tenant, Tenant], request_: list[Any]) -> None:
    a, b = pair
    empty: Any = {
        "stream.last": None,
        "stream.version": None,
        "ns.head": {"globalPosition": 0, "settled": True},
    }.get(request_[0], [])
    assert a.ok(*request_) == empty
    assert b.ok(*request_) != empty


def test_namespace_admin_calls_on_b_look_like_b_does_not_exist(pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    ghost = unique("ghost")
    for method in ("ns.info", "ns.delete", "ns.create"):
        real, fake = a.rpc(method, b.namespace), a.rpc(method, ghost)
        assert real.status_code == fake.status_code == 403
        assert real.json() == fake.json()
        assert b.namespace not in real.text
    listing = a.rpc("ns.list")
    assert listing.status_code == 403
    assert b.namespace not in listing.text
    assert b.message_count() == 1


def test_writes_of_a_land_in_a(pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    assert a.ok("stream.write", SECRET, {"type": "Mine", "data": {}}, {"expectedVersion": -1}) == {
        "position": 0,
        "globalPosition": 1,
    }
    assert b.ok("stream.version", SECRET) == 0
    assert [m[1] for m in b.ok("stream.get", SECRET)] == ["Hidden"]


def test_message_ids_of_b_are_invisible_to_a(pair: tuple[Tenant, Tenant]) -> None:
    """An id used in B is free in A: no DUPLICATE_MESSAGE_ID that would reveal it."""
    a, b = pair
    message_id = str(uuid.uuid4())
    b.ok("stream.write", "other-1", {"type": "T", "data": {}}, {"id": message_id})
    response = a.rpc(
        "stream.write", "mine-1", {"type": "Different", "data": {"x": 1}}, {"id": message_id}
    )
    assert response.status_code == 200
    assert b.ok("stream.last", "other-1")[1] == "T"


@pytest.mark.timeout(30)
def test_subscriptions_of_a_get_no_pokes_of_b(server: Server, pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    with (
        httpx.Client(base_url=server.url, timeout=10.0) as client,
        client.stream("GET", f"/subscribe?all=true&token={a.token}") as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith(": ready"):
                break
        b.ok("stream.write", SECRET, {"type": "Hidden", "data": {}})
        a.ok("stream.write", "mine-1", {"type": "Mine", "data": {}})
        for line in lines:
            if line.startswith("data: "):
                poke = json.loads(line[6:])
                break
    assert poke == {"stream": "mine-1", "position": 0, "globalPosition": 1}
