"""The RPC methods as data: for each one, the request array and how to read its result.

Both clients build a :class:`Call` here and only differ in how they send it, so the wire
format of every method is written once. (docs/CLIENT.md lists the methods; the server's side is
docs/API.md.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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
    ReleasedNamespace,
    StreamInfo,
    WriteResult,
)

T = TypeVar("T")

MAX_BATCH_SIZE = 10_000
"""The largest page the server returns (``-1``, unlimited, is refused by the iterators)."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One RPC request and the decoder of its result.

    Attributes:
        request: ``[method, *arguments]``.
        decode: turns the JSON result into the typed result.
        idempotent: sending it twice has the effect of sending it once, so it may be resent
            when the answer was lost.
    """

    request: list[Any]
    decode: Callable[[Any], T]
    idempotent: bool = True

    def body(self) -> bytes:
        """The request body.

        Raises:
            TypeError, ValueError: when an argument is not JSON (e.g. a set, or NaN).
        """
        return json.dumps(
            self.request, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")


def _same(result: Any) -> Any:
    return result


READ_METHODS = frozenset(
    {"stream.get", "stream.last", "stream.version", "category.get"}
    | {"ns.list", "ns.info", "ns.streams", "ns.categories", "ns.head"}
    | {"sys.version", "sys.health"}
)
"""Methods that only read, so they may be resent when an answer is lost."""


def raw(method: str, *args: Any) -> Call[Any]:
    """Any method, with its JSON result as is; resent after a lost answer only if it reads."""
    return Call([method, *args], _same, method in READ_METHODS)


def write(stream: str, message: NewMessage, expected_version: int | None) -> Call[WriteResult]:
    """``stream.write``; always sends the message's id, which makes the call idempotent."""
    body: dict[str, Any] = {"type": message.type, "data": message.data}
    if message.metadata is not None:
        body["metadata"] = message.metadata
    options: dict[str, Any] = {"id": message.id}
    if expected_version is not None:
        options["expectedVersion"] = expected_version

    def decode(result: Any) -> WriteResult:
        return WriteResult(result["position"], result["globalPosition"], message.id)

    return Call(["stream.write", stream, body, options], decode)


def get_stream(
    stream: str, position: int, global_position: int | None, batch_size: int
) -> Call[list[Message]]:
    """``stream.get``."""
    options: dict[str, Any] = {"position": position, "batchSize": batch_size}
    if global_position is not None:
        options["globalPosition"] = global_position
    return Call(
        ["stream.get", stream, options],
        lambda rows: [Message.from_stream_row(stream, row) for row in rows],
    )


def get_last(stream: str, message_type: str | None) -> Call[Message | None]:
    """``stream.last``."""
    options = {} if message_type is None else {"type": message_type}
    return Call(
        ["stream.last", stream, options],
        lambda row: None if row is None else Message.from_stream_row(stream, row),
    )


def stream_version(stream: str) -> Call[int | None]:
    """``stream.version``."""
    return Call(["stream.version", stream], _same)


def get_category(
    category: str,
    position: int,
    batch_size: int,
    correlation: str | None,
    consumer_group: ConsumerGroup | tuple[int, int] | None,
) -> Call[list[Message]]:
    """``category.get``."""
    options: dict[str, Any] = {"position": position, "batchSize": batch_size}
    if correlation is not None:
        options["correlation"] = correlation
    if consumer_group is not None:
        member, size = consumer_group
        options["consumerGroup"] = {"member": member, "size": size}
    return Call(
        ["category.get", category, options],
        lambda rows: [Message.from_category_row(row) for row in rows],
    )


def create_namespace(namespace: str, description: str, token: str | None) -> Call[CreatedNamespace]:
    """``ns.create``; not idempotent (a resent request finds the namespace existing)."""
    options: dict[str, Any] = {"description": description}
    if token is not None:
        options["token"] = token
    return Call(["ns.create", namespace, options], CreatedNamespace.from_wire, idempotent=False)


