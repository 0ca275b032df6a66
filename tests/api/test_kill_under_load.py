"""kill -9 of the server while many clients write: after a restart every acknowledged write is
there, exactly where it was acknowledged, and nothing else is (except writes whose answer the
clients never got). On Postgres the writes go in group-commit batches, on SQLite in the writer
thread's; both acknowledge a write only after the commit holding it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ADMIN_TOKEN, Server, server_args

WORKERS = 16
ACKNOWLEDGED_BEFORE_KILL = 400


@dataclass(frozen=True)
class Sent:
    stream: str
    data: dict[str, Any]


async def writer(
    client: httpx.AsyncClient,
    token: str,
    worker: int,
    sent: dict[str, Sent],
    acknowledged: dict[str, tuple[int, int]],
) -> None:
    """Write until the server goes away; record what was sent and what was acknowledged."""
    headers = {"Authorization": f"Bearer {token}"}
    for i in range(1_000_000):
        # Spread categories, plus streams every worker shares.
        stream = f"c{worker % 8}-{i % 3}" if i % 2 else f"shared-{i % 4}"
        message_id = str(uuid.uuid4())
        sent[message_id] = Sent(stream, {"w": worker, "i": i})
        body = [
            "stream.write",
            stream,
            {"type": "T", "data": sent[message_id].data},
            {"id": message_id},
        ]
        try:
            response = await client.post("/rpc", json=body, headers=headers)
        except httpx.TransportError:
            return  # killed: this write's outcome is unknown
        assert response.status_code == 200, response.text
        result = response.json()
        acknowledged[message_id] = (result["position"], result["globalPosition"])


def write_batch_sizes(server: Server) -> tuple[float, float]:
    """(writes, transactions) of the server's ``eventodb_write_batch_size`` histogram."""
    text = server.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    total = re.search(r"^eventodb_write_batch_size_sum (\S+)$", text, re.M)
    count = re.search(r"^eventodb_write_batch_size_count (\S+)$", text, re.M)
    assert total is not None, text
    assert count is not None, text
    return float(total.group(1)), float(count.group(1))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_acknowledged_writes_survive_kill_9_under_load(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    args = server_args(kind, request, tmp_path)
    server = Server(args, workdir=tmp_path, kind=kind)
    namespace = f"crash_{uuid.uuid4().hex[:8]}"
    token = server.ok(ADMIN_TOKEN, "ns.create", namespace)["token"]
    sent: dict[str, Sent] = {}
    acknowledged: dict[str, tuple[int, int]] = {}
    limits = httpx.Limits(max_connections=WORKERS)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        writers = [
            asyncio.create_task(writer(client, token, w, sent, acknowledged))
            for w in range(WORKERS)
        ]
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            await asyncio.sleep(0.005)
            assert not any(w.done() for w in writers), server.output()
        writes, transactions = write_batch_sizes(server)
        server.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*writers), 30)
    assert server.stop() == -signal.SIGKILL
    if kind == "postgres":
        assert writes > transactions, "the concurrent writes were not batched"

    restarted = Server(args, workdir=tmp_path, kind=kind)
    try:
        stored = restarted.ok(token, "category.get", "", {"batchSize": -1})
        restarted.ok(ADMIN_TOKEN, "ns.delete", namespace)
    finally:
        assert restarted.stop() == 0, restarted.output()

    by_id = {m[0]: m for m in stored}
    assert len(by_id) == len(stored)
    assert len({m[4] for m in stored}) == len(stored), "a global position is used twice"
    for message_id, (position, global_position) in acknowledged.items():
        assert message_id in by_id, f"acknowledged write {message_id} is lost"
        _, stream, _, stored_position, stored_global, data, _, _ = by_id[message_id]
        assert (stream, stored_position, stored_global, data) == (
            sent[message_id].stream,
            position,
            global_position,
            sent[message_id].data,
        )
    unanswered = set(by_id) - set(acknowledged)
    assert unanswered <= set(sent), "a message nobody wrote is stored"
    assert len(unanswered) <= WORKERS  # at most the writes in flight at the kill
    for message_id in unanswered:
        assert by_id[message_id][5] == sent[message_id].data
    positions: dict[str, list[int]] = {}
    for m in stored:
        positions.setdefault(m[1], []).append(m[3])
    for stream, found in positions.items():
        assert sorted(found) == list(range(len(found))), f"{stream} has a gap: {sorted(found)}"
