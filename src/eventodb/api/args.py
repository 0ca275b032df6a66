"""Type checks of raw JSON RPC arguments with their client-visible messages (docs/API.md).

Value rules (lengths, NUL, ranges that the store also enforces) live in
:mod:`eventodb.core.validation`; this module only answers "is this JSON value of the kind the
method expects", so its messages come first, in the order docs/API.md lists them for each method.
"""

from __future__ import annotations

import math
from typing import Any

from eventodb.core.errors import InvalidArgument
from eventodb.core.validation import check_int64


def non_empty_string(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field} must be a non-empty string")
    return value


def string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string")
    return value


def options(args: list[Any], index: int) -> dict[str, Any]:
    """The options object at ``index``: ``{}`` when absent, an error when ``null`` or not an
    object."""
    if index >= len(args):
        return {}
    value = args[index]
    if not isinstance(value, dict):
        raise InvalidArgument("options must be an object")
    return value


def number(value: Any, field: str) -> int:
    """Any JSON number, fractions truncated toward zero, within signed 64 bits.

    Booleans are not numbers (Python says they are; JSON does not).
    """
    if type(value) is int:
        check_int64(value, field)
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise InvalidArgument(f"{field} is out of range")
        result = int(value)
        check_int64(result, field)
        return result
    raise InvalidArgument(f"{field} must be a number")


def optional_number(opts: dict[str, Any], key: str, field: str) -> int | None:
    """``opts[key]`` as a number, ``None`` when the key is absent (present ``null`` is an error)."""
    if key not in opts:
        return None
    return number(opts[key], field)


def optional_string(opts: dict[str, Any], key: str, field: str) -> str | None:
    if key not in opts:
        return None
    return string(opts[key], field)
