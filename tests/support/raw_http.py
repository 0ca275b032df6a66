"""Requests over a bare socket, for what httpx refuses to send or would normalise (header
values such as ``Bearer `` or with trailing blanks, paths with ``..``), and for volume
(:class:`KeptAliveConnection`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence

from tests.support.server import Server


def raw_reply(
    server: Server, path: str, body: bytes, headers: list[str], *, method: str = "POST"
) -> bytes:
    """The whole reply, status line and headers included, to one request on its own
    connection."""
    head = [f"{method} {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
    head += headers
    head += ["Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall("\r\n".join(head).encode("latin-1") + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def raw_post(
    server: Server, path: str, body: bytes, headers: list[str], *, method: str = "POST"
) -> tuple[int, bytes]:
    """(status, body) of a request sent as :func:`raw_reply` sends it."""
    reply = raw_reply(server, path, body, headers, method=method)
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


class KeptAliveConnection:
    """One keep-alive HTTP/1.1 connection sending requests exactly as given, for tests that
    send thousands of them: through httpx, the test process's own CPU per request, not the
    server, set the pace of those tests.

    Reads the whole answer, except a live event stream (``/subscribe``'s 200), whose status is
    all a caller gets; that connection is then closed, as is one the server marks
    ``Connection: close`` and one a request failed on (timeout, connection lost). The next
    request opens a new one. Unlike httpx it does not resend a request on a kept-alive
    connection the server closed meanwhile (the server keeps idle connections for minutes),
    and it expects every answer to have a body (no ``HEAD``, no 204 or 304).
    """

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self._port = port
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: Sequence[str] = ()
    ) -> tuple[int, bytes]:
        """(status, body) of one request; the body is empty for an event stream left open."""
        try:
            return await asyncio.wait_for(
                self._exchange(method, target, body, headers), self._timeout
            )
        except BaseException:
            await self.close()  # half-read: the next answer would be this one's rest
            raise

    async def _exchange(
        self, method: str, target: str, body: bytes, headers: Sequence[str]
    ) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        head = [f"{method} {target} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join([*head, *headers, "", ""])).encode("latin-1") + body)
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError(f"the server closed the connection: {method} {target}")
        status = int(status_line.split()[1])
        fields: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        if status == 200 and target.startswith("/subscribe"):
            await self.close()  # a live event stream: its status is the answer
            return status, b""
        if "content-length" in fields:
            content = await reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            content = await _read_chunked(reader)
        else:  # the body ends with the connection
            content = await reader.read()
            fields["connection"] = "close"
        if fields.get("connection") == "close":
            await self.close()
        return status, content

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readline()
    while await reader.readline() not in (b"\r\n", b""):  # trailers
        pass
    return b"".join(parts)
