"""One send per response: uvicorn writes a response's head and body separately; they reach the
socket's transport in one call."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from eventodb.api.coalesce import COPY_LIMIT, CoalescingTransport
from eventodb.api.connections import ConnectionGuard, ConnectionLimits


class Recording(asyncio.Transport):
    """A transport that records what reaches it (and forwards to ``inner`` if given)."""

    def __init__(self, inner: asyncio.Transport | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.writes: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.calls.append("write")
        if self.inner is not None:
            self.inner.write(data)

    def close(self) -> None:
        self.closing = True
        self.calls.append("close")
        if self.inner is not None:
            self.inner.close()

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def abort(self) -> None:
        self.closing = True
        self.calls.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_turn_leave_together() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # nothing left over


async def test_a_big_body_is_not_copied_to_go_with_the_head() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    body = b"x" * (COPY_LIMIT + 1)
    transport.write(b"head")
    transport.write(body)
    assert raw.writes == [b"head", body]


async def test_a_lone_write_leaves_at_the_end_of_the_turn() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"data: 1\n\n")
    assert raw.writes == []
    assert transport.get_write_buffer_size() == len(b"data: 1\n\n")
    await asyncio.sleep(0)
    assert raw.writes == [b"data: 1\n\n"]
    transport.write(b"data: 2\n\n")
    await asyncio.sleep(0)
    assert raw.writes == [b"data: 1\n\n", b"data: 2\n\n"]


async def test_held_bytes_go_out_before_the_connection_ends() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert raw.calls == ["write", "close"]
    assert raw.writes == [b"last words"]
    await asyncio.sleep(0)
    assert raw.writes == [b"last words"]  # not sent twice

    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"refused")
    transport.write_eof()
    assert raw.calls == ["write", "write_eof"]

    raw = Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"dropped")
    transport.abort()
    await asyncio.sleep(0)
    assert raw.calls == ["abort"]


async def two_part_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request with a head and then a body, as our app does."""
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_the_server_sends_a_response_in_one_write() -> None:
    """uvicorn with our protocol, on a real socket: the transport under the protocol gets a
    response's head and body in one write."""
    transports: set[asyncio.WriteTransport] = set()
    guard = ConnectionGuard(ConnectionLimits(), transports)
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        two_part_app, http=guard.protocol_class(), lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        # The socket listens already: the connection waits in its backlog until uvicorn runs.
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request)
        assert await reader.readuntil(b"\r\n\r\nhello")
        [wrapper] = transports
        assert isinstance(wrapper, CoalescingTransport)
        recording = Recording(wrapper._transport)
        wrapper._transport = recording
        for _ in range(2):  # keep-alive: the next responses too
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert await reader.readexactly(5) == b"hello"
        assert len(recording.writes) == 2
        assert all(w.endswith(b"\r\n\r\nhello") for w in recording.writes)
        writer.close()
    finally:
        server.should_exit = True
        await serving
