"""``POST /import`` in-process, over a real SQLite store, with the ASGI body delivered in
scripted chunks: line splitting across chunk boundaries, the body limit, draining after an
error, client disconnects, and a clear that fails."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import httpx
import pytest

from eventodb.api import imports
from eventodb.api.app import create_app
from eventodb.core import tokens
from eventodb.core.errors import BackendError
from eventodb.store.sqlite import SQLiteStore

NS = "default"


def line(gpos: int) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.UUID(int=gpos)),
            "stream": f"s-{gpos % 3}",
            "type": "T",
            "pos": gpos,
            "gpos": gpos,
            "data": {"n": gpos},
            "meta": None,
            "time": "2025-01-15T10:00:00Z",
        }
    ).encode()


class Channel:
    """Scripted ``receive`` (the given chunks, then a disconnect) and a recording ``send``."""

    def __init__(self, chunks: list[bytes], *, disconnect_early: bool = False) -> None:
        self.chunks = list(chunks)
        self.received = 0
        self.disconnect_early = disconnect_early
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.chunks:
            return {"type": "http.disconnect"}
        self.received += 1
        chunk = self.chunks.pop(0)
        more = bool(self.chunks) or self.disconnect_early
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    def events(self) -> list[dict[str, Any]]:
        assert self.sent[0]["status"] == 200
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        assert self.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
        return [json.loads(b[len(b"data: ") :]) for b in body.split(b"\n\n") if b]


@pytest.fixture
async def sqlite() -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(None)
    await s.open()
    await s.create_namespace(NS, tokens.hash_token(tokens.TEST_TOKEN), "Default")
    try:
        yield s
    finally:
        await s.close()


async def run(store: SQLiteStore, channel: Channel, max_body: int = 1 << 30) -> int:
    return await imports.stream_import(
        channel.receive, channel.send, store=store, namespace=NS, max_body_bytes=max_body
    )


def pieces(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_lines_split_across_chunks_are_reassembled(sqlite: SQLiteStore, size: int) -> None:
    body = b"\n".join(line(g) for g in range(1, 1201)) + b"\n"
    channel = Channel(pieces(body, size))
    assert await run(sqlite, channel) == 200
    events = channel.events()
    assert events[0] == {"imported": 1000, "gpos": 1000}
    assert events[1]["imported"] == 1200
    assert len(await sqlite.get_category_messages(NS, "", batch_size=-1)) == 1200


async def test_bad_line_number_is_exact_across_chunks(sqlite: SQLiteStore) -> None:
    body = b"\n\n".join([line(1), line(2), b"{broken", line(4)])  # broken is line 5
    channel = Channel(pieces(body, 3))
    await run(sqlite, channel)
    [event] = channel.events()
    assert (event["error"], event["line"]) == ("INVALID_JSON", 5)


async def test_rest_of_body_is_drained_after_an_error(sqlite: SQLiteStore) -> None:
    chunks = [b"{broken\n"] + [line(g) + b"\n" for g in range(2, 50)]
    channel = Channel(chunks)
    assert await run(sqlite, channel) == 200
    assert channel.received == len(chunks)  # every chunk was read
    assert channel.events()[0]["line"] == 1


async def test_chunked_body_over_the_limit_is_a_read_error(sqlite: SQLiteStore) -> None:
    chunks = [line(g) + b"\n" for g in range(1, 100)]
    channel = Channel(chunks)
    await run(sqlite, channel, max_body=2000)
    [event] = channel.events()
    assert event == {
        "error": "READ_ERROR",
        "message": "error reading input: http: request body too large",
    }
    assert await sqlite.get_category_messages(NS, "") == []


async def test_client_gone_mid_body_keeps_committed_batches(sqlite: SQLiteStore) -> None:
    body = b"\n".join(line(g) for g in range(1, 1501)) + b"\n"
    channel = Channel(pieces(body, 65536), disconnect_early=True)
    assert await run(sqlite, channel) == 499
    assert len(await sqlite.get_category_messages(NS, "", batch_size=-1)) == 1000


class _UnclearableStore(SQLiteStore):
    async def _clear_namespace(self, namespace: str) -> int:
        raise BackendError("Failed to clear namespace: disk on fire")


async def test_failed_clear_is_a_json_500_before_any_event() -> None:
    store = _UnclearableStore(None)
    await store.open()
    try:
        await store.create_namespace(NS, tokens.hash_token(tokens.TEST_TOKEN), "Default")
        await store.write_message(NS, "a-1", "T", {})
        transport = httpx.ASGITransport(app=create_app(store))
        headers = {"Authorization": f"Bearer {tokens.TEST_TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.post("/import?force=true", content=line(1), headers=headers)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["code"] == "CLEAR_FAILED"
        assert "disk on fire" in error["message"]
        assert len(await store.get_category_messages(NS, "")) == 1
    finally:
        await store.close()


class RoundTrips(SQLiteStore):
    """A store whose import, like Postgres's, needs several turns of the event loop (one per
    round trip of its transaction) before it commits. It stores nothing: only the endpoint's
    scheduling is under test (a real insert would also wait for the GIL held by the parse)."""

    import_needs_the_loop = True

    def __init__(self, parsed: Callable[[], int]) -> None:
        super().__init__(None)
        self.parsed = parsed
        self.finished_at: list[int] = []
        """Records parsed when each batch had committed."""

    async def _import(self, namespace: str, messages: Any, payloads: Any) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        self.finished_at.append(self.parsed())


async def test_a_batch_in_flight_moves_on_while_the_next_one_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The body arrives at once, so parsing never waits for input: it must still give the
    batch in flight its turns, or that batch commits only when the next one is handed over."""
    parsed = 0
    parse = imports.parse_record

    def counting(*args: Any) -> Any:
        nonlocal parsed
        parsed += 1
        return parse(*args)

    monkeypatch.setattr(imports, "parse_record", counting)
    store = RoundTrips(lambda: parsed)
    await store.open()
    try:
        await store.create_namespace(NS, tokens.hash_token(tokens.TEST_TOKEN), "Default")
        body = b"\n".join(line(g) for g in range(1, 3001)) + b"\n"
        channel = Channel([body])
        assert await run(store, channel) == 200
        assert channel.events()[-1]["imported"] == 3000
        # Committed within a few turns of the hand-over, not at the next one (record 2000).
        assert imports.BATCH_SIZE <= store.finished_at[0] < imports.BATCH_SIZE + 500
    finally:
        await store.close()
