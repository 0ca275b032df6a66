"""``POST /import``: NDJSON bulk import answered as a stream of ``data:`` events (docs/API.md).

The app authenticates first (auth errors are its JSON 401/403) and then calls
:func:`clear_if_forced` and :func:`stream_import`. Unlike upstream, which reads the whole body
(up to 100 MiB) before starting, the body is consumed as it arrives: lines are parsed one by one
and grouped in batches of 1,000 records (the Go server's), each imported all or nothing and
reported by a progress event once committed. Batches go to :meth:`Store.import_groups` while
the next ones are parsed; a store may commit several in one transaction. Memory stays bounded
by a few batches and one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from eventodb.api import asgi
from eventodb.api.asgi import Body, BodyTooLarge, ClientGone, Receive, Send
from eventodb.core import ids, jsoncodec, timefmt, validation
from eventodb.core.errors import ErrorCode, EventoDBError, PositionExists
from eventodb.store.base import ImportGroup, ImportStopped, Message, Store, check_import

BATCH_SIZE = 1000
"""Records per batch: imported all or nothing, and reported by a progress event once committed
(the last batch, when shorter, only by the done event)."""
GATHER_SECONDS = 0.02
"""Where a store commits several batches in one transaction, how long a parsed batch waits
for the next one to join it (input that stalls longer is committed as it is)."""
QUEUED_BYTES = 16 * 1024 * 1024
"""Parsed batches waiting for the batches in flight to commit hold at most about this many
bytes of input (and at most :attr:`Store.import_groups_per_transaction` batches); the parse
waits for room beyond."""
YIELD_EVERY = 20
"""Records parsed between two turns given to the rest of the event loop, when the store's
import needs them (:attr:`Store.import_needs_the_loop`)."""
MAX_LINE_BYTES = 1024 * 1024
"""Longer lines end the import with ``READ_ERROR`` (upstream's scanner buffer)."""

_NO_PROXY_BUFFERING = (b"x-accel-buffering", b"no")

log = logging.getLogger("eventodb.import")


class ClearFailed(EventoDBError):
    """``?force=true`` could not empty the namespace; answered as JSON before any event."""

    code = ErrorCode.CLEAR_FAILED


class ImportFailure(Exception):
    """Ends an import with an error event: ``{"error": code, "message": ..., "line": ...}``."""

    def __init__(self, code: str, message: str, line: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line

    def event(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.line:
            body["line"] = self.line
        return body


def wants_force(query_string: bytes) -> bool:
    """``force=true`` exactly; the first ``force`` parameter counts, as with Go's ``Get``."""
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == "force":
            return value == "true"
    return False


async def clear_if_forced(store: Store, namespace: str, query_string: bytes) -> bool:
    """With ``?force=true`` delete every message and restart global positions at 1.

    Returns:
        Whether the namespace was cleared.

    Raises:
        ClearFailed: the store could not clear the namespace.
    """
    if not wants_force(query_string):
        return False
    try:
        await store.clear_namespace(namespace)
    except EventoDBError as exc:
        raise ClearFailed(exc.message) from None  # the store's "Failed to clear ...: <cause>"
    return True


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: bytes


class _LineTooLong(Exception):
    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


async def _lines(body: Body) -> AsyncGenerator[_Line, None]:
    """The body's non-blank lines with their 1-based numbers (a trailing ``\r`` is allowed),
    read as they are consumed.

    Raises:
        ClientGone: the client disconnected.
        BodyTooLarge: the body passed the size limit.
        _LineTooLong: a line passed :data:`MAX_LINE_BYTES` (found without buffering it).
    """
    pending = b""
    number = 0
    while not body.ended:
        chunk = await body.chunk()
        if not chunk:
            continue
        buffer = pending + chunk if pending else chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            number += 1
            line = buffer[start:end]
            start = end + 1
            if _too_long(line):
                raise _LineTooLong(number)
            if line.strip():
                yield _Line(number, line)
        pending = buffer[start:]
        if len(pending) > MAX_LINE_BYTES + 1:
            raise _LineTooLong(number + 1)
    if pending:
        number += 1
        if _too_long(pending):
            raise _LineTooLong(number)
        if pending.strip():
            yield _Line(number, pending)


def _too_long(line: bytes) -> bool:
    """Longer than :data:`MAX_LINE_BYTES`, not counting a final ``\r`` (Go's ScanLines)."""
    return len(line) > MAX_LINE_BYTES and (
        len(line) > MAX_LINE_BYTES + 1 or not line.endswith(b"\r")
    )


_GO_KIND = {dict: "object", list: "array", str: "string", int: "number", float: "number"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return _GO_KIND.get(type(value), "value")


def parse_record(line: _Line, max_message_bytes: int) -> tuple[Message, tuple[str, str | None]]:
    """One NDJSON line → a message to import (the record of docs/API.md, "Import"), checked,
    with the JSON text of its data and metadata.

    Raises:
        ImportFailure: ``INVALID_JSON`` for unparsable JSON or a field of the wrong JSON type,
            ``INVALID_RECORD`` for a missing field, a bad id or time, or a value the store
            refuses for every write (the same rules as ``stream.write``).
    """
    n = line.number
    try:
        raw = jsoncodec.loads(line.text)
    except jsoncodec.JSONError as exc:
        raise ImportFailure("INVALID_JSON", f"malformed JSON at line {n}: {exc}", n) from None
    if not isinstance(raw, dict):
        raise ImportFailure(
            "INVALID_JSON",
            f"malformed JSON at line {n}: cannot unmarshal {_kind(raw)} into a record",
            n,
        )

    def wrong_type(key: str, expected: str) -> ImportFailure:
        return ImportFailure(
            "INVALID_JSON",
            f"malformed JSON at line {n}: field {key} must be {expected}, got {_kind(raw[key])}",
            n,
        )

    def invalid(text: str) -> ImportFailure:
        return ImportFailure("INVALID_RECORD", f"invalid record at line {n}: {text}", n)

    texts: dict[str, str] = {}
    for key in ("id", "stream", "type", "time"):
        value = raw.get(key)
        if value is None:
            if key == "time":
                raise invalid("invalid time format: missing time")
            raise invalid(f"missing {key}")
        if not isinstance(value, str):
            raise wrong_type(key, "a string")
        texts[key] = value
    numbers: dict[str, int] = {}
    for key in ("pos", "gpos"):
        value = raw.get(key)
        if value is None:
            if key == "gpos":
                raise invalid("missing gpos")
            value = 0  # upstream's zero value: the stream's first position
        elif isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(key, "an integer")
        numbers[key] = value
    try:  # before the fields below (check_import repeats it, cheaply)
        validation.check_imported_positions(numbers["pos"], numbers["gpos"])
    except EventoDBError as exc:
        raise invalid(exc.message) from None
    data, meta = raw.get("data"), raw.get("meta")
    if data is None:
        raise invalid("missing data")
    if not isinstance(data, dict):
        raise invalid("data must be an object")
    if meta is not None and not isinstance(meta, dict):
        raise wrong_type("meta", "an object or null")
    message_id = ids.canonical_uuid(texts["id"])
    if message_id is None:
        raise invalid(f"id must be a UUID, got {texts['id']!r}")
    try:
        when = timefmt.parse_time(texts["time"])
    except ValueError as exc:
        raise invalid(str(exc)) from None
    message = Message(
        message_id,
        texts["stream"],
        texts["type"],
        numbers["pos"],
        numbers["gpos"],
        data,
        meta,
        when,
    )
    try:
        return message, check_import(message, max_message_bytes)
    except EventoDBError as exc:
        raise invalid(exc.message) from None


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + jsoncodec.dumps(payload) + b"\n\n"


@dataclass(slots=True)
class _Batch:
    """Parsed records imported together, all or nothing, with their line numbers."""

    messages: list[Message] = field(default_factory=list)
    payloads: list[tuple[str, str | None]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    size: int = 0
    """Bytes of input its lines took."""

    def add(self, line: _Line, max_message_bytes: int) -> None:
        message, payload = parse_record(line, max_message_bytes)
        self.messages.append(message)
        self.payloads.append(payload)
        self.lines.append(line.number)
        self.size += len(line.text)

    def failure(self, error: EventoDBError) -> ImportFailure:
        """The error event of this batch failing with the store's ``error``: the line of the
        offending record when the store names it, else the batch's last line."""
        lines = self.lines
        if isinstance(error, PositionExists):
            index = error.index if 0 <= error.index < len(lines) else len(lines) - 1
            return ImportFailure("POSITION_EXISTS", error.message, lines[index])
        return ImportFailure("IMPORT_FAILED", error.message, lines[-1])


class _Batches:
    """Imports batches in input order while the next ones are parsed.

    One :meth:`Store.import_groups` call is in flight at a time, and the next one takes the
    batches parsed meanwhile. Where the store commits several batches in one transaction
    (:attr:`~Store.import_groups_per_transaction`), the next call waits until that many are
    parsed, unless the input stalls for :data:`GATHER_SECONDS` or ends. A batch's progress
    event is sent once it is committed; a batch that fails ends the import and no later batch
    is written.
    """

    def __init__(self, store: Store, namespace: str, send: Send) -> None:
        self._store = store
        self._namespace = namespace
        self._send = send
        self._most = store.import_groups_per_transaction
        self._queued: list[_Batch] = []
        self._queued_bytes = 0
        self._taken = asyncio.Event()
        """Set when the writing task takes queued batches (room for more)."""
        self._added = asyncio.Event()
        """Set when a batch is queued or the input ended (the writing task may go on)."""
        self._ended = False
        self._writing: asyncio.Task[None] | None = None
        self.imported = 0

    async def submit(self, batch: _Batch) -> None:
        """Queue ``batch``, waiting for room when enough is queued already.

        Raises:
            ImportFailure: an earlier batch failed.
        """
        while self._writing is not None and not self._writing.done() and self._full():
            self._taken.clear()
            room = asyncio.ensure_future(self._taken.wait())
            try:
                await asyncio.wait({self._writing, room}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                room.cancel()
        self._raise_failure()
        self._queued.append(batch)
        self._queued_bytes += batch.size
        self._added.set()
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_queued())
            # Let it start now (hand the batch to the database) rather than at the parser's
            # next wait for input, which may come only after the next batch has been parsed.
            await asyncio.sleep(0)

    def _full(self) -> bool:
        return len(self._queued) >= self._most or self._queued_bytes >= QUEUED_BYTES

    def _raise_failure(self) -> None:
        writing = self._writing
        if writing is not None and writing.done():
            self._writing = None
            writing.result()  # raises the ImportFailure that ended it

    async def _write_queued(self) -> None:
        while self._queued:
            await self._gather()
            batches = self._queued[: self._most]
            del self._queued[: self._most]
            self._queued_bytes -= sum(b.size for b in batches)
            self._taken.set()
            await self._commit(batches)

    async def _gather(self) -> None:
        """Wait until a transaction's worth of batches is queued, the input ends, or no batch
        comes for :data:`GATHER_SECONDS`."""
        while not self._full() and not self._ended:
            self._added.clear()
            try:
                await asyncio.wait_for(self._added.wait(), GATHER_SECONDS)
            except TimeoutError:
                return

    async def _commit(self, batches: list[_Batch]) -> None:
        """Import ``batches`` and report the committed ones.

        Raises:
            ImportFailure: one of them failed (the ones before it are committed and reported).
        """
        groups = [ImportGroup(b.messages, b.payloads) for b in batches]
        try:
            await self._store.import_groups(self._namespace, groups)
        except ImportStopped as exc:
            await self._report(batches[: exc.committed])
            raise batches[exc.committed].failure(exc.error) from None
        except Exception:
            # Never leave the client with a stream that ends without a result.
            log.exception("import into %s failed", self._namespace)
            raise ImportFailure("IMPORT_FAILED", "internal error", batches[0].lines[-1]) from None
        await self._report(batches)

    async def _report(self, batches: list[_Batch]) -> None:
        for batch in batches:
            self.imported += len(batch.messages)
            if len(batch.messages) == BATCH_SIZE:
                last = batch.messages[-1].global_position
                event = _event({"imported": self.imported, "gpos": last})
                await asgi.send_chunk(self._send, event)

    async def settle(self) -> None:
        """Wait until every queued batch is written.

        Raises:
            ImportFailure: a batch failed.
        """
        self._ended = True
        self._added.set()
        writing = self._writing
        if writing is not None:
            await asyncio.wait({writing})
            self._raise_failure()

    def abandon(self) -> None:
        if self._writing is not None:
            self._writing.cancel()
            self._writing = None


async def stream_import(
    receive: Receive,
    send: Send,
    *,
    store: Store,
    namespace: str,
    max_body_bytes: int,
) -> int:
    """Answer 200 and import the body, one ``data:`` event per committed batch and a final
    done or error event.

    Returns:
        200, or 499 when the client went away before the body ended.
    """
    started = time.perf_counter()
    await asgi.start_event_stream(send, _NO_PROXY_BUFFERING, asgi.SERVER)
    batches = _Batches(store, namespace, send)
    batch = _Batch()
    give_turns = store.import_needs_the_loop
    body = Body(receive, max_body_bytes)
    try:
        try:
            async with contextlib.aclosing(_lines(body)) as records:
                async for line in records:
                    batch.add(line, store.max_message_bytes)
                    if len(batch.lines) == BATCH_SIZE:
                        await batches.submit(batch)
                        batch = _Batch()
                    elif give_turns and len(batch.lines) % YIELD_EVERY == 0:
                        # Let the batch in flight move on: each step of its transaction (a
                        # round trip to the database) waits for the loop, which parsing holds.
                        await asyncio.sleep(0)
        except _LineTooLong as exc:
            await batches.settle()  # an earlier failure is the one to report
            raise ImportFailure(
                "READ_ERROR",
                f"error reading input: line longer than {MAX_LINE_BYTES} bytes",
                exc.number,
            ) from None
        except BodyTooLarge:
            await batches.settle()
            raise ImportFailure(
                "READ_ERROR", "error reading input: http: request body too large", 0
            ) from None
        except ImportFailure:
            await batches.settle()
            raise
        if batch.lines:
            await batches.submit(batch)
        await batches.settle()
        elapsed = time.perf_counter() - started
        done = {"done": True, "imported": batches.imported, "elapsed": f"{elapsed:.1f}s"}
        await asgi.send_chunk(send, _event(done))
    except ImportFailure as exc:
        await asgi.send_chunk(send, _event(exc.event()))
        await body.drain()
    except ClientGone:
        # Every complete batch received is written (as when batches went one by one); the
        # partial one is dropped.
        with contextlib.suppress(ImportFailure):
            await batches.settle()
        log.info("import into %s: client went away after %d records", namespace, batches.imported)
        return 499
    finally:
        batches.abandon()
    await asgi.send_chunk(send, b"", more=False)
    return 200
