"""Where the records of a transfer come from: an NDJSON file, a server, a Message DB database.

Every source yields :class:`Batch`\\ es of NDJSON lines in the order they are to be imported,
with what the transfer needs to report progress, resume and verify.
"""

from __future__ import annotations

import gzip
import heapq
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from eventodb.core import jsoncodec, timefmt
from eventodb.transfer import records
from eventodb.transfer.remote import Remote, Row, TransferError

FILE_BLOCK = 1024 * 1024
"""Bytes read from an input file at a time."""


@dataclass(slots=True)
class Batch:
    """Consecutive lines of the transfer.

    ``body`` holds ``lines`` lines; a skipped record stays as an empty line so that the
    server's line numbers still match the input file's.
    """

    body: bytes
    lines: int
    records: int
    """Records in ``body`` (lines that are neither blank nor skipped)."""
    highest: int
    """Highest global position among the records (0: none known)."""
    progress: int
    """How far the source has got, in the unit of its total (bytes of input, or messages)."""


# -- NDJSON files ------------------------------------------------------------------------------


class FileSource:
    """An NDJSON file (or stdin), gzip-compressed or not.

    Args:
        after: skip records at or below this global position (``--resume``). The file must
            then be in global-position order (as ``eventodb export`` writes it), else a
            skipped record might be missing from the target.
    """

    unit = "B"

    def __init__(self, raw: BinaryIO, *, compressed: bool, after: int = 0) -> None:
        self._raw = raw
        reader = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        # read1: whatever is there (up to a block), so a pipe is streamed as it arrives.
        self._read: Callable[[int], bytes] = getattr(reader, "read1", reader.read)
        self._after = after
        self.total = _size(raw)
        self.skipped = 0
        self._line = 0

    def _offset(self) -> int:
        try:
            return self._raw.tell()
        except OSError:
            return 0

    async def batches(self) -> AsyncIterator[Batch]:
        pending = b""
        highest = 0
        while True:
            block = self._read(FILE_BLOCK)
            if block:
                text = pending + block
                cut = text.rfind(b"\n") + 1
                if cut == 0:
                    pending = text
                    continue
                pending = text[cut:]
                text = text[:cut]
            elif pending:
                text, pending = pending + b"\n", b""
            else:
                return
            lines = text.split(b"\n")[:-1]
            kept = 0
            for i, raw_line in enumerate(lines):
                self._line += 1
                if not raw_line.strip():
                    continue
                gpos = records.global_position_of(raw_line)
                if gpos is None:  # not a record: the server reports it with its line
                    kept += 1
                    continue
                if gpos < highest and self._after:
                    raise TransferError(
                        f"--resume needs the input in global-position order (as eventodb export"
                        f" writes it), but line {self._line} goes back to {gpos} after {highest}"
                    )
                highest = max(highest, gpos)
                if gpos <= self._after:
                    lines[i] = b""
                    self.skipped += 1
                else:
                    kept += 1
            yield Batch(b"\n".join(lines) + b"\n", len(lines), kept, highest, self._offset())


def _size(raw: BinaryIO) -> int | None:
    """The file's size when it is a regular file (so the bar can show an ETA)."""
    try:
        position = raw.tell()
        end = raw.seek(0, 2)
        raw.seek(position)
    except (OSError, ValueError):
        return None
    return end - position or None


# -- a server ----------------------------------------------------------------------------------


class ServerSource:
    """The messages of a namespace with global positions in ``[first, last]``, in global order.

    With several categories, their pages are merged by global position: the output is in
    global order whatever the categories, so an interrupted copy can resume.

    Args:
        since, until: keep messages with ``since <= time < until`` (``None``: no bound).
        whole: times with whole seconds (``--whole-seconds``).
    """

    unit = "msg"

    def __init__(
        self,
        remote: Remote,
        categories: Sequence[str],
        first: int,
        last: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        whole: bool = False,
    ) -> None:
        self.remote = remote
        self.categories = list(categories) or [""]
        self.first = first
        self.last = last
        self.since = since
        self.until = until
        self.whole = whole
        self.total = max(last - first + 1, 0) or None
        """The span of global positions to read (the bar moves along it)."""
        self.gpos = array("q")
        """Global position of every line sent, so an error at line N can name its message."""

    def _keep(self, message: Row) -> bool:
        if self.since is None and self.until is None:
            return True
        when = timefmt.parse_time(message[7])
        return (self.since is None or when >= self.since) and (
            self.until is None or when < self.until
        )

    async def batches(self) -> AsyncIterator[Batch]:
        if self.first > self.last:
            return
        readers: list[AsyncGenerator[list[Row], None]] = [
            self.remote.pages(c, self.first, self.last) for c in self.categories
        ]
        pages = readers[0] if len(readers) == 1 else _merged(readers)
        try:
            async for page in pages:
                kept = [m for m in page if self._keep(m)]
                try:
                    body = b"".join(
                        records.from_category_message(m, whole=self.whole) for m in kept
                    )
                except ValueError as exc:
                    raise TransferError(
                        f"{self.remote.url}: a message has a bad time: {exc}"
                    ) from None
                highest = int(page[-1][4])
                self.gpos.extend(int(m[4]) for m in kept)
                yield Batch(body, len(kept), len(kept), highest, highest - self.first + 1)
        finally:
            for reader in readers:
                await reader.aclose()


async def _merged(readers: Sequence[AsyncIterator[list[Row]]]) -> AsyncIterator[list[Row]]:
    """Pages of several readers (each in global order) merged into global order."""
    buffers: list[list[Row]] = [[] for _ in readers]
    live = list(range(len(readers)))
    while live:
        for i in list(live):
            if not buffers[i]:
                page = await anext(readers[i], None)
                if page is None:
                    live.remove(i)
                else:
                    buffers[i] = page
        if not any(buffers):
            return
        # Everything up to the smallest "last position held" is complete across readers.
        bound = min(int(buffers[i][-1][4]) for i in live) if live else None
        ready: list[list[Row]] = []
        for i, buffer in enumerate(buffers):
            if bound is None:
                ready.append(buffer)
                buffers[i] = []
                continue
            cut = 0
            while cut < len(buffer) and int(buffer[cut][4]) <= bound:
                cut += 1
            ready.append(buffer[:cut])
            buffers[i] = buffer[cut:]
        merged = list(heapq.merge(*ready, key=lambda m: int(m[4])))
        if merged:
            yield merged


# -- a Message DB database ---------------------------------------------------------------------


class MessageDBSource:
    """Every message of a Message DB schema after global position ``after``, in global order,
    as one consistent snapshot (:class:`eventodb.store.postgres.snapshot.MessageDBReader`)."""

    unit = "msg"

    def __init__(self, reader: Any, after: int) -> None:
        self.reader = reader
        self.after = after
        self.total: int | None = None
        self.highest = 0
        self.gpos = array("q")

    async def batches(self) -> AsyncIterator[Batch]:
        done = 0
        async for rows in self.reader.rows(self.after):
            body = b"".join(
                records.line(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    jsoncodec.fragment(r[5]),
                    None if r[6] is None else jsoncodec.fragment(r[6]),
                    r[7],
                )
                for r in rows
            )
            self.gpos.extend(r[4] for r in rows)
            done += len(rows)
            yield Batch(body, len(rows), len(rows), rows[-1][4], done)
