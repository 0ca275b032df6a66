"""Stream-name rules (docs/API.md, "Streams, categories and messages").

The only implementation; every backend and endpoint uses it.

Postgres mirrors these rules in SQL (``category()``, ``id()``, ``cardinal_id()``), and the
contract suite checks both agree.
"""

from __future__ import annotations


def category(stream_name: str) -> str:
    """Text before the first ``-``; the whole name when there is none."""
    return stream_name.partition("-")[0]


def stream_id(stream_name: str) -> str | None:
    """Text after the first ``-``; ``None`` when there is no ``-`` (``account-`` has id ``""``)."""
    _, sep, tail = stream_name.partition("-")
    return tail if sep else None


def cardinal_id(stream_name: str) -> str | None:
    """The id up to its first ``+``, so ``account-1+retry`` groups with ``account-1``."""
    ident = stream_id(stream_name)
    if ident is None:
        return None
    return ident.partition("+")[0]
