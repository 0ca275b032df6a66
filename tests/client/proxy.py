"""A TCP proxy in front of the real server that misbehaves on request, to test the client's
retries and reconnects against real connection failures.

It runs its own event loop in a thread, so blocking clients can use it as well as async ones.
Failures are armed by the test and consumed by the next matching traffic:

* :meth:`Proxy.cut_responses`: the server's next answer is swallowed and both connections are
  closed — the request was processed, the client never hears about it.
* :meth:`Proxy.refuse_requests`: the next request is answered ``503`` by the proxy and never
  reaches the server.
* :meth:`Proxy.blackhole`: the connections open now silently stop delivering the server's
  bytes (a half-dead network path); new connections work.
* :meth:`Proxy.drop`: the connections open now are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from tests.support.ports import free_port

R = TypeVar("R")

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 4\r\nConnection: close\r\n\r\nbusy"
)


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.blackholed = False

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to the server at ``127.0.0.1:<target_port>``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cut = 0
        """Answers swallowed so far."""
        self.refused = 0
        """Requests refused so far."""
        self._cuts = 0
        self._refusals = 0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", self.port), self._loop
        ).result(10)

    def cut_responses(self, count: int = 1) -> None:
        def apply() -> None:
            self._cuts += count

        self._in_loop(apply)

    def refuse_requests(self, count: int = 1) -> None:
        def apply() -> None:
            self._refusals += count

        self._in_loop(apply)

    def blackhole(self) -> int:
        """Blackhole the open connections; how many there were."""

        def apply() -> int:
            for link in self._links:
                link.blackholed = True
            return len(self._links)

        return self._in_loop(apply)

    def drop(self) -> int:
        """Close the open connections; how many there were."""

        def apply() -> int:
            links = list(self._links)
            for link in links:
                link.close()
            return len(links)

        return self._in_loop(apply)

    def close(self) -> None:
        self.drop()

        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _in_loop(self, action: Callable[[], R]) -> R:
        async def run() -> R:
            return action()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._upstream(reader, link), self._downstream(up_reader, link))
        finally:
            self._links.discard(link)
            link.close()

    async def _upstream(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while data := await reader.read(65536):
                if self._refusals > 0:
                    self._refusals -= 1
                    self.refused += 1
                    link.client.write(_REFUSAL)
                    with contextlib.suppress(OSError):
                        await link.client.drain()
                    break
                link.server.write(data)
                await link.server.drain()
        except OSError:
            pass
        finally:
            link.close()

    async def _downstream(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while data := await reader.read(65536):
                if link.blackholed:
                    continue
                if self._cuts > 0:
                    self._cuts -= 1
                    self.cut += 1
                    break
                link.client.write(data)
                await link.client.drain()
        except OSError:
            pass
        finally:
            link.close()
