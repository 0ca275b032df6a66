"""ASGI plumbing written once for every endpoint: the type aliases, reading a request body,
sending JSON, plain text and event streams, and the headers responses share.

Every handler answers through a :class:`ResponseSend`, which adds the headers every response
of its request carries (``X-Request-Id``, and ``X-EventoDB-Token`` for a namespace created on
first use) and records the status sent, so the app knows what to log and whether a response
has started when something fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from eventodb import __version__
from eventodb.core import jsoncodec
from eventodb.core.errors import EventoDBError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

SERVER = (b"server", f"EventoDB/{__version__}".encode())
JSON = (b"content-type", b"application/json")
PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")
EVENT_STREAM: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"connection", b"keep-alive"),
]
"""The headers of every event stream (``/subscribe``'s and ``/import``'s)."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first request header called ``name`` (lower case), or ``None``."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def declares_more_than(scope: Scope, limit: int) -> bool:
    """Whether the request's ``Content-Length`` announces a body above ``limit`` bytes."""
    length = header(scope, b"content-length")
    return length is not None and length.isdigit() and int(length) > limit


class ClientGone(Exception):
    """The client disconnected while its request body was still arriving."""


class BodyTooLarge(Exception):
    """The request body passed the size limit (the rest was not read)."""


class Body:
    """A request body, read chunk by chunk within a size limit.

    Args:
        max_bytes: the most body bytes read; more raise :class:`BodyTooLarge`.
    """

    __slots__ = ("_max_bytes", "_receive", "ended", "size")

    def __init__(self, receive: Receive, max_bytes: int) -> None:
        self._receive = receive
        self._max_bytes = max_bytes
        self.size = 0
        self.ended = False
        """True once the last chunk arrived (or the client went away)."""

    async def chunk(self) -> bytes:
        """The next chunk (possibly empty).

        Raises:
            ClientGone: the client disconnected.
            BodyTooLarge: the body passed the limit with this chunk.
        """
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.ended = True
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        self.ended = not message.get("more_body", False)
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise BodyTooLarge
        return chunk

    async def drain(self) -> None:
        """Read and drop the rest (up to the size limit), so that a client still uploading
        reads the answer instead of seeing its connection reset."""
        try:
            while not self.ended:
                await self.chunk()
        except (ClientGone, BodyTooLarge):
            pass


class ResponseSend:
    """The ASGI ``send`` of one request, adding the request's own headers and recording what
    was sent; use it wherever a ``send`` is expected.

    Args:
        headers: added to the response's headers, whichever handler answers; the list may
            grow until the response starts (a token minted while authenticating).
    """

    __slots__ = ("_send", "headers", "status")

    def __init__(self, send: Send, headers: Headers) -> None:
        self._send = send
        self.headers = headers
        self.status: int | None = None
        """The status sent; ``None`` while the response has not started."""

    @property
    def started(self) -> bool:
        return self.status is not None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), *self.headers]
        await self._send(message)

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """A whole response: its start (``headers`` and the request's) and its one body."""
        self.status = status
        headers += self.headers
        send = self._send
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def json(self, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
        """A JSON response (``body`` already encoded)."""
        await self.respond(
            status, [JSON, (b"content-length", b"%d" % len(body)), SERVER, *extra], body
        )

    async def error(self, error: EventoDBError, status: int | None = None) -> int:
        """The error envelope of ``error``, with the status of its code unless ``status`` is
        given.

        Returns:
            The status sent.
        """
        status = status or error.http_status
        await self.json(status, jsoncodec.dumps(error.envelope()))
        return status


async def send_text(send: Send, status: int, text: str) -> None:
    """A plain-text response (UTF-8)."""
    body = text.encode("utf-8")
    headers = [PLAIN_TEXT, (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def start_event_stream(send: Send, *extra: tuple[bytes, bytes]) -> None:
    """Answer 200 with an event stream; its events follow as :func:`send_chunk` calls."""
    await send({"type": "http.response.start", "status": 200, "headers": [*EVENT_STREAM, *extra]})


async def send_chunk(send: Send, body: bytes, *, more: bool = True) -> None:
    """A piece of a streamed body; ``more=False`` ends it."""
    await send({"type": "http.response.body", "body": body, "more_body": more})
