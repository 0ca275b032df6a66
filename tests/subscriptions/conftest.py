"""Fixtures for the subscription tests: the real CLI server in a subprocess, one namespace per
test, an async RPC client, and the raw SSE client of :mod:`tests.support.sseclient`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.raw_http import KeptAliveConnection
from tests.support.server import ADMIN_TOKEN, Server, serve_per_param, server_args, unique
from tests.support.server import Tenant as ServerTenant

HEARTBEAT = 1.0
"""Seconds between heartbeat comments on the test servers (``--sse-heartbeat``)."""

SERVER_KINDS = [
    "sqlite",
    "test-mode",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def start_server(kind: str, request: pytest.FixtureRequest, workdir: Path, *extra: str) -> Server:
    args = [*server_args(kind, request, workdir), f"--sse-heartbeat={HEARTBEAT}", *extra]
    return Server(args, workdir=workdir, kind=kind)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server per backend shared by one module (tests use their own namespaces)."""
    yield from serve_per_param(request, tmp_path_factory, "sse", f"--sse-heartbeat={HEARTBEAT}")


class Tenant(ServerTenant):
    """One test's namespace, with an async RPC client for it (kept-alive connections, one per
    concurrent call: the load tests write thousands of messages)."""

    def __init__(self, server: Server, namespace: str, token: str) -> None:
        super().__init__(server, namespace, token)
        self._headers = [f"Authorization: Bearer {token}", "Content-Type: application/json"]
        self._idle: list[KeptAliveConnection] = []

    async def call(self, *request: Any) -> Any:
        connection = self._idle.pop() if self._idle else KeptAliveConnection(self.port, 15.0)
        body = json.dumps(list(request), ensure_ascii=False).encode()
        status, answer = await connection.request("POST", "/rpc", body, self._headers)
        self._idle.append(connection)  # a failed request raised: its connection is closed
        assert status == 200, answer
        return json.loads(answer)

    async def aclose(self) -> None:
        for connection in self._idle:
            await connection.close()
        self._idle.clear()

    async def write(self, stream: str, data: dict[str, Any] | None = None) -> tuple[int, int]:
        """Write one message; returns (position, global position)."""
        result = await self.call("stream.write", stream, {"type": "T", "data": data or {}})
        return result["position"], result["globalPosition"]

    async def category(self, name: str, **options: Any) -> list[list[Any]]:
        result: list[list[Any]] = await self.call(
            "category.get", name, {"batchSize": -1, **options}
        )
        return result


@pytest.fixture
async def tenant(server: Server) -> AsyncIterator[Tenant]:
    namespace = unique("sse")
    created = server.ok(ADMIN_TOKEN, "ns.create", namespace)
    t = Tenant(server, namespace, created["token"])
    yield t
    await t.aclose()
    server.rpc(ADMIN_TOKEN, "ns.delete", namespace)
