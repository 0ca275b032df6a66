"""The asyncio client, :class:`AsyncEventoDB`, and its live :class:`AsyncSubscription`.

The same client as :mod:`eventodb.client.sync`, method for method, with the same request
shapes, retry rules and subscription bookkeeping (:mod:`eventodb.client.rpc`,
:mod:`eventodb.client.config`, :mod:`eventodb.client.sse`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from eventodb.client import rpc
from eventodb.client.config import Attempts, ClientConfig, ClientOptions
from eventodb.client.errors import EventoDBError, TransportError
from eventodb.client.models import (
    CategoryInfo,
    ConsumerGroup,
    CreatedNamespace,
    DeletedNamespace,
    Head,
    Health,
    Message,
    NamespaceInfo,
    NamespaceSummary,
    NewMessage,
    Poke,
    ReleasedNamespace,
    StreamInfo,
    WriteResult,
    new_message_id,
)
from eventodb.client.sse import EventParser, Target

T = TypeVar("T")
C = TypeVar("C")

_END = None
"""Queued after the last poke of a subscription."""


class AsyncEventoDB:
    """The asyncio EventoDB client: :class:`EventoDB`'s methods, awaited.

    Use it from one event loop. Close it (or use it as an async context manager) to release
    its connections.

    Args:
        url: the server's root URL.
        token: the namespace token; ``None`` sends no ``Authorization`` header.
        **options: timeouts, retries and pool size: see :class:`ClientConfig`.

    Example::

        async with AsyncEventoDB("http://localhost:8080", token) as db:
            await db.write("account-1", "Deposited", {"amount": 10})
    """

    def __init__(
        self,
        url: str = ClientConfig.url,
        token: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.config = ClientConfig(url=url, token=token, **options)
        self._http = httpx.AsyncClient(**self.config.http_options())

    @classmethod
    def from_env(cls, **options: Unpack[ClientOptions]) -> AsyncEventoDB:
        """A client for ``EVENTODB_URL`` (default ``http://localhost:8080``) with the token in
        ``EVENTODB_TOKEN``."""
        env = ClientConfig.from_env()
        return cls(env.url, env.token, **options)

    async def aclose(self) -> None:
        """Close the connection pool. Open subscriptions stop working."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEventoDB:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, call: rpc.Call[T]) -> T:
        body = call.body()
        attempts = Attempts(self.config, idempotent=call.idempotent)
        while True:
            try:
                response = await self._http.post(
                    "/rpc", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                delay = attempts.after_error(exc)
            else:
                retry = attempts.after_response(response)
                if retry is None:
                    return call.decode(response.json())
                delay = retry
            await asyncio.sleep(delay)

    async def _pages(self, pager: rpc.Pager[T, C]) -> AsyncIterator[T]:
        while True:
            page = await self._call(pager.call())
            for item in page:
                yield item
            if not pager.advance(page):
                return

    async def rpc(self, method: str, *args: Any) -> Any:
        """Like :meth:`EventoDB.rpc`."""
        return await self._call(rpc.raw(method, *args))

    # -- writing -----------------------------------------------------------------------------

    async def write(
        self,
        stream: str,
        type: str,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        expected_version: int | None = None,
        id: str | None = None,
    ) -> WriteResult:
        """Like :meth:`EventoDB.write`."""
        message = NewMessage(type, data, metadata, new_message_id() if id is None else id)
        return await self._call(rpc.write(stream, message, expected_version))

    async def write_message(
        self, stream: str, message: NewMessage, expected_version: int | None = None
    ) -> WriteResult:
        """Like :meth:`EventoDB.write_message`."""
        return await self._call(rpc.write(stream, message, expected_version))

    async def write_batch(
        self,
        stream: str,
        messages: Iterable[NewMessage],
        expected_version: int | None = None,
    ) -> list[WriteResult]:
        """Like :meth:`EventoDB.write_batch`."""
        results: list[WriteResult] = []
        expected = expected_version
        for message in messages:
            result = await self._call(rpc.write(stream, message, expected))
            results.append(result)
            if expected is not None:
                expected = result.position
        return results

    # -- reading -----------------------------------------------------------------------------

    async def get_stream(
        self,
        stream: str,
        *,
        position: int = 0,
        global_position: int | None = None,
        batch_size: int = 1000,
    ) -> list[Message]:
        """Like :meth:`EventoDB.get_stream`."""
        return await self._call(rpc.get_stream(stream, position, global_position, batch_size))

    def iter_stream(
        self, stream: str, *, position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[Message]:
        """Like :meth:`EventoDB.iter_stream`."""
        return self._pages(rpc.stream_pages(stream, position, batch_size))

    async def get_category(
        self,
        category: str,
        *,
        position: int = 1,
        batch_size: int = 1000,
        correlation: str | None = None,
        consumer_group: ConsumerGroup | tuple[int, int] | None = None,
    ) -> list[Message]:
        """Like :meth:`EventoDB.get_category`."""
        return await self._call(
            rpc.get_category(category, position, batch_size, correlation, consumer_group)
        )

    def iter_category(
        self,
        category: str,
        *,
        position: int = 1,
        batch_size: int = 1000,
        correlation: str | None = None,
        consumer_group: ConsumerGroup | tuple[int, int] | None = None,
    ) -> AsyncIterator[Message]:
        """Like :meth:`EventoDB.iter_category`."""
        return self._pages(
            rpc.category_pages(category, position, batch_size, correlation, consumer_group)
        )

    async def get_last(self, stream: str, *, type: str | None = None) -> Message | None:
        """Like :meth:`EventoDB.get_last`."""
        return await self._call(rpc.get_last(stream, type))

    async def stream_version(self, stream: str) -> int | None:
        """Like :meth:`EventoDB.stream_version`."""
        return await self._call(rpc.stream_version(stream))

    async def list_streams(
        self, *, prefix: str = "", cursor: str = "", limit: int = 100
    ) -> list[StreamInfo]:
        """Like :meth:`EventoDB.list_streams`."""
        return await self._call(rpc.list_streams(prefix, cursor, limit))

    def iter_streams(self, *, prefix: str = "", page_size: int = 100) -> AsyncIterator[StreamInfo]:
        """Like :meth:`EventoDB.iter_streams`."""
        return self._pages(rpc.stream_list_pages(prefix, page_size))

    async def list_categories(self) -> list[CategoryInfo]:
        """Like :meth:`EventoDB.list_categories`."""
        return await self._call(rpc.list_categories())

    async def head(self) -> Head:
        """Like :meth:`EventoDB.head`."""
        return await self._call(rpc.head())

    # -- namespaces --------------------------------------------------------------------------

    async def create_namespace(
        self, namespace: str, *, description: str = "", token: str | None = None
    ) -> CreatedNamespace:
        """Like :meth:`EventoDB.create_namespace`."""
        return await self._call(rpc.create_namespace(namespace, description, token))

    async def delete_namespace(self, namespace: str) -> DeletedNamespace:
        """Like :meth:`EventoDB.delete_namespace`."""
        return await self._call(rpc.delete_namespace(namespace))

    async def release_namespace(self, namespace: str) -> ReleasedNamespace:
        """Like :meth:`EventoDB.release_namespace`."""
        return await self._call(rpc.release_namespace(namespace))

    async def list_namespaces(self) -> list[NamespaceSummary]:
        """Like :meth:`EventoDB.list_namespaces`."""
        return await self._call(rpc.list_namespaces())

    async def namespace_info(self, namespace: str) -> NamespaceInfo:
        """Like :meth:`EventoDB.namespace_info`."""
        return await self._call(rpc.namespace_info(namespace))

    # -- server ------------------------------------------------------------------------------

    async def server_version(self) -> str:
        """Like :meth:`EventoDB.server_version`."""
        return await self._call(rpc.server_version())

    async def health(self) -> Health:
        """Like :meth:`EventoDB.health`."""
        return await self._call(rpc.health())

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe_stream(
        self, stream: str, *, position: int = 0, reconnect: bool = True
    ) -> AsyncSubscription:
        """Like :meth:`EventoDB.subscribe_stream`."""
        target = Target("stream", stream, position)
        return AsyncSubscription(self._http, self.config, target, reconnect)

    def subscribe_category(
        self,
        category: str,
        *,
        position: int = 1,
        consumer_group: ConsumerGroup | tuple[int, int] | None = None,
        reconnect: bool = True,
    ) -> AsyncSubscription:
        """Like :meth:`EventoDB.subscribe_category`."""
        group = None if consumer_group is None else ConsumerGroup(*consumer_group)
        target = Target("category", category, position, group)
        return AsyncSubscription(self._http, self.config, target, reconnect)

    def subscribe_all(self, *, position: int = 1, reconnect: bool = True) -> AsyncSubscription:
        """Like :meth:`EventoDB.subscribe_all`."""
        return AsyncSubscription(self._http, self.config, Target("all", "", position), reconnect)


class AsyncSubscription:
    """A live subscription: ``async for`` over it to receive :class:`Poke` objects.

    It connects when entered as an async context manager (or at the first iteration); once
    :meth:`connect` has returned, every message written afterwards will be poked. A background
    task reads the connection and re-opens it when it is lost — a server restart, a silent
    network (no heartbeat within ``heartbeat_timeout``) — from the position after the last
    poke, so no message is missed and none is poked twice. At most ``buffer`` pokes wait for
    the iteration; beyond that the task stops reading (the server then holds them back).

    Raises (from the iteration):
        AuthError, InvalidRequest, ...: the server refused the subscription.
        TransportError: the first connection failed after the client's retries, or the
            connection dropped and ``reconnect`` is off.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: ClientConfig,
        target: Target,
        reconnect: bool,
        buffer: int = 1000,
    ) -> None:
        self._http = http
        self._config = config
        self._wire = target
        self._delivered = Target(target.kind, target.name, target.position, target.group)
        self._reconnect = reconnect
        self._queue: asyncio.Queue[Poke | BaseException | None] = asyncio.Queue(buffer)
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0
        """How many times the connection was re-opened."""

    @property
    def position(self) -> int:
        """Where the subscription would resume: the stream position (stream subscriptions) or
        the global position (the others) after the last poke delivered."""
        return self._delivered.position

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called or the subscription ended."""
        return self._closed

    async def connect(self) -> AsyncSubscription:
        """Open the connection if it is not open (the client's retry rules apply)."""
        if self._reader is None and not self._closed:
            response = await self._open(self._config)
            self._reader = asyncio.create_task(self._read(response))
        return self

    async def __aenter__(self) -> AsyncSubscription:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Poke:
        await self.connect()
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._closed = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._closed = True
            raise item
        self._delivered.delivered(item)
        return item

    async def aclose(self) -> None:
        """End the subscription and release its connection; the iteration stops."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_END)

    async def _open(self, config: ClientConfig) -> httpx.Response:
        attempts = Attempts(config, idempotent=True)
        headers = {"Accept": "text/event-stream"}
        while True:
            request = self._http.build_request(
                "GET",
                "/subscribe",
                params=self._wire.params(),
                headers=headers,
                timeout=self._config.subscription_timeout(),
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                delay = attempts.after_error(exc)
            else:
                if response.is_success:
                    return response
                await response.aread()
                await response.aclose()
                delay = attempts.after_response(response) or 0.0  # never None: not a success
            await asyncio.sleep(delay)

    async def _read(self, response: httpx.Response) -> None:
        """The background task: queue the pokes, re-open lost connections."""
        try:
            while True:
                lost: httpx.HTTPError | None = None
                parser = EventParser()
                try:
                    async for line in response.aiter_lines():
                        poke = parser.feed(line)
                        if poke is not None:
                            self._wire.delivered(poke)
                            await self._queue.put(poke)
                except httpx.HTTPError as exc:
                    lost = exc
                finally:
                    with contextlib.suppress(httpx.HTTPError, OSError):
                        await response.aclose()
                if not self._reconnect:
                    if lost is not None:
                        error = TransportError(f"subscription connection lost: {lost}")
                        error.__cause__ = lost
                        await self._queue.put(error)
                    await self._queue.put(_END)
                    return
                response = await self._open(self._config.persistent())
                self.reconnects += 1
        except (EventoDBError, ValueError) as exc:
            await self._queue.put(exc)
