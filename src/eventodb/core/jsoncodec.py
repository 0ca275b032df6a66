"""JSON in and out, fast (orjson) yet exact for integers beyond 64 bits.

orjson silently turns integer literals wider than 64 bits into floats and refuses to write
them; the stdlib keeps them exact. Payload numbers must round-trip exactly (docs/API.md), so
inputs that contain such literals take the slow, exact path.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

MAX_DEPTH = 512
"""Deepest nesting accepted in a request (docs/API.md, "Limits")."""

_DIGIT_MAP = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_WIDE_RUN = b"0" * 19
"""19 digits in a row: a literal that may not fit 64 bits."""
_WIDE_INT_TEXT = re.compile(r"[0-9]{19}")


class JSONError(ValueError):
    """Input is not valid JSON (or not valid UTF-8); the message is the parser's."""


def loads(raw: bytes | str) -> Any:
    """Parse JSON, keeping integers of any width exact.

    Raises:
        JSONError: on invalid JSON, invalid UTF-8, NaN/Infinity or trailing commas.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JSONError(str(exc)) from None
    if isinstance(raw, str):
        wide = _WIDE_INT_TEXT.search(raw) is not None
    else:
        # Digits → "0", everything else → " ", then a plain substring search: several times
        # faster than the regular expression on bytes (this runs for every request and line).
        wide = _WIDE_RUN in raw.translate(_DIGIT_MAP)
    if wide:
        # Rare: re-parse exactly. Input already validated by orjson, so this cannot fail on syntax.
        value = json.loads(raw)
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps_shallow(value: Any) -> bytes | None:
    """Compact UTF-8 JSON by orjson alone, or ``None`` when it cannot write ``value``: nesting
    beyond 254 levels, or integers wider than 64 bits (then use :func:`dumps`)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return None


def fragment(text: str) -> Any:
    """Already-serialised JSON that :func:`dumps` copies verbatim into its output."""
    return orjson.Fragment(text)


def dumps_str(value: Any) -> str:
    return dumps(value).decode("utf-8")


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers nest deeper than ``limit`` levels."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in item)
    return False


def find_nul(value: Any) -> bool:
    """Whether any key or string inside ``value`` contains a NUL character (Postgres refuses it)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            for k, v in item.items():
                if "\x00" in k:
                    return True
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)
    return False
