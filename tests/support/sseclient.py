"""A minimal SSE client over a raw asyncio socket, so tests see the exact bytes on the wire.

It speaks just enough HTTP/1.1 for ``GET /subscribe``: status line, headers, chunked or
content-length bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass(frozen=True)
class Poke:
    stream: str
    position: int
    global_position: int


@dataclass
class SSEResponse:
    status: int
    headers: list[tuple[str, str]]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    chunked: bool
    raw: bytearray = field(default_factory=bytearray)
    """Every body byte received so far (de-chunked)."""
    _buffer: bytearray = field(default_factory=bytearray)
    _ended: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    async def body(self) -> bytes:
        """The whole body of a non-streaming response."""
        length = self.header("content-length")
        if length is not None:
            return await self.reader.readexactly(int(length))
        chunks = bytearray()
        while (chunk := await self._chunk()) is not None:
            chunks += chunk
        return bytes(chunks)

    async def _chunk(self) -> bytes | None:
        """The next de-chunked piece of body; ``None`` at the end of the body."""
        if self._ended:
            return None
        if not self.chunked:
            data = await self.reader.read(65536)
            if not data:
                self._ended = True
                return None
            return data
        size_line = await self.reader.readline()
        if not size_line:
            self._ended = True
            return None
        size = int(size_line.strip().split(b";")[0], 16)
        if size == 0:
            await self.reader.readline()
            self._ended = True
            return None
        data = await self.reader.readexactly(size)
        await self.reader.readexactly(2)
        return data

    async def next_block(self) -> bytes | None:
        """The next event block (text between blank lines, without them); ``None`` at the end."""
        while True:
            end = self._buffer.find(b"\n\n")
            if end >= 0:
                block = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return block
            chunk = await self._chunk()
            if chunk is None:
                return None
            self.raw += chunk
            self._buffer += chunk

    async def next_poke(self) -> Poke | None:
        """The next poke, skipping comments; ``None`` when the stream ends."""
        while True:
            block = await self.next_block()
            if block is None:
                return None
            poke = parse_poke(block)
            if poke is not None:
                return poke

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def parse_poke(block: bytes) -> Poke | None:
    """A poke from an event block; ``None`` for a comment. Asserts the layout of docs/API.md."""
    if block.startswith(b":"):
        return None
    lines = block.split(b"\n")
    assert len(lines) == 2, block
    assert lines[0] == b"event: poke", block
    assert lines[1].startswith(b"data: {"), block
    data: dict[str, Any] = json.loads(lines[1][len(b"data: ") :])
    assert list(data) == ["stream", "position", "globalPosition"], data
    return Poke(data["stream"], data["position"], data["globalPosition"])


async def subscribe(
    port: int,
    params: dict[str, Any] | str,
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    rcvbuf: int | None = None,
    wait_ready: bool = True,
) -> SSEResponse:
    """Open ``GET /subscribe?<params>`` and read the response head.

    With ``wait_ready`` (and status 200) also consumes the ``: ready`` comment, so the caller
    knows the subscription is registered.
    """
    if isinstance(params, dict):
        query = dict(params)
        if token is not None:
            query["token"] = token
        query_string = urlencode(query)
    else:
        query_string = params
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    limit = 64 * 1024 if rcvbuf is None else max(rcvbuf, 1024)
    reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        f"GET /subscribe?{query_string} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Accept: text/event-stream\r\n{extra}\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split(b" ")[1])
    head: list[tuple[str, str]] = []
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        head.append((name.strip(), value.strip()))
    chunked = any(k.lower() == "transfer-encoding" and v.lower() == "chunked" for k, v in head)
    response = SSEResponse(status, head, reader, writer, chunked)
    if wait_ready and status == 200:
        block = await response.next_block()
        assert block == b": ready", block
    return response


class Collector:
    """Reads pokes in the background, remembering when each arrived."""

    def __init__(self, response: SSEResponse) -> None:
        self.response = response
        self.pokes: list[Poke] = []
        self.arrived: dict[tuple[str, int], float] = {}
        self.ended = False
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (poke := await self.response.next_poke()) is not None:
                self.pokes.append(poke)
                self.arrived.setdefault((poke.stream, poke.position), loop.time())
                self._changed.set()
        finally:
            self.ended = True
            self._changed.set()

    async def wait_for(self, done: Callable[[Collector], bool], within: float = 10.0) -> None:
        """Wait until ``done(self)`` holds; fails the test after ``within`` seconds."""
        async with asyncio.timeout(within):
            while not done(self):
                if self._task.done():
                    self._task.result()  # surface a parse error
                    raise AssertionError(f"stream ended early; got {len(self.pokes)} pokes")
                self._changed.clear()
                await self._changed.wait()

    def high_water(self) -> dict[str, int]:
        """Highest position poked per stream."""
        marks: dict[str, int] = {}
        for p in self.pokes:
            if p.position > marks.get(p.stream, -1):
                marks[p.stream] = p.position
        return marks

    def covers(self, stream: str, position: int) -> bool:
        """Whether a poke for ``stream`` at ``position`` or later arrived."""
        return self.high_water().get(stream, -1) >= position

    def covers_all(self, messages: Iterable[tuple[str, int, int]]) -> bool:
        marks = self.high_water()
        return all(marks.get(stream, -1) >= position for stream, position, _ in messages)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, asyncio.IncompleteReadError):
            await self._task
        await self.response.aclose()
