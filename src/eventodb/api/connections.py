"""Connection-level protection of the HTTP server: head size, read timeouts, a connection cap,
and half-closed clients (docs/DESIGN.md, "Connection limits").

uvicorn's httptools protocol has none of these but the idle keep-alive timeout: a client may
send an endless header (the parser accumulates it, at a cost that grows with its square), send
a request one byte per second, or open connections until the process runs out of descriptors.
:class:`GuardedHttpProtocol` subclasses it and checks the bytes *before* the parser sees them;
one :class:`ConnectionGuard` per server holds the open connections and enforces the timeouts
from a single periodic sweep, so a request costs a few attribute updates and no timer.

Relies on uvicorn's ``HttpToolsProtocol`` (pinned in pyproject.toml): besides the asyncio and
httptools callback methods it overrides ``on_response_complete``, uvicorn's hook for "response
sent", and reads ``cycle.response_started``; both unchanged from 0.30 to 0.54.
"""

from __future__ import annotations

import asyncio
import http
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from eventodb import __version__
from eventodb.api.coalesce import CoalescingTransport
from eventodb.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
)
from eventodb.core import jsoncodec
from eventodb.core.errors import EventoDBError, InvalidArgument, ServerBusy
from eventodb.core.tasks import cancel_and_wait

log = logging.getLogger("eventodb.http")

LINGER_SECONDS = 2.0
"""After a refusal, how long input is still read and dropped, so that the client reads the
answer instead of a connection reset."""
LINGER_BYTES = 1024 * 1024
"""Most input dropped while lingering; a client sending more is cut off at once."""
BODY_GRACE_BYTES = 1024
"""A request body earns one more second of ``body_timeout`` per this many bytes received."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Limits of one server (flags ``--max-header-bytes`` ... ``--max-connections``)."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """Request line plus headers, in bytes as received (line ends included)."""
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    """Seconds from a connection's start, or the first byte of a request on a kept-alive
    connection, until its headers are complete."""
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    """Seconds a request body may stall; every :data:`BODY_GRACE_BYTES` received earn one
    second more (up to this value), time the server spends not reading does not count."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Open connections; one more is answered 503 and closed."""

    @property
    def sweep_interval(self) -> float:
        """How often timeouts are checked: every second, finer for timeouts under 4 s."""
        return min(1.0, self.header_timeout / 4, self.body_timeout / 4)


def refusal(error: EventoDBError, status: int, *extra: tuple[str, str]) -> bytes:
    """A complete ``Connection: close`` response with the error envelope of ``error``."""
    body = jsoncodec.dumps(error.envelope())
    head = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        f"server: EventoDB/{__version__}",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_TOO_LARGE = refusal(InvalidArgument("Request header fields too large"), 431)
_HEADER_TIMEOUT = refusal(InvalidArgument("Request header timeout"), 408)
_TOO_MANY = refusal(ServerBusy("Too many open connections"), 503, ("retry-after", "1"))


