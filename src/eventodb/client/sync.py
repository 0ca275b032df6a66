"""The blocking client, :class:`EventoDB`, and its live :class:`Subscription`.

:mod:`eventodb.client.aio` is the same client for asyncio, method for method; the request
shapes, retry rules and subscription bookkeeping they share live in :mod:`eventodb.client.rpc`,
:mod:`eventodb.client.config` and :mod:`eventodb.client.sse`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
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


class EventoDB:
    """A blocking EventoDB client: one namespace (the token's), one connection pool.

    Safe to share between threads. Close it (or use it as a context manager) to release its
    connections.

    Args:
        url: the server's root URL.
        token: the namespace token; ``None`` sends no ``Authorization`` header.
        **options: timeouts, retries and pool size: see :class:`ClientConfig`.

    Example::

        with EventoDB("http://localhost:8080", token) as db:
            db.write("account-1", "Deposited", {"amount": 10})
    """

    def __init__(
        self,
        url: str = ClientConfig.url,
        token: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.config = ClientConfig(url=url, token=token, **options)
        self._http = httpx.Client(**self.config.http_options())

    @classmethod
    def from_env(cls, **options: Unpack[ClientOptions]) -> EventoDB:
        """A client for ``EVENTODB_URL`` (default ``http://localhost:8080``) with the token in
        ``EVENTODB_TOKEN``."""
        env = ClientConfig.from_env()
        return cls(env.url, env.token, **options)

    def close(self) -> None:
        """Close the connection pool. Open subscriptions stop working."""
        self._http.close()

    def __enter__(self) -> EventoDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _call(self, call: rpc.Call[T]) -> T:
        body = call.body()
        attempts = Attempts(self.config, idempotent=call.idempotent)
        while True:
            try:
                response = self._http.post(
                    "/rpc", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                delay = attempts.after_error(exc)
            else:
                retry = attempts.after_response(response)
                if retry is None:
                    return call.decode(response.json())
                delay = retry
            time.sleep(delay)

    def _pages(self, pager: rpc.Pager[T, C]) -> Iterator[T]:
        while True:
            page = self._call(pager.call())
            yield from page
            if not pager.advance(page):
                return

    def rpc(self, method: str, *args: Any) -> Any:
        """Call any RPC method and return its JSON result as is (for methods newer than this
        client). Resent after a lost answer only when ``method`` only reads."""
        return self._call(rpc.raw(method, *args))

    # -- writing -----------------------------------------------------------------------------

    def write(
        self,
        stream: str,
        type: str,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        expected_version: int | None = None,
        id: str | None = None,
    ) -> WriteResult:
        """Append a message to a stream.

        The message id is chosen here (a UUIDv7, unless ``id`` is given) before anything is
        sent, so when the connection drops after the server stored the message, the automatic
        retry is answered with the stored message's positions instead of writing it twice.

        Args:
            stream: the stream name (``account-123``).
            type: the message type.
            data: a JSON object.
            metadata: a JSON object, or ``None``.
            expected_version: write only if the stream's last position is this (``-1``: only
                if the stream is empty).
            id: the message id (any UUID spelling).

        Raises:
            ExpectedVersionError: the stream is at another version; nothing was written.
            DuplicateMessageId: ``id`` belongs to a different message.
            InvalidRequest: a name, type or payload breaks the server's rules.
        """
        message = NewMessage(type, data, metadata, new_message_id() if id is None else id)
        return self._call(rpc.write(stream, message, expected_version))

    def write_message(
        self, stream: str, message: NewMessage, expected_version: int | None = None
    ) -> WriteResult:
        """Append a prepared :class:`NewMessage` (its id was fixed when it was created, so
        calling this again with the same object is a harmless retry)."""
        return self._call(rpc.write(stream, message, expected_version))

    def write_batch(
        self,
        stream: str,
        messages: Iterable[NewMessage],
        expected_version: int | None = None,
    ) -> list[WriteResult]:
        """Append several messages to one stream, in order.

        Not a transaction: if it fails in the middle, the earlier messages stay written.
        Calling it again with the same :class:`NewMessage` objects is safe: the ones already
        stored are recognised by their ids and not written again.

        Args:
            expected_version: the stream's version before the first message; each following
                message then expects the position of the one before it, so a concurrent writer
                makes the batch stop with :class:`ExpectedVersionError`.
        """
        results: list[WriteResult] = []
        expected = expected_version
        for message in messages:
            result = self._call(rpc.write(stream, message, expected))
            results.append(result)
            if expected is not None:
                expected = result.position
        return results

    # -- reading -----------------------------------------------------------------------------

    def get_stream(
        self,
        stream: str,
        *,
        position: int = 0,
        global_position: int | None = None,
        batch_size: int = 1000,
    ) -> list[Message]:
        """One page of a stream's messages, from ``position`` (or, when given, from
        ``global_position``), at most ``batch_size`` of them (``-1``: all)."""
        return self._call(rpc.get_stream(stream, position, global_position, batch_size))

    def iter_stream(
        self, stream: str, *, position: int = 0, batch_size: int = 1000
    ) -> Iterator[Message]:
        """Every message of a stream from ``position`` on, fetched ``batch_size`` at a time as
        the iteration proceeds."""
        return self._pages(rpc.stream_pages(stream, position, batch_size))

    def get_category(
        self,
        category: str,
        *,
        position: int = 1,
        batch_size: int = 1000,
        correlation: str | None = None,
        consumer_group: ConsumerGroup | tuple[int, int] | None = None,
    ) -> list[Message]:
        """One page of a category's messages (``""``: every message of the namespace) from
        global position ``position``, in global order.

        Args:
            correlation: keep only messages whose ``metadata.correlationStreamName`` is in this
                category.
            consumer_group: keep only the messages of this member, as ``(member, size)``.
        """
        return self._call(
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
    ) -> Iterator[Message]:
        """Every message of a category from global position ``position`` on, fetched
        ``batch_size`` at a time (filters as in :meth:`get_category`)."""
        return self._pages(
            rpc.category_pages(category, position, batch_size, correlation, consumer_group)
        )

    def get_last(self, stream: str, *, type: str | None = None) -> Message | None:
        """The stream's last message (of ``type``, when given), or ``None``."""
        return self._call(rpc.get_last(stream, type))

    def stream_version(self, stream: str) -> int | None:
        """The position of the stream's last message; ``None`` when it has none."""
        return self._call(rpc.stream_version(stream))

    def list_streams(
        self, *, prefix: str = "", cursor: str = "", limit: int = 100
    ) -> list[StreamInfo]:
        """One page of the namespace's streams whose names start with ``prefix``, in name
        order, after ``cursor`` (pass the last name of a page to get the next one)."""
        return self._call(rpc.list_streams(prefix, cursor, limit))

    def iter_streams(self, *, prefix: str = "", page_size: int = 100) -> Iterator[StreamInfo]:
        """Every stream whose name starts with ``prefix``, in name order."""
        return self._pages(rpc.stream_list_pages(prefix, page_size))

    def list_categories(self) -> list[CategoryInfo]:
        """The namespace's categories with their stream and message counts."""
        return self._call(rpc.list_categories())

    def head(self) -> Head:
        """Where the namespace's global order stands: read up to ``head().global_position`` and
        nothing can still appear below what you read (docs/API.md, ``ns.head``)."""
        return self._call(rpc.head())

    # -- namespaces --------------------------------------------------------------------------

    def create_namespace(
        self, namespace: str, *, description: str = "", token: str | None = None
    ) -> CreatedNamespace:
        """Create a namespace (needs the ``default`` namespace's token).

        Args:
            token: the new namespace's token (``ns_<base64url id>_<64 hex>``); by default the
                server makes one. The answer is the only place it is shown.

        Raises:
            NamespaceExists: the id is taken.
            AuthUnauthorized: the client's token is not the admin token.
        """
        return self._call(rpc.create_namespace(namespace, description, token))

    def delete_namespace(self, namespace: str) -> DeletedNamespace:
        """Delete a namespace and all its messages (admin token, or the namespace's own).

        Raises:
            NamespaceNotFound: there is no such namespace.
        """
        return self._call(rpc.delete_namespace(namespace))

    def release_namespace(self, namespace: str) -> ReleasedNamespace:
        """Unregister a namespace and keep its storage (Postgres; admin token, or its own).

        Its token stops working; the schema and its messages stay, so SQL clients of an adopted
        Message DB schema carry on and ``eventodb adopt`` can register it again.

        Raises:
            NamespaceNotFound: there is no such namespace.
            InvalidRequest: the server's backend keeps no storage apart from its registry
                (SQLite, memory): use :meth:`delete_namespace`.
        """
        return self._call(rpc.release_namespace(namespace))

    def list_namespaces(self) -> list[NamespaceSummary]:
        """Every namespace, newest first (needs the admin token)."""
        return self._call(rpc.list_namespaces())

    def namespace_info(self, namespace: str) -> NamespaceInfo:
        """Counts and times of a namespace (admin token, or the namespace's own).

        Raises:
            NamespaceNotFound: there is no such namespace.
        """
        return self._call(rpc.namespace_info(namespace))

    # -- server ------------------------------------------------------------------------------

    def server_version(self) -> str:
        """The server's version (``0.7.0``)."""
        return self._call(rpc.server_version())

    def health(self) -> Health:
        """The server's health, backend and open connections."""
        return self._call(rpc.health())

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe_stream(
        self, stream: str, *, position: int = 0, reconnect: bool = True
    ) -> Subscription:
        """Pokes for every message of a stream from ``position`` (existing ones first).

        Args:
            reconnect: when the connection drops, re-open it from the position after the last
                poke (forever, with backoff); ``False`` ends the iteration instead.
        """
        return Subscription(self._http, self.config, Target("stream", stream, position), reconnect)

    def subscribe_category(
        self,
        category: str,
        *,
        position: int = 1,
        consumer_group: ConsumerGroup | tuple[int, int] | None = None,
        reconnect: bool = True,
    ) -> Subscription:
        """Pokes for every message of a category from global position ``position`` (existing
        ones first), only those of one member when ``consumer_group`` is given."""
        group = None if consumer_group is None else ConsumerGroup(*consumer_group)
        target = Target("category", category, position, group)
        return Subscription(self._http, self.config, target, reconnect)

    def subscribe_all(self, *, position: int = 1, reconnect: bool = True) -> Subscription:
        """Pokes for every message of the namespace from global position ``position``."""
        return Subscription(self._http, self.config, Target("all", "", position), reconnect)


