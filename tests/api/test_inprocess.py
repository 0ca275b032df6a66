"""The ASGI app also runs in-process (no subprocess, no socket) over any opened store."""

from __future__ import annotations

import httpx

from eventodb.api.app import create_app
from eventodb.core import tokens
from eventodb.store.base import Store
from eventodb.store.sqlite import SQLiteStore


async def test_app_serves_rpc_over_an_opened_store(store: Store) -> None:
    await store.create_namespace("default", tokens.hash_token(tokens.TEST_TOKEN), "Default")
    app = create_app(store)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {tokens.TEST_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        written = await client.post(
            "/rpc", json=["stream.write", "acc-1", {"type": "T", "data": {}}], headers=headers
        )
        assert written.json() == {"position": 0, "globalPosition": 1}
        health = await client.post("/rpc", json=["sys.health"], headers=headers)
        assert health.json()["backend"] == store.backend
        assert (await client.post("/rpc", json=["sys.version"])).status_code == 401


class _BuggyStore(SQLiteStore):
    """A store with a bug: one primitive raises something that is not an EventoDB error."""

    async def _stream_version(self, namespace: str, stream_name: str) -> int | None:
        raise RuntimeError("secret internal detail")


async def test_unexpected_exception_is_a_bare_internal_error() -> None:
    store = _BuggyStore(None)
    await store.open()
    try:
        await store.create_namespace("default", tokens.hash_token(tokens.TEST_TOKEN), "Default")
        transport = httpx.ASGITransport(app=create_app(store))
        headers = {"Authorization": f"Bearer {tokens.TEST_TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.post("/rpc", json=["stream.version", "a-1"], headers=headers)
        assert response.status_code == 500
        assert response.json() == {
            "error": {"code": "INTERNAL_ERROR", "message": "Internal server error"}
        }
    finally:
        await store.close()
