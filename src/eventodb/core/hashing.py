"""``hash_64`` and consumer-group membership, bit-exact with the Postgres functions."""

from __future__ import annotations

import hashlib

from eventodb.core.streams import cardinal_id

_TWO_63 = 1 << 63
_TWO_64 = 1 << 64


def hash_64(value: str) -> int:
    """First 8 bytes of MD5 as a signed big-endian 64-bit integer.

    This is what Postgres computes with ``('x' || left(md5(v), 16))::bit(64)::bigint``.
    """
    unsigned = int.from_bytes(hashlib.md5(value.encode("utf-8")).digest()[:8], "big")
    return unsigned - _TWO_64 if unsigned >= _TWO_63 else unsigned


def cardinal_hash(stream_name: str) -> int | None:
    """``hash_64`` of the stream's cardinal id; ``None`` for a stream without an id (no ``-``).

    The stores keep it with every message (``cardinal_id_hash``) for consumer-group reads.
    """
    cid = cardinal_id(stream_name)
    return None if cid is None else hash_64(cid)


def group_member(stream_name: str, size: int) -> int | None:
    """The member of a group of ``size`` that owns ``stream_name``; ``None`` if none does.

    Streams without an id (no ``-``) belong to no member.
    """
    hashed = cardinal_hash(stream_name)
    return None if hashed is None else abs(hashed) % size