def delete_namespace(namespace: str) -> Call[DeletedNamespace]:
    """``ns.delete``; not idempotent (a resent request finds the namespace gone)."""
    return Call(["ns.delete", namespace], DeletedNamespace.from_wire, idempotent=False)


def release_namespace(namespace: str) -> Call[ReleasedNamespace]:
    """``ns.release``; not idempotent (a resent request finds the namespace gone)."""
    return Call(["ns.release", namespace], ReleasedNamespace.from_wire, idempotent=False)


def list_namespaces() -> Call[list[NamespaceSummary]]:
    """``ns.list``."""
    return Call(["ns.list"], lambda rows: [NamespaceSummary.from_wire(r) for r in rows])


def namespace_info(namespace: str) -> Call[NamespaceInfo]:
    """``ns.info``."""
    return Call(["ns.info", namespace], NamespaceInfo.from_wire)


def list_streams(prefix: str, cursor: str, limit: int) -> Call[list[StreamInfo]]:
    """``ns.streams``."""
    options = {"prefix": prefix, "cursor": cursor, "limit": limit}
    return Call(["ns.streams", options], lambda rows: [StreamInfo.from_wire(r) for r in rows])


def list_categories() -> Call[list[CategoryInfo]]:
    """``ns.categories``."""
    return Call(["ns.categories"], lambda rows: [CategoryInfo.from_wire(r) for r in rows])


def head() -> Call[Head]:
    """``ns.head``."""
    return Call(["ns.head"], Head.from_wire)


def server_version() -> Call[str]:
    """``sys.version``."""
    return Call(["sys.version"], str)


def health() -> Call[Health]:
    """``sys.health``."""
    return Call(["sys.health"], Health.from_wire)


C = TypeVar("C")


class Pager(Generic[T, C]):
    """Paging through a listing: which page to ask for next, and whether there may be one.

    A page shorter than the page size is the last one, so reading N items costs
    ``N // size + 1`` requests and nothing is skipped or repeated at page boundaries.
    """

    def __init__(
        self,
        page: Callable[[C, int], Call[list[T]]],
        start: C,
        after: Callable[[T], C],
        size: int,
        limit: int = MAX_BATCH_SIZE,
    ) -> None:
        """
        Args:
            page: builds the request for the page starting at a cursor.
            start: the first cursor.
            after: the cursor that follows an item.
            size: items per page.
            limit: the largest page size the method accepts.

        Raises:
            ValueError: when ``size`` is not between 1 and ``limit``.
        """
        if not 1 <= size <= limit:
            raise ValueError(f"page size must be between 1 and {limit}, got {size}")
        self._page = page
        self._after = after
        self.cursor = start
        self.size = size

    def call(self) -> Call[list[T]]:
        """The request for the next page."""
        return self._page(self.cursor, self.size)

    def advance(self, items: list[T]) -> bool:
        """Move past a page just read; ``False`` when it was the last."""
        if items:
            self.cursor = self._after(items[-1])
        return len(items) >= self.size


def stream_pages(stream: str, position: int, size: int) -> Pager[Message, int]:
    """Every message of a stream from ``position``, page by page."""
    return Pager(
        lambda at, n: get_stream(stream, at, None, n), position, lambda m: m.position + 1, size
    )


def category_pages(
    category: str,
    position: int,
    size: int,
    correlation: str | None,
    consumer_group: ConsumerGroup | tuple[int, int] | None,
) -> Pager[Message, int]:
    """Every message of a category from global position ``position``, page by page."""
    return Pager(
        lambda at, n: get_category(category, at, n, correlation, consumer_group),
        position,
        lambda m: m.global_position + 1,
        size,
    )


def stream_list_pages(prefix: str, size: int) -> Pager[StreamInfo, str]:
    """Every stream whose name starts with ``prefix``, in name order, page by page."""
    return Pager(
        lambda cursor, n: list_streams(prefix, cursor, n), "", lambda s: s.stream, size, 1000
    )
