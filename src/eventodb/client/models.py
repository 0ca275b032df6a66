"""What the client sends and returns: messages, write results, pokes, namespace records.

All are frozen dataclasses; times are aware UTC datetimes. The ``from_wire`` functions here
are the only place that knows the server's JSON shapes (stream messages are 7-element arrays,
category messages 8-element arrays; see docs/CLIENT.md, "Wire formats").
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from eventodb.core.streams import category
from eventodb.core.timefmt import parse_time


def new_message_id() -> str:
    """A fresh UUIDv7 (time-ordered, RFC 9562), lowercase and hyphenated.

    The client chooses every message id before sending, so resending a write after a network
    error is recognised by the server as the same write.
    """
    millis = time.time_ns() // 1_000_000
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


class ConsumerGroup(NamedTuple):
    """Member ``member`` (0-based) of a consumer group of ``size`` members.

    A message belongs to exactly one member, chosen by a hash of its stream's cardinal id, so
    all messages of one entity go to the same member in order.
    """

    member: int
    size: int


@dataclass(frozen=True, slots=True)
class Message:
    """A message read from the store.

    Attributes:
        id: the message's UUID.
        stream_name: its stream (``account-123``).
        type: its type (``Deposited``).
        position: its 0-based position in the stream.
        global_position: its position in the namespace (starts at 1, increases, may have gaps).
        data: its JSON object.
        metadata: its metadata object, or ``None`` when written without.
        time: when it was written (aware, UTC, microseconds).
    """

    id: str
    stream_name: str
    type: str
    position: int
    global_position: int
    data: dict[str, Any]
    metadata: dict[str, Any] | None
    time: datetime

    @property
    def category(self) -> str:
        """The stream's category: its name before the first ``-``."""
        return category(self.stream_name)

    @classmethod
    def from_stream_row(cls, stream_name: str, row: list[Any]) -> Message:
        """A message from ``stream.get`` / ``stream.last``:
        ``[id, type, position, globalPosition, data, metadata, time]``."""
        ident, kind, position, global_position, data, metadata, written = row
        return cls(
            ident, stream_name, kind, position, global_position, data, metadata,
            parse_time(written),
        )  # fmt: skip

    @classmethod
    def from_category_row(cls, row: list[Any]) -> Message:
        """A message from ``category.get``:
        ``[id, streamName, type, position, globalPosition, data, metadata, time]``."""
        ident, stream_name, kind, position, global_position, data, metadata, written = row
        return cls(
            ident, stream_name, kind, position, global_position, data, metadata,
            parse_time(written),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to write. Its ``id`` is chosen when the object is created, so writing the same
    object again (a retry) is recognised by the server and not stored twice."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    id: str = field(default_factory=new_message_id)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Where a written message landed.

    Attributes:
        position: its position in the stream (the stream's new version).
        global_position: its global position.
        id: the message id that was sent.
    """

    position: int
    global_position: int
    id: str


@dataclass(frozen=True, slots=True)
class Poke:
    """A subscription's notice that a message exists; read it with the RPC methods.

    Attributes:
        stream: the message's stream (also for category and ``all`` subscriptions).
        position: its stream position.
        global_position: its global position.
    """

    stream: str
    position: int
    global_position: int

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Poke:
        """A poke from the ``data:`` object of an SSE ``poke`` event."""
        return cls(data["stream"], data["position"], data["globalPosition"])


@dataclass(frozen=True, slots=True)
class CreatedNamespace:
    """The answer to :meth:`EventoDB.create_namespace`.

    Attributes:
        namespace: the namespace id.
        token: its token: the only time the server shows it.
        created_at: when it was created.
    """

    namespace: str
    token: str
    created_at: datetime

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CreatedNamespace:
        """From the ``ns.create`` result object."""
        return cls(data["namespace"], data["token"], parse_time(data["createdAt"]))


@dataclass(frozen=True, slots=True)
class DeletedNamespace:
    """The answer to :meth:`EventoDB.delete_namespace`."""

    namespace: str
    deleted_at: datetime
    messages_deleted: int

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> DeletedNamespace:
        """From the ``ns.delete`` result object."""
        return cls(data["namespace"], parse_time(data["deletedAt"]), data["messagesDeleted"])


@dataclass(frozen=True, slots=True)
class ReleasedNamespace:
    """The answer to :meth:`EventoDB.release_namespace`."""

    namespace: str
    released_at: datetime

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ReleasedNamespace:
        """From the ``ns.release`` result object."""
        return cls(data["namespace"], parse_time(data["releasedAt"]))


@dataclass(frozen=True, slots=True)
class NamespaceSummary:
    """One entry of :meth:`EventoDB.list_namespaces`."""

    namespace: str
    description: str
    created_at: datetime
    message_count: int

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> NamespaceSummary:
        """From an ``ns.list`` entry."""
        return cls(
            data["namespace"],
            data["description"],
            parse_time(data["createdAt"]),
            data["messageCount"],
        )


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """The answer to :meth:`EventoDB.namespace_info`.

    Attributes:
        last_activity: time of the newest message; ``None`` when the namespace is empty.
    """

    namespace: str
    description: str
    created_at: datetime
    message_count: int
    stream_count: int
    last_activity: datetime | None

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> NamespaceInfo:
        """From the ``ns.info`` result object."""
        last = data.get("lastActivity")
        return cls(
            data["namespace"],
            data["description"],
            parse_time(data["createdAt"]),
            data["messageCount"],
            data["streamCount"],
            None if last is None else parse_time(last),
        )


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One entry of :meth:`EventoDB.list_streams`.

    Attributes:
        version: the position of the stream's last message.
        last_activity: time of its last message, to the second.
    """

    stream: str
    version: int
    last_activity: datetime

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> StreamInfo:
        """From an ``ns.streams`` entry."""
        return cls(data["stream"], data["version"], parse_time(data["lastActivity"]))


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    """One entry of :meth:`EventoDB.list_categories`."""

    category: str
    stream_count: int
    message_count: int

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CategoryInfo:
        """From an ``ns.categories`` entry."""
        return cls(data["category"], data["streamCount"], data["messageCount"])


@dataclass(frozen=True, slots=True)
class Head:
    """The answer to :meth:`EventoDB.head`: where the namespace's global order stands.

    Attributes:
        global_position: the highest global position such that every message at or below it
            is readable now and no other can still appear there (0: empty namespace).
        settled: ``False`` when writes that may commit below it were still in flight after
            the server waited for them (Postgres only).
    """

    global_position: int
    settled: bool

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Head:
        """From the ``ns.head`` result object."""
        return cls(data["globalPosition"], data["settled"])


@dataclass(frozen=True, slots=True)
class Health:
    """The answer to :meth:`EventoDB.health`.

    Attributes:
        status: ``"ok"``.
        backend: ``"sqlite"``, ``"postgres"`` or ``"memory"``.
        connections: HTTP requests the server is serving right now (subscriptions included).
    """

    status: str
    backend: str
    connections: int

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Health:
        """From the ``sys.health`` result object."""
        return cls(data["status"], data["backend"], data["connections"])
