"""The NDJSON record format of export and import, one JSON object per line.

Keys in this order: ``id``, ``stream``, ``type``, ``pos``, ``gpos``, ``data``, ``meta``,
``time``. ``time`` is UTC RFC 3339 with microseconds, trailing zeros trimmed
(``2025-01-15T10:00:00.1234Z``), or with whole seconds only (``--whole-seconds``: the Go
server's export format). Import accepts both (docs/MIGRATION.md, "The NDJSON format").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from eventodb.core import jsoncodec, timefmt

_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{0,5}[1-9])?Z", re.ASCII)
"""What our servers send: microseconds at most, no trailing zero."""


def canonical_time(text: str) -> str:
    """``text`` in the export's default spelling (microseconds, trailing zeros trimmed).

    Raises:
        ValueError: not RFC 3339.
    """
    if _CANONICAL_TIME.fullmatch(text):
        return text
    return timefmt.format_time(timefmt.parse_time(text))


def whole_seconds(text: str) -> str:
    """``text`` with its fraction dropped (not rounded), as the Go server exports times.

    Raises:
        ValueError: not RFC 3339.
    """
    if _CANONICAL_TIME.fullmatch(text):
        return text if len(text) == 20 else text[:19] + "Z"
    return timefmt.format_seconds(timefmt.parse_time(text))


def line(
    message_id: str,
    stream: str,
    kind: str,
    position: int,
    global_position: int,
    data: Any,
    meta: Any,
    time: str,
) -> bytes:
    """One record as a line (with its ``\\n``). ``data``/``meta`` may be JSON fragments."""
    record = {
        "id": message_id,
        "stream": stream,
        "type": kind,
        "pos": position,
        "gpos": global_position,
        "data": data,
        "meta": meta,
        "time": time,
    }
    return jsoncodec.dumps(record) + b"\n"


def from_category_message(message: Sequence[Any], *, whole: bool = False) -> bytes:
    """A ``category.get`` message (``[id, stream, type, pos, gpos, data, meta, time]``) → line.

    Raises:
        ValueError: the message's time is not RFC 3339.
    """
    message_id, stream, kind, position, global_position, data, meta, time = message
    time = whole_seconds(time) if whole else canonical_time(time)
    return line(message_id, stream, kind, position, global_position, data, meta, time)


def global_position_of(text: bytes) -> int | None:
    """The ``gpos`` of a record line; ``None`` for a line that is not a record (the server
    reports those, with their line number)."""
    try:
        record = jsoncodec.loads(text)
    except jsoncodec.JSONError:
        return None
    if not isinstance(record, dict):
        return None
    gpos = record.get("gpos")
    return gpos if isinstance(gpos, int) and not isinstance(gpos, bool) else None