class ConnectionGuard:
    """The open connections of one server and the sweep that enforces their timeouts.

    Usage: pass :meth:`protocol_class` as uvicorn's ``http`` protocol, ``start()`` once the loop
    runs, ``await stop()`` at shutdown.
    """

    def __init__(
        self, limits: ConnectionLimits, transports: set[asyncio.WriteTransport] | None = None
    ) -> None:
        self.limits = limits
        self.transports: set[asyncio.WriteTransport] = (
            transports if transports is not None else set()
        )
        """Every open connection's transport, refused ones included (for shutdown)."""
        self.open: set[GuardedHttpProtocol] = set()
        self.lingering: set[GuardedHttpProtocol] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def protocol_class(self) -> type[GuardedHttpProtocol]:
        """A protocol class bound to this guard (uvicorn instantiates it per connection)."""
        return type("BoundGuardedHttpProtocol", (GuardedHttpProtocol,), {"guard": self})

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._sweep(), name="eventodb-connection-guard")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.limits.sweep_interval
        last = loop.time()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            self.check(now, now - last)
            last = now

    def check(self, now: float, elapsed: float) -> None:
        """Enforce the timeouts at ``now``, ``elapsed`` seconds after the previous check."""
        limits = self.limits
        for conn in list(self.open):
            if conn.in_head:
                since = conn.head_since
                # Not while a response is still being sent (pipelining, an SSE stream).
                if since is not None and now - since > limits.header_timeout and conn.idle:
                    conn.refuse(_HEADER_TIMEOUT, "request headers too slow")
            elif conn.in_body:
                conn.check_body(elapsed, limits.body_timeout)
        for conn in list(self.lingering):
            if now > conn.linger_until:
                conn.abort()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of its :class:`ConnectionGuard`."""

    guard: ConnectionGuard
    """Set on the class made by :meth:`ConnectionGuard.protocol_class`."""

    in_head = True
    """Between requests or inside a request line and headers (before the parser is done)."""
    head_since: float | None = None
    """When the current head started (``None``: idle after a response, no byte yet)."""
    in_body = False
    """Headers are complete and the request body is not."""
    linger_until = 0.0

    def connection_made(self, transport: Any) -> None:
        guard = self.guard
        loop = guard.loop or asyncio.get_running_loop()
        transport = CoalescingTransport(transport, loop)  # a response's head and body: one send
        self._raw: asyncio.Transport = transport
        guard.transports.add(transport)
        super().connection_made(transport)
        self._head_bytes = 0
        self._heads = 0
        self._responses = 0
        self._body_bytes = 0
        self._body_counted = 0
        self._body_budget = 0.0
        self._refused = False
        self._dropped = 0
        self._eof = False
        self.head_since = loop.time()  # a new connection owes us a request line in time
        if len(guard.open) >= guard.limits.max_connections:
            log.warning(
                "refusing a connection: %d connections open (--max-connections)", len(guard.open)
            )
            self.refuse(_TOO_MANY, None)
            return
        guard.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        guard = self.guard
        guard.open.discard(self)
        guard.lingering.discard(self)
        guard.transports.discard(self._raw)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.abort()
            return
        if not self.in_head:
            if self.in_body:
                self._body_bytes += len(data)
            super().data_received(data)
            return
        if self.head_since is None:
            self.head_since = self._now()
        heads = self._heads
        room = self.guard.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            super().data_received(data)
            if self.in_head and self._heads == heads:
                self._head_bytes += len(data)  # every byte belonged to the unfinished head
            return
        # Only ``room`` more bytes may belong to this head: does it end within them?
        if room > 0:
            super().data_received(data[:room])
        if self._heads == heads:
            self.refuse(_TOO_LARGE, "request headers too large")
            return
        if not self._raw.is_closing():
            if self.in_body:
                self._body_bytes += len(data) - room
            super().data_received(data[room:])

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio allows a bool
        """The client shut down its sending side.

        If it did so after sending a whole request that is not answered yet, it still gets the
        answer: the connection stays open for writing and closes once the answers are sent.
        Otherwise — between requests, in the middle of one, or while a response is streaming
        (an SSE client that leaves sends its FIN this way) — the client is gone, as uvicorn
        would conclude.
        """
        if self._refused or self.in_body or self.idle:
            return None
        # uvicorn's request cycle says whether the current response has begun (unknown: yes).
        if getattr(getattr(self, "cycle", None), "response_started", True):
            return None
        self._eof = True
        return True

    # -- httptools parser callbacks (the parser calls them on this object) --------------------

    def on_headers_complete(self) -> None:
        self._heads += 1
        self.in_head = False
        self.head_since = None
        self._head_bytes = 0
        self.in_body = True
        self._body_budget = self.guard.limits.body_timeout
        self._body_bytes = self._body_counted = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_body = False
        self.in_head = True
        super().on_message_complete()

    # -- uvicorn's hook: the response has been sent ------------------------------------------

    def on_response_complete(self) -> None:
        self._responses += 1
        super().on_response_complete()
        if self._eof and self._responses == self._heads and not self._raw.is_closing():
            self._raw.close()

    # -- enforcement ---------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Every request received so far has been answered."""
        return self._responses >= self._heads

    def _now(self) -> float:
        loop = self.guard.loop or asyncio.get_running_loop()
        return loop.time()

    def refuse(self, response: bytes, reason: str | None) -> None:
        """Answer ``response`` and close: stop parsing, send it, then drop input for a while."""
        if reason is not None:
            log.info("closing a connection from %s: %s", _peer(self._raw), reason)
        self._refused = True
        self.in_head = self.in_body = False
        self.guard.open.discard(self)
        transport = self._raw
        if transport.is_closing():
            return
        if self._responses < self._heads:
            transport.close()  # a response is in progress: nothing else may be written
            return
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        self.linger_until = self._now() + LINGER_SECONDS
        self.guard.lingering.add(self)

    def check_body(self, elapsed: float, body_timeout: float) -> None:
        """One sweep for a request whose body is still arriving."""
        transport = self._raw
        if not transport.is_reading():
            return  # the server is not reading (its buffer is full): not the client's fault
        earned = (self._body_bytes - self._body_counted) / BODY_GRACE_BYTES
        self._body_counted = self._body_bytes
        self._body_budget = min(body_timeout, self._body_budget + earned) - elapsed
        if self._body_budget <= 0:
            log.info("closing a connection from %s: request body too slow", _peer(transport))
            self.guard.open.discard(self)
            self.in_body = False
            transport.close()

    def abort(self) -> None:
        self.guard.lingering.discard(self)
        self._raw.abort()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "?"