class Subscription:
    """A live subscription: iterate over it to receive :class:`Poke` objects.

    It connects when entered as a context manager (or at the first iteration); once
    :meth:`connect` has returned, every message written afterwards will be poked. Lost
    connections — a server restart, a silent network (no heartbeat within
    ``heartbeat_timeout``) — are re-opened from the position after the last poke, so no message
    is missed and none is poked twice. :meth:`close` may be called from any thread (or a signal
    handler); an iteration blocked in another thread then ends.

    Raises (from the iteration):
        AuthError, InvalidRequest, ...: the server refused the subscription.
        TransportError: the first connection failed after the client's retries, or the
            connection dropped and ``reconnect`` is off.
    """

    def __init__(
        self, http: httpx.Client, config: ClientConfig, target: Target, reconnect: bool
    ) -> None:
        self._http = http
        self._config = config
        self._target = target
        self._reconnect = reconnect
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reading = False
        self._opened = False
        self._response: httpx.Response | None = None
        self._lines: Iterator[str] = iter(())
        self._parser = EventParser()
        self.reconnects = 0
        """How many times the connection was re-opened."""

    @property
    def position(self) -> int:
        """Where the subscription would resume: the stream position (stream subscriptions) or
        the global position (the others) after the last poke delivered."""
        return self._target.position

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called or the subscription ended."""
        return self._closed.is_set()

    def connect(self) -> Subscription:
        """Open the connection if it is not open (the client's retry rules apply)."""
        if self._response is None and not self._closed.is_set():
            self._open()
        return self

    def __enter__(self) -> Subscription:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Poke:
        while True:
            if self._closed.is_set():
                self._release()
                raise StopIteration
            if self._response is None:
                try:
                    self._open()
                except EventoDBError:
                    self._closed.set()  # refused for good (or never connected): it is over
                    raise
                continue
            with self._lock:
                if self._closed.is_set():
                    continue
                self._reading = True
            lost: Exception | None = None
            try:
                line = next(self._lines)
            except StopIteration:
                line = None  # the server ended the stream (e.g. it is shutting down)
            except (httpx.HTTPError, httpx.StreamError) as exc:
                line, lost = None, exc
            finally:
                with self._lock:
                    self._reading = False
            if line is not None:
                poke = self._parser.feed(line)
                if poke is not None:
                    self._target.delivered(poke)
                    return poke
                continue
            self._release()
            if not self._reconnect and not self._closed.is_set():
                self._closed.set()
                if lost is not None:
                    raise TransportError(f"subscription connection lost: {lost}") from lost

    def close(self) -> None:
        """End the subscription and release its connection; the iteration stops."""
        with self._lock:
            self._closed.set()
            if self._reading:
                # Another thread is blocked reading: wake it; it releases the connection.
                self._interrupt()
                return
        self._release()

    def _open(self) -> None:
        first = not self._opened
        config = self._config if first else self._config.persistent()
        attempts = Attempts(config, idempotent=True)
        headers = {"Accept": "text/event-stream"}
        while not self._closed.is_set():
            request = self._http.build_request(
                "GET",
                "/subscribe",
                params=self._target.params(),
                headers=headers,
                timeout=self._config.subscription_timeout(),
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                delay = attempts.after_error(exc)
            else:
                if response.is_success:
                    self._response = response
                    self._lines = response.iter_lines()
                    self._parser = EventParser()
                    self._opened = True
                    if not first:
                        self.reconnects += 1
                    return
                response.read()
                response.close()
                delay = attempts.after_response(response) or 0.0  # never None: not a success
            self._closed.wait(delay)

    def _interrupt(self) -> None:
        """Shut the socket down under a blocked read, so that it returns at once."""
        response = self._response
        stream = None if response is None else response.extensions.get("network_stream")
        sock = None if stream is None else stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        response, self._response = self._response, None
        self._lines = iter(())
        if response is not None:
            with contextlib.suppress(httpx.HTTPError, OSError):
                response.close()
