"""Where a consumer keeps its position: the interface, and the store that keeps it in the event
store itself, in a position stream as Eventide's consumers do.

The position is the global position of the last message the consumer handled; it reads on from
the one after. The position stream of consumer ``billing`` of category ``account`` is
``account:position-billing``: its category is ``account:position``, so it is never part of the
category it tracks. Each update appends a ``Recorded`` message with data ``{"position": N}``
(the format of Eventide's position stores, so either can read the other's positions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from eventodb.client.models import ConsumerGroup

if TYPE_CHECKING:
    from eventodb.client.aio import AsyncEventoDB
    from eventodb.client.sync import EventoDB

RECORDED = "Recorded"
"""The type of the messages of a position stream."""


class PositionStore(Protocol):
    """Keeps one consumer's position (for :class:`eventodb.client.Consumer`)."""

    def get(self) -> int | None:
        """The last stored position, or ``None`` when nothing was stored yet."""
        ...

    def put(self, position: int) -> None:
        """Store ``position`` (the global position of the last handled message)."""
        ...


class AsyncPositionStore(Protocol):
    """Keeps one consumer's position (for :class:`eventodb.client.AsyncConsumer`)."""

    async def get(self) -> int | None:
        """The last stored position, or ``None`` when nothing was stored yet."""
        ...

    async def put(self, position: int) -> None:
        """Store ``position`` (the global position of the last handled message)."""
        ...


def check_category(category: str) -> None:
    """A consumer reads a category: a name without ``-`` (``""`` means every category).

    Raises:
        ValueError: when ``category`` contains ``-`` (it would match nothing).
    """
    if "-" in category:
        raise ValueError(f"{category!r} is a stream name, not a category: it contains '-'")


def position_stream_name(
    category: str, consumer: str | None = None, group: ConsumerGroup | None = None
) -> str:
    """The stream that holds a consumer's position.

    ``account`` → ``account:position``; with ``consumer="billing"`` →
    ``account:position-billing``; as member 1 of a group of 3 →
    ``account:position-billing+1of3`` (each member reads different messages, so each keeps its
    own position; a group of another size starts afresh).

    Raises:
        ValueError: for ``""`` (a consumer of every category would read its own position
            stream: give it a position store of your own) or a name with ``-``.
    """
    check_category(category)
    if not category:
        raise ValueError(
            "a consumer of every category ('') needs a position_store: "
            "its position stream would be one of the messages it reads"
        )
    parts = [consumer] if consumer else []
    if group is not None:
        parts.append(f"{group.member}of{group.size}")
    name = f"{category}:position"
    return f"{name}-{'+'.join(parts)}" if parts else name


class StreamPositionStore:
    """A :class:`PositionStore` in a position stream of the event store.

    Args:
        client: the client to read and write with.
        stream_name: the position stream (see :func:`position_stream_name`).
    """

    def __init__(self, client: EventoDB, stream_name: str) -> None:
        self.client = client
        self.stream_name = stream_name

    def get(self) -> int | None:
        """The position of the stream's last ``Recorded`` message."""
        last = self.client.get_last(self.stream_name, type=RECORDED)
        return None if last is None else int(last.data["position"])

    def put(self, position: int) -> None:
        """Append a ``Recorded`` message."""
        self.client.write(self.stream_name, RECORDED, {"position": position})


class AsyncStreamPositionStore:
    """An :class:`AsyncPositionStore` in a position stream (see :class:`StreamPositionStore`)."""

    def __init__(self, client: AsyncEventoDB, stream_name: str) -> None:
        self.client = client
        self.stream_name = stream_name

    async def get(self) -> int | None:
        """The position of the stream's last ``Recorded`` message."""
        last = await self.client.get_last(self.stream_name, type=RECORDED)
        return None if last is None else int(last.data["position"])

    async def put(self, position: int) -> None:
        """Append a ``Recorded`` message."""
        await self.client.write(self.stream_name, RECORDED, {"position": position})
