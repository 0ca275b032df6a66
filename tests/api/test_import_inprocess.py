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
    import_groups_per_transaction = 1

    def __init__(self, parsed: Callable[[], int]) -> None:
        super().__init__(None)
        self.parsed = parsed
        self.finished_at: list[int] = []
        """Records parsed when each batch had committed."""

    async def _import_groups(self, namespace: str, groups: Any) -> None:
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


class CountingGroups(SQLiteStore):
    """A real SQLite store that records how many batches each import call carried."""

    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[int] = []

    async def _import_groups(self, namespace: str, groups: Any) -> None:
        self.calls.append(len(groups))
        await super()._import_groups(namespace, groups)


async def test_sqlite_commits_batches_parsed_meanwhile_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five batches of 1,000 go in one transaction (the store's import_groups_per_transaction),
    the rest when the input ends; every batch still gets its progress event once committed."""
    monkeypatch.setattr(imports, "GATHER_SECONDS", 60.0)  # only a full transaction or the end
    store = CountingGroups()
    await store.open()
    try:
        await store.create_namespace(NS, tokens.hash_token(tokens.TEST_TOKEN), "Default")
        body = b"\n".join(line(g) for g in range(1, 7001)) + b"\n"
        channel = Channel(pieces(body, 65536))
        commits = store.stats.write_batches.cumulative()[-1][1]
        assert await run(store, channel) == 200
        assert store.calls == [5, 2]
        assert store.stats.write_batches.cumulative()[-1][1] - commits == 2  # transactions
        events = channel.events()
        assert events[:-1] == [{"imported": k * 1000, "gpos": k * 1000} for k in range(1, 8)]
        assert events[-1]["imported"] == 7000
        assert len(await store.get_category_messages(NS, "", batch_size=-1)) == 7000
    finally:
        await store.close()


async def test_a_batch_whose_input_stalls_is_committed_before_the_rest_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client sending slowly sees each batch committed and reported while it is still
    sending, not only once five batches or the end have come."""
    monkeypatch.setattr(imports, "GATHER_SECONDS", 0.01)
    store = CountingGroups()
    await store.open()
    first = b"\n".join(line(g) for g in range(1, 1001)) + b"\n"
    rest = b"\n".join(line(g) for g in range(1001, 1501)) + b"\n"
    reported = asyncio.Event()

    class Slow(Channel):
        async def receive(self) -> dict[str, Any]:
            if self.received == 1:  # the second chunk waits for the first batch's event
                await asyncio.wait_for(reported.wait(), 10)
            return await super().receive()

        async def send(self, message: MutableMapping[str, Any]) -> None:
            await super().send(message)
            if b'"imported":1000' in message.get("body", b""):
                reported.set()

    try:
        await store.create_namespace(NS, tokens.hash_token(tokens.TEST_TOKEN), "Default")
        channel = Slow([first, rest])
        assert await run(store, channel) == 200
        assert store.calls == [1, 1]
        assert channel.events()[-1]["imported"] == 1500
    finally:
        await store.close()
