"""``GET /subscribe`` on the wire: validation bodies, framing and headers, heartbeats
(docs/API.md, "Subscriptions")."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from tests.subscriptions.conftest import HEARTBEAT, Tenant, start_server
from tests.support.server import Server
from tests.support.sseclient import subscribe

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Protocol details do not depend on the backend: one in-memory server."""
    srv = start_server("test-mode", request, tmp_path_factory.mktemp("sse-protocol"))
    yield srv
    assert srv.stop() == 0, srv.output()


REQUIRED = "Either 'stream', 'category', or 'all=true' parameter required"
COMBINE = "Cannot combine 'all' with 'stream' or 'category'"
BOTH = "Cannot specify both 'stream' and 'category'"
GROUP = "Invalid consumer group: member must be < size"


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("", REQUIRED),
        ("stream=&category=", REQUIRED),
        ("all=false", REQUIRED),
        ("all=TRUE", REQUIRED),
        ("position=3", REQUIRED),
        ("all=true&stream=a-1", COMBINE),
        ("all=true&category=a", COMBINE),
        ("all=true&stream=a-1&category=a", COMBINE),
        ("stream=a-1&category=a", BOTH),
        ("stream=a-1&position=x", "Invalid position parameter"),
        ("stream=a-1&position=1.5", "Invalid position parameter"),
        ("stream=a-1&position=%201", "Invalid position parameter"),
        ("all=true&position=99999999999999999999", "Invalid position parameter"),
        ("category=a&position=x&consumer=x", "Invalid position parameter"),
        ("category=a&consumer=x", "Invalid consumer parameter"),
        ("category=a&consumer=1&size=x", "Invalid size parameter"),
        ("category=a&consumer=2&size=2", GROUP),
        ("category=a&consumer=1", GROUP),
        ("category=a&size=0&consumer=0", GROUP),
        ("category=a&consumer=0", GROUP),
        ("category=a&consumer=-1&size=2", GROUP),
        ("category=a&consumerGroupMember=3&consumerGroupSize=2", GROUP),
        ("category=a&consumerGroupMember=x", "Invalid consumer parameter"),
        ("stream=a%00b", "stream must not contain NUL characters"),
        ("category=" + "c" * 1025, "category must be at most 1024 bytes"),
    ],
)
async def test_invalid_queries_get_plain_text_400(server: Server, query: str, body: str) -> None:
    response = await subscribe(server.port, query)
    try:
        assert response.status == 400
        assert response.header("content-type") == "text/plain; charset=utf-8"
        assert (await response.body()).decode() == body
    finally:
        await response.aclose()


@pytest.mark.parametrize(
    "query",
    [
        "stream=a-1&consumer=x&size=y",  # consumer/size are only read with category
        "category=a&consumer=1&size=2",
        "category=a&consumerGroupMember=1&consumerGroupSize=2",
        "category=a&size=3",  # member defaults to 0
        "all=true&position=-5",
        "stream=a-1&position=%2B2",
    ],
)
async def test_valid_queries_open_a_stream(server: Server, query: str) -> None:
    response = await subscribe(server.port, query)
    try:
        assert response.status == 200
    finally:
        await response.aclose()


async def test_response_headers_and_bytes_are_exact(tenant: Tenant) -> None:
    await tenant.write("caf\u00e9-1", {"n": 1})
    position, gp = await tenant.write("caf\u00e9-1", {"n": 2})
    response = await subscribe(
        tenant.port, {"stream": "caf\u00e9-1", "position": 1}, token=tenant.token
    )
    try:
        assert response.status == 200
        names = {k.lower(): v for k, v in response.headers}
        assert names["content-type"] == "text/event-stream"
        assert names["cache-control"] == "no-cache"
        assert names["connection"] == "keep-alive"
        assert names["access-control-allow-origin"] == "*"
        assert names["transfer-encoding"] == "chunked"
        await asyncio.wait_for(response.next_poke(), 5)
        data = json.dumps(
            {"stream": "caf\u00e9-1", "position": position, "globalPosition": gp},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        assert bytes(response.raw) == b": ready\n\nevent: poke\ndata: " + data + b"\n\n"
    finally:
        await response.aclose()


async def test_token_can_come_from_the_authorization_header(tenant: Tenant) -> None:
    await tenant.write("hdr-1")
    response = await subscribe(
        tenant.port, {"stream": "hdr-1"}, headers={"Authorization": f"Bearer {tenant.token}"}
    )
    try:
        poke = await asyncio.wait_for(response.next_poke(), 5)
        assert poke is not None
        assert poke.stream == "hdr-1"
    finally:
        await response.aclose()


async def test_idle_subscription_gets_heartbeat_comments(tenant: Tenant) -> None:
    response = await subscribe(tenant.port, {"all": "true"}, token=tenant.token)
    try:
        started = time.monotonic()
        pings = 0
        while pings < 2:
            block = await asyncio.wait_for(response.next_block(), HEARTBEAT * 3)
            assert block == b": ping"
            pings += 1
        elapsed = time.monotonic() - started
        assert HEARTBEAT * 1.5 <= elapsed <= HEARTBEAT * 4
    finally:
        await response.aclose()
