"""Namespace tokens: ``ns_<base64url(namespace)>_<64 hex>`` (docs/API.md, "Tokens").

Only the SHA-256 of a token is ever stored. Parsing never touches a database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets

PREFIX = "ns_"
RANDOM_HEX_LEN = 64

TEST_TOKEN = "ns_ZGVmYXVsdA_" + "0" * 64
"""The well-known token every upstream suite uses for the ``default`` namespace."""


_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")  # not bytes.fromhex: it skips whitespace


class TokenFormatError(ValueError):
    """The token breaks a rule of :func:`parse`; the message is the upstream parse message."""


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def generate(namespace: str) -> str:
    """A fresh token for ``namespace`` with 32 random bytes."""
    return f"{PREFIX}{_b64url_encode(namespace.encode('utf-8'))}_{secrets.token_hex(32)}"


def parse(token: str) -> str:
    """Return the namespace id a token names.

    Splits at the **last** ``_`` (the random part never contains one), so tokens whose
    base64url part contains ``_`` parse too (upstream split at every ``_`` and refused them).

    Raises:
        TokenFormatError: with the upstream message, when the token is malformed.
    """
    if not token.startswith(PREFIX):
        raise TokenFormatError("invalid token format: missing 'ns_' prefix")
    encoded, sep, random_part = token[len(PREFIX) :].rpartition("_")
    if not sep:
        raise TokenFormatError("invalid token format: expected 2 parts after prefix, got 1")
    if len(random_part) != RANDOM_HEX_LEN:
        raise TokenFormatError(
            f"invalid token format: random part must be 64 hex characters, got {len(random_part)}"
        )
    if not _HEX64.fullmatch(random_part):
        raise TokenFormatError(
            "invalid token format: random part is not valid hexadecimal: "
            f"invalid byte in {random_part!r}"
        )
    if not _B64URL.fullmatch(encoded) or len(encoded) % 4 == 1:
        raise TokenFormatError(
            "invalid token format: namespace part is not valid base64url: illegal base64 data"
        )
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        namespace = raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise TokenFormatError(
            f"invalid token format: namespace part is not valid base64url: {exc}"
        ) from None
    if not namespace:
        raise TokenFormatError("invalid token format: namespace is empty")
    return namespace


def hash_token(token: str) -> str:
    """SHA-256 of the whole token string as 64 lowercase hex characters."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a token against a stored hash."""
    return secrets.compare_digest(hash_token(token), stored_hash)
