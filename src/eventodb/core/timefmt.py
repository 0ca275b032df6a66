"""Timestamps on the wire (docs/API.md): UTC RFC 3339 with a ``Z`` and trimmed fractions."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta


def format_time(dt: datetime) -> str:
    """``2024-01-15T10:30:00.12345Z``: microseconds, trailing zeros and a bare dot removed.

    ``dt`` must be UTC (aware or naive-meaning-UTC). Built on ``isoformat`` (C code): this
    runs for every message of every read.
    """
    text = dt.replace(tzinfo=None).isoformat()
    if dt.microsecond:
        text = text.rstrip("0")
    return text + "Z"


def format_seconds(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` with the fraction truncated (``lastActivity``, ``createdAt``)."""
    return format_time(dt.replace(microsecond=0))


def format_unix_seconds(seconds: int) -> str:
    return format_seconds(datetime.fromtimestamp(seconds, UTC))


def now() -> datetime:
    return datetime.now(UTC)


def to_micros(dt: datetime) -> int:
    """Unix microseconds, exact (no float rounding)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (fractions of any length, ``Z`` or an offset) to aware UTC.

    Raises:
        ValueError: when ``text`` is not RFC 3339.
    """
    if _UTC_RFC3339.fullmatch(text):
        # What exports and servers write (UTC, "Z"): the C parser alone is several times faster.
        with contextlib.suppress(ValueError):  # e.g. month 13: the path below says why
            return datetime.fromisoformat(text)
    if len(text) < 20 or text[10] not in "Tt":
        raise ValueError(f"invalid time format: {text!r}")
    head, frac, zone = text[:19], "", ""
    rest = text[19:]
    if rest.startswith("."):
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        if i == 1:
            raise ValueError(f"invalid time format: {text!r}")
        frac, rest = rest[1:i], rest[i:]
    zone = "+00:00" if rest in ("Z", "z") else rest
    micro = frac[:6].ljust(6, "0") if frac else "000000"
    try:
        parsed = datetime.fromisoformat(f"{head}.{micro}{zone}")
    except ValueError:
        raise ValueError(f"invalid time format: {text!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"invalid time format: {text!r}")
    return parsed.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z", re.ASCII)
