"""JSON text for jsonb columns that reads back as the value written.

jsonb keeps numbers as decimals and prints ``1e+300`` back as a 301-digit integer, which reads
as a Python ``int`` unequal to the float written; the server gives such payloads another
spelling for the jsonb columns (the text it serves is stored apart, unchanged).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from eventodb.core import jsoncodec

_POSITIVE_EXPONENT = re.compile(r"[0-9][eE]\+")
_MARK = "\x00eventodb-float-"
"""Placeholder prefix; payloads never contain NUL (validation refuses it), so it cannot clash."""


def jsonb_exact(text: str | None, value: Any) -> str | None:
    """JSON text that jsonb stores without turning big floats into integers.

    Floats that the encoder spells with a positive exponent are written instead as their exact
    decimal expansion plus ``.0``, which jsonb keeps as a non-integer; every other number passes
    unchanged. Cheap when unneeded: one regex search.
    """
    if text is None or not _POSITIVE_EXPONENT.search(text):
        return text
    floats: list[float] = []

    def mark(v: Any) -> Any:
        if isinstance(v, float) and "e+" in repr(v):
            floats.append(v)
            return f"{_MARK}{len(floats) - 1}"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    marked = jsoncodec.dumps_str(mark(value))
    for i, f in enumerate(floats):
        marked = marked.replace(
            jsoncodec.dumps_str(f"{_MARK}{i}"), format(Decimal(f), "f") + ".0", 1
        )
    return marked


def jsonb_spelling(text: str | None, value: Any) -> str | None:
    """What the jsonb column should be given instead of ``text``; ``None`` when ``text`` will do."""
    exact = jsonb_exact(text, value)
    return None if exact is text else exact
