"""Authentication: from a request's token to the namespace it runs in (SPEC §3.3-3.5).

Tokens proven valid are cached (token → namespace), so a known token costs no database round
trip; entries of a namespace are dropped when it is deleted or its token replaced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import unquote_plus

from eventodb.core import tokens
from eventodb.core.errors import AuthError, ErrorCode, NamespaceExists, NamespaceNotFound
from eventodb.store.base import Store

log = logging.getLogger("eventodb.auth")

DEFAULT_NAMESPACE = "default"
CACHE_LIMIT = 10_000
"""Cached tokens; the cache is simply emptied when full (only valid tokens get in)."""

_BEARER = "Bearer "


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the namespace a request runs in."""

    namespace: str
    created_token: str | None = None
    """Set when test mode auto-created the namespace (sent back as ``X-EventoDB-Token``)."""


def query_token(query_string: bytes) -> str | None:
    """The first non-empty ``token`` query parameter, URL-decoded."""
    if b"token=" not in query_string:
        return None
    for part in query_string.split(b"&"):
        if part.startswith(b"token="):
            value = unquote_plus(part[6:].decode("latin-1"))
            if value:
                return value
    return None


def not_authorized(namespace: str) -> AuthError:
    return AuthError(
        ErrorCode.AUTH_UNAUTHORIZED, "Token not authorized for namespace", {"namespace": namespace}
    )


class Authenticator:
    """Resolves callers, in production (§3.4) or test mode (§3.5).

    Args:
        test_mode: relaxed rules: unusable tokens run as ``default``, hashes are not checked,
            unknown namespaces named by well-formed tokens are created on the fly.
    """

    def __init__(self, store: Store, *, test_mode: bool = False) -> None:
        self.store = store
        self.test_mode = test_mode
        self._known: dict[str, str] = {}
        self._deleted: set[str] = set()

    async def authenticate(self, query_string: bytes, authorization: str | None) -> Caller:
        """Resolve the caller of one request.

        Args:
            authorization: the raw ``Authorization`` header, if any.

        Raises:
            AuthError: 401/403 (production) or 403 for a deleted namespace (test mode).
            InvalidArgument: test mode, the token names a namespace id we cannot store.
        """
        token = query_token(query_string) if query_string else None
        if token is None:
            token = self._header_token(authorization)
            if token is None:  # test mode, unusable header
                return Caller(DEFAULT_NAMESPACE)
        namespace = self._known.get(token)
        if namespace is not None:
            return Caller(namespace)
        try:
            namespace = tokens.parse(token)
        except tokens.TokenFormatError as exc:
            if self.test_mode:
                return Caller(DEFAULT_NAMESPACE)
            raise AuthError(
                ErrorCode.AUTH_INVALID_TOKEN, "Invalid token format", {"error": str(exc)}
            ) from None
        try:
            record = await self.store.get_namespace(namespace)
        except NamespaceNotFound:
            if not self.test_mode or namespace in self._deleted:
                raise not_authorized(namespace) from None
            return await self._auto_create(namespace, token)
        if not self.test_mode and not tokens.matches(token, record.token_hash):
            raise not_authorized(namespace)
        self._remember(token, namespace)
        return Caller(namespace)

    def _header_token(self, authorization: str | None) -> str | None:
        """The bearer token; ``None`` in test mode when there is none usable."""
        if authorization is None:
            if self.test_mode:
                return None
            raise AuthError(ErrorCode.AUTH_REQUIRED, "Authorization header required")
        if not authorization.startswith(_BEARER):
            if self.test_mode:
                return None
            raise AuthError(ErrorCode.AUTH_REQUIRED, "Authorization header must use Bearer scheme")
        # httptools keeps trailing blanks that Go's net/http strips from header values.
        token = authorization[len(_BEARER) :].rstrip(" \t")
        if not token:
            if self.test_mode:
                return None
            raise AuthError(ErrorCode.AUTH_REQUIRED, "Token required")
        return token

    async def _auto_create(self, namespace: str, token: str) -> Caller:
        """Test mode: a well-formed token of an unknown namespace creates it (SPEC §3.5)."""
        try:
            await self.store.create_namespace(namespace, tokens.hash_token(token))
        except NamespaceExists:  # a concurrent request created it first
            self._remember(token, namespace)
            return Caller(namespace)
        log.info("test mode: created namespace %r for an unknown token", namespace)
        self._remember(token, namespace)
        return Caller(namespace, created_token=token)

    def _remember(self, token: str, namespace: str) -> None:
        if len(self._known) >= CACHE_LIMIT:
            self._known.clear()
        self._known[token] = namespace

    def remember(self, token: str, namespace: str) -> None:
        """Record a token known to be valid (start-up, ``ns.create``)."""
        self._remember(token, namespace)

    def forget_namespace(self, namespace: str, *, deleted: bool = False) -> None:
        """Drop cached tokens of ``namespace`` (deleted, or its token replaced).

        Args:
            deleted: also remember the deletion, so test mode will not re-create it.
        """
        for token in [t for t, ns in self._known.items() if ns == namespace]:
            del self._known[token]
        if deleted:
            self._deleted.add(namespace)
