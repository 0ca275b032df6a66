"""Message ids: UUIDv7 generation and the UUID spellings accepted on write (docs/API.md)."""

from __future__ import annotations

import re
import uuid

import uuid_utils


def new_id() -> str:
    """A time-ordered UUIDv7, lowercase and hyphenated, as upstream generates."""
    return str(uuid_utils.uuid7())


def canonical_uuid(text: str) -> str | None:
    """The canonical lowercase form of a UUID, or ``None`` if ``text`` is not one.

    Accepts what Go's ``uuid.Parse`` accepts: 36-character hyphenated, 32 hex digits,
    ``{...}`` braces and the ``urn:uuid:`` prefix.
    """
    if _CANONICAL.fullmatch(text):
        return text  # the common case (every id we hand out), without building a UUID
    n = len(text)
    if n == 36 or n == 32:
        body = text
    elif n == 38 and text[0] == "{" and text[-1] == "}":
        body = text[1:-1]
    elif n == 45 and text[:9].lower() == "urn:uuid:":
        body = text[9:]
    else:
        return None
    if len(body) == 36 and (
        body[8] != "-" or body[13] != "-" or body[18] != "-" or body[23] != "-"
    ):
        return None
    digits = body.replace("-", "") if len(body) == 36 else body
    if len(digits) != 32 or not all(c in _HEX for c in digits):
        return None
    return str(uuid.UUID(hex=digits))


_HEX = frozenset("0123456789abcdefABCDEF")
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
