"""The ASGI app also runs in-process (no subprocess, no socket) over any opened store."""

from __future__ import annotations

import httpx

from eventodb.api.app import create_app
from eventodb.core import tokens
from eventodb.store.base import Store


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
