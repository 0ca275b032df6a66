"""Value rules shared by the store and the API, with the client-visible messages (docs/API.md).

Both layers call these so a rule and its message exist once. Type checks of raw JSON arguments
live in the API; these functions assume the Python type is already right.
"""

from __future__ import annotations

from typing import Any

from eventodb.core import jsoncodec
from eventodb.core.errors import InvalidArgument

MAX_NAME_BYTES = 1024
MAX_NAMESPACE_BYTES = 54
"""``eventodb_`` + 54 bytes = 63, the Postgres identifier limit."""
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
MAX_BATCH_SIZE = 10_000
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MAX_IMPORTED_POSITION = (1 << 53) - 1
"""Highest ``pos``/``gpos`` an import may carry: 9,007,199,254,740,991, the largest integer the
JavaScript SDKs read exactly, and far enough below the 64-bit end that writes after any import
can never run out of positions (docs/API.md, "Import")."""


def check_text(value: str, field: str) -> None:
    """No NUL and at most 1,024 UTF-8 bytes (names, types, categories, prefixes...)."""
    if "\x00" in value:
        raise InvalidArgument(f"{field} must not contain NUL characters")
    # At most 256 code points cannot exceed 1,024 UTF-8 bytes: skip the encode then.
    too_long = len(value) > MAX_NAME_BYTES // 4
    if too_long and len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidArgument(f"{field} must be at most {MAX_NAME_BYTES} bytes")
    if _has_surrogate(value):
        raise InvalidArgument(f"{field} must be valid UTF-8")


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_stream_name(value: str, field: str = "streamName") -> None:
    if not value:
        raise InvalidArgument(f"{field} must be a non-empty string")
    check_text(value, field)


def check_message_type(value: str) -> None:
    if not value:
        raise InvalidArgument("message.type must be a non-empty string")
    check_text(value, "message.type")


def check_int64(value: int, field: str) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgument(f"{field} is out of range")


def check_batch_size(value: int, field: str = "options.batchSize") -> None:
    """-1 means unlimited, 0 means an empty page, anything else must be 1..10,000."""
    if value > MAX_BATCH_SIZE:
        raise InvalidArgument(f"{field} must be <= {MAX_BATCH_SIZE} or -1 for unlimited")
    if value < -1:
        raise InvalidArgument(f"{field} must be >= 0 or -1 for unlimited")


def check_imported_positions(position: int, global_position: int) -> None:
    """An imported record's ``pos`` (0 or more) and ``gpos`` (1 or more), both at most
    :data:`MAX_IMPORTED_POSITION`."""
    if position < 0:
        raise InvalidArgument("pos must not be negative")
    if global_position < 1:
        raise InvalidArgument("gpos must be positive")
    for field, value in (("pos", position), ("gpos", global_position)):
        if value > MAX_IMPORTED_POSITION:
            raise InvalidArgument(f"{field} must be at most {MAX_IMPORTED_POSITION}")


def check_consumer_group(member: int, size: int) -> None:
    prefix = "options.consumerGroup"
    if member < 0:
        raise InvalidArgument(f"{prefix}.member must be non-negative")
    if size <= 0:
        raise InvalidArgument(f"{prefix}.size must be positive")
    if member >= size:
        raise InvalidArgument(f"{prefix}.member must be < size")


def encode_payload(
    data: Any, metadata: Any, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[str, str | None]:
    """Check data (an object) and metadata (an object or ``None``) and serialise them once.

    Every backend can store the result: no NUL anywhere, bounded nesting, bounded size.

    Returns:
        The compact JSON text of data and of metadata (``None`` when absent).
    """
    if not isinstance(data, dict):
        raise InvalidArgument("message.data must be an object")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidArgument("message.metadata must be an object")
    data_raw = _checked_dumps("message.data", data)
    meta_raw = None if metadata is None else _checked_dumps("message.metadata", metadata)
    size = len(data_raw) + (len(meta_raw) if meta_raw is not None else 0)
    if size > max_bytes:
        raise InvalidArgument(f"message is too large: {size} bytes, at most {max_bytes} allowed")
    return data_raw.decode("utf-8"), None if meta_raw is None else meta_raw.decode("utf-8")


def _checked_dumps(field: str, value: Any) -> bytes:
    """``value`` serialised, refusing NUL anywhere and nesting deeper than we accept.

    Fast path: orjson refuses nesting beyond 254 levels (well under our limit) and writes NUL
    as ``\\u0000``, so a value it serialises without that escape needs no walk of its own.
    """
    raw = jsoncodec.dumps_shallow(value)
    if raw is None and jsoncodec.depth_exceeds(value, jsoncodec.MAX_DEPTH - 2):
        raise InvalidArgument(f"{field} is nested too deeply")
    if (raw is None or b"\\u0000" in raw) and jsoncodec.find_nul(value):
        raise InvalidArgument(f"{field} must not contain NUL characters")
    return raw if raw is not None else jsoncodec.dumps(value)


def storable(value: str) -> bool:
    """Whether every backend can hold ``value`` as text: no NUL, valid UTF-8 (Postgres refuses
    both; a lookup by such a value can only find nothing)."""
    return "\x00" not in value and not _has_surrogate(value)


def check_description(value: str) -> None:
    """A namespace description: any length, but storable on every backend."""
    if "\x00" in value:
        raise InvalidArgument("options.description must not contain NUL characters")
    if _has_surrogate(value):
        raise InvalidArgument("options.description must be valid UTF-8")


def check_namespace_id(value: str) -> None:
    """Ids that are unsafe as a file name or a Postgres schema name are refused (docs/API.md,
    "ns.create").

    Ordinary ids (``[A-Za-z0-9_.-]``) keep the upstream file and schema names.
    """
    if not value:
        raise InvalidArgument("namespace ID must be a non-empty string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAMESPACE_BYTES:
        raise InvalidArgument(f"namespace ID must be at most {MAX_NAMESPACE_BYTES} bytes")
    if value in (".", ".."):
        raise InvalidArgument("namespace ID must not be '.' or '..'")
    for ch in value:
        if ch in "/\\" or ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise InvalidArgument(
                "namespace ID must not contain path separators or control characters"
            )
    if _has_surrogate(value):
        raise InvalidArgument("namespace ID must be valid UTF-8")
