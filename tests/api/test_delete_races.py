"""Requests racing ``ns.delete`` of their namespace, against the real server, 50 times each.

Whatever comes first, every request is answered within 5 s — as if it ran before the delete
(200) or after it (403: the token's namespace is gone) — never with a 5xx, and the delete leaves
no file behind (no ``<ns>.db``, ``-wal`` or ``-shm`` recreated by a late reader or writer).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ADMIN_TOKEN, Server, unique

pytestmark = pytest.mark.timeout(300)

ROUNDS = 50
ANSWER_WITHIN = 5.0
RACERS = 8

BACKLOG = "\n".join(
    json.dumps(
        {
            "id": str(uuid.UUID(int=i + 1)),
            "stream": f"acc-{i % 2}",
            "type": "T",
            "pos": i // 2,
            "gpos": i + 1,
            "data": {"i": i, "pad": "x" * 200},
            "time": "2025-01-01T00:00:00Z",
        }
    )
    for i in range(400)
).encode()
"""Imported into each namespace before the race."""

READS: list[list[Any]] = [
    ["stream.get", "acc-1"],
    ["category.get", "acc"],
    ["category.get", ""],
    ["stream.last", "acc-1"],
    ["stream.version", "acc-1"],
    ["ns.streams"],
    ["ns.categories"],
    ["ns.head"],
]


async def post(client: httpx.AsyncClient, token: str, body: list[Any]) -> httpx.Response:
    return await asyncio.wait_for(
        client.post("/rpc", json=body, headers={"Authorization": f"Bearer {token}"}),
        ANSWER_WITHIN,
    )


async def race(server: Server, writes: bool) -> Counter[int]:
    """One namespace per round: requests in flight while it is deleted."""
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=RACERS + 2)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        for round_ in range(ROUNDS):
            name = unique("race")
            created = await post(client, ADMIN_TOKEN, ["ns.create", name])
            token = created.json()["token"]
            imported = await client.post(
                "/import", content=BACKLOG, headers={"Authorization": f"Bearer {token}"}
            )
            assert imported.status_code == 200, imported.text
            assert '"done":true' in imported.text, imported.text
            assert (
                await post(client, token, ["stream.write", "acc-1", _msg(0)])
            ).status_code == 200

            def body(i: int) -> list[Any]:
                if writes:
                    return ["stream.write", f"acc-{i % 2}", _msg(i)]
                return READS[i % len(READS)]

            # Some requests leave before the delete, some after it, in varying order.
            split = round_ % (RACERS + 1)
            racers = [asyncio.create_task(post(client, token, body(i))) for i in range(split)]
            await asyncio.sleep(0.0005 * (round_ % 3))
            deleting = asyncio.create_task(post(client, ADMIN_TOKEN, ["ns.delete", name]))
            for i in range(split, RACERS):
                racers.append(asyncio.create_task(post(client, token, body(i))))
                await asyncio.sleep(0.0002 * (round_ % 4))
            deleted = await deleting
            assert deleted.status_code == 200, deleted.text
            for response in await asyncio.gather(*racers):
                statuses[response.status_code] += 1
                assert response.status_code in (200, 403), response.text
    return statuses


def _msg(i: int) -> dict[str, Any]:
    return {"type": "T", "data": {"i": i}}


def leftovers(server: Server) -> list[str]:
    """Database files in the data directory other than the registry's and default's."""
    data = Path(server.workdir, "data")
    if not data.is_dir():
        return []
    return sorted(
        p.name
        for p in data.iterdir()
        if not p.name.startswith(("metadata.db", "default.db", "eventodb.lock"))
    )


@pytest.mark.parametrize("writes", [True, False], ids=["writes", "reads"])
async def test_requests_racing_a_delete_are_answered_and_leave_no_file(
    server: Server, writes: bool
) -> None:
    statuses = await race(server, writes)
    assert sum(statuses.values()) == ROUNDS * RACERS
    # A race, not a sequence: some requests ran before the delete and some after it.
    assert statuses[200] > 0, statuses
    assert statuses[403] > 0, statuses
    assert leftovers(server) == []
    assert server.ok(ADMIN_TOKEN, "sys.health")["status"] == "ok"
