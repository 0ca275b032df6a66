"""``GET /subscribe``: Server-Sent Events pokes (docs/API.md, "Subscriptions").

The app authenticates first (auth errors are its JSON 401/403), then calls
:func:`handle_subscribe` with the resolved namespace. This module owns the query validation
(plain-text 400s) and the byte-exact framing (docs/API.md, "Subscriptions"); what is delivered
when is decided by :class:`eventodb.api.broker.Subscription`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qsl

import orjson

from eventodb.api import asgi
from eventodb.api.asgi import Receive, Scope, Send
from eventodb.api.broker import Broker, Filter, PokeTuple, Subscription, ended_by_us
from eventodb.core import validation
from eventodb.core.errors import EventoDBError, InvalidArgument
from eventodb.core.tasks import cancel_and_wait
from eventodb.store.base import ConsumerGroup, Store

log = logging.getLogger("eventodb.subscriptions")

DEFAULT_HEARTBEAT = 15.0

READY = b": ready\n\n"
PING = b": ping\n\n"

_ANY_ORIGIN = (b"access-control-allow-origin", b"*")

_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(1 << 63), (1 << 63) - 1)


class InvalidQuery(ValueError):
    """A parameter validation failure; the message is the plain-text response body."""


def parse_query(query_string: bytes) -> Filter:
    """The subscription a query string asks for, validated in the order docs/API.md lists.

    Raises:
        InvalidQuery: with the exact body text to answer with status 400.
    """
    params: dict[str, str] = {}
    for key, value in parse_qsl(
        query_string.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
    ):
        # First occurrence wins, as with Go's Query().Get; an empty value counts as absent.
        key = _utf8(key)
        if key not in params:
            params[key] = _utf8(value)
    stream = params.get("stream", "")
    category = params.get("category", "")
    everything = params.get("all") == "true"
    if not stream and not category and not everything:
        raise InvalidQuery("Either 'stream', 'category', or 'all=true' parameter required")
    if everything and (stream or category):
        raise InvalidQuery("Cannot combine 'all' with 'stream' or 'category'")
    if stream and category:
        raise InvalidQuery("Cannot specify both 'stream' and 'category'")
    for field, value in (("stream", stream), ("category", category)):
        try:
            # The names RPC accepts, no more (docs/API.md, "Limits").
            validation.check_text(value, field)
        except InvalidArgument as exc:
            raise InvalidQuery(exc.message) from None
    position = _integer(params.get("position", ""), 0, "position")
    if stream:
        return Filter(stream=stream, category="", position=position)
    group: ConsumerGroup | None = None
    if category:
        consumer_text = params.get("consumer") or params.get("consumerGroupMember") or ""
        size_text = params.get("size") or params.get("consumerGroupSize") or ""
        consumer = _integer(consumer_text, 0, "consumer")
        size = _integer(size_text, 0, "size")
        if (
            ((consumer > 0 or size > 0) and (size == 0 or consumer >= size))
            or consumer < 0
            or (consumer_text and size <= 0)
        ):
            raise InvalidQuery("Invalid consumer group: member must be < size")
        if size > 0:
            group = ConsumerGroup(consumer, size)
    return Filter(stream=None, category=category, position=position, group=group)


def _utf8(text: str) -> str:
    """Query strings are percent-decoded bytes; read them as UTF-8 like Go does."""
    return text.encode("latin-1").decode("utf-8", "replace")


def _integer(text: str, default: int, name: str) -> int:
    """Go's ``strconv.Atoi``: optional sign, decimal digits, 64-bit range; empty = default."""
    if not text:
        return default
    if _INT.fullmatch(text) is None:
        raise InvalidQuery(f"Invalid {name} parameter")
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        raise InvalidQuery(f"Invalid {name} parameter")
    return value


def frame(pokes: Iterable[PokeTuple]) -> bytes:
    """The SSE bytes for some pokes: ``event: poke``, a compact ``data:`` line, a blank line."""
    return b"".join(
        b"event: poke\ndata: "
        + orjson.dumps({"stream": stream, "position": position, "globalPosition": gp})
        + b"\n\n"
        for stream, position, gp in pokes
    )


async def handle_subscribe(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    store: Store,
    broker: Broker,
    namespace: str,
    heartbeat: float = DEFAULT_HEARTBEAT,
) -> None:
    """Validate the query, then stream pokes until the client leaves or the server stops.

    Args:
        store: the store to replay from; must be the broker's store.
        heartbeat: seconds of silence after which a ``: ping`` comment is sent; ``<= 0`` never.
    """
    assert store is broker.store, "the broker must route pokes of the store we replay from"
    try:
        wanted = parse_query(scope.get("query_string", b""))
    except InvalidQuery as exc:
        await asgi.send_text(send, 400, str(exc))
        return
    if broker.closed:
        await asgi.send_text(send, 503, "Server is shutting down")
        return
    # Registered before anything is read, so no write can fall between replay and live pokes.
    sub = broker.subscribe(namespace, wanted)
    sub.task = asyncio.current_task()
    watcher = asyncio.ensure_future(_watch_disconnect(receive, sub))
    try:
        await _stream(sub, send, heartbeat, store)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        # Only swallow our own cancel (a write stuck on a client that stopped reading).
        if not ended_by_us(exc) or task is None or task.uncancel() > 0:
            raise
    finally:
        broker.unsubscribe(sub)
        await cancel_and_wait(watcher)


async def _stream(sub: Subscription, send: Send, heartbeat: float, store: Store) -> None:
    async def write(body: bytes, more: bool = True) -> None:
        sub.sending = True
        try:
            await asgi.send_chunk(send, body, more=more)
        finally:
            sub.sending = False

    sub.sending = True
    try:
        await asgi.start_event_stream(send, _ANY_ORIGIN)
    finally:
        sub.sending = False
    # Other processes' writes are heard, too, before anything is read (the headers go first, so
    # the client does not wait for that).
    async with store.hear_other_writers():
        ended = await _send_pokes(sub, write, heartbeat)
    if not ended:
        return
    # End the chunked body cleanly, but never hang on a client that stopped reading.
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await write(b"", more=False)


async def _send_pokes(
    sub: Subscription, write: Callable[[bytes], Awaitable[None]], heartbeat: float
) -> bool:
    """``: ready``, the replay, then live pokes and pings until the subscription ends; False
    when the client went away mid-write."""
    loop = asyncio.get_running_loop()
    await write(READY)
    quiet_since = loop.time()
    try:
        while True:
            deadline = quiet_since + heartbeat if heartbeat > 0 else None
            try:
                pokes = await sub.next(deadline)
            except EventoDBError as exc:
                # Typically the namespace was deleted mid-replay; the client may reconnect.
                log.info("ending subscription in %r: %s", sub.namespace, exc.message)
                return True
            if pokes is None:
                return True
            await write(frame(pokes) if pokes else PING)
            sub.broker.pokes_sent += len(pokes)
            quiet_since = loop.time()
    except OSError:
        # The client went away mid-write (servers that raise instead of dropping the bytes).
        sub.end()
        return False


async def _watch_disconnect(receive: Receive, sub: Subscription) -> None:
    """End the subscription as soon as the server reports the client gone."""
    try:
        while not sub.closed:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
    except OSError:
        return
    finally:
        sub.end()
