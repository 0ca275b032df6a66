"""Authentication: from a request's token to the namespace it runs in (docs/API.md).

What the database said about a namespace (its token hash, or that it does not exist) is cached
for a short time, and tokens proven valid are cached (token → namespace), so neither a known
token nor a forged one for a known namespace costs a database round trip. A revocation — the
namespace deleted, re-created or given another token — must reach every process sharing the
database (docs/API.md, "Token cache and revocation"):

* in this process at once (``ns.create`` / ``ns.delete`` call :meth:`Authenticator.remember` /
  :meth:`Authenticator.forget_namespace`);
* from other processes through the store's change notifications (Postgres: a registry trigger),
  which drop the namespace's entries;
* and, should a notification be lost, every entry expires after ``cache_ttl`` seconds anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from eventodb.config import DEFAULT_AUTH_CACHE_TTL
from eventodb.core import tokens
from eventodb.core.errors import AuthError, ErrorCode, NamespaceExists, NamespaceNotFound
from eventodb.store.base import NamespaceChange, Store

log = logging.getLogger("eventodb.auth")

DEFAULT_NAMESPACE = "default"
CACHE_LIMIT = 10_000
"""Entries per cache; a cache is simply emptied when full."""

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
    """Resolves callers, in production or in test mode (docs/API.md, "Authentication").

    Args:
        test_mode: relaxed rules: unusable tokens run as ``default``, hashes are not checked,
            unknown namespaces named by well-formed tokens are created on the fly.
        cache_ttl: seconds a cached registry answer (token hash or "no such namespace") and a
            cached valid token are trusted; 0 asks the database on every request.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        store: Store,
        *,
        test_mode: bool = False,
        cache_ttl: float = DEFAULT_AUTH_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.test_mode = test_mode
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._known: dict[str, tuple[str, float]] = {}
        """token → (namespace, trusted until)."""
        self._hashes: dict[str, tuple[str | None, float]] = {}
        """namespace → (token hash, or None when it does not exist; trusted until)."""
        self._generation = 0
        """Bumped by every invalidation: an answer fetched across one is not cached."""
        self._deleted: set[str] = set()
        store.add_namespace_listener(self._changed)

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
        known = self._known.get(token)
        if known is not None and known[1] > self._clock():
            return Caller(known[0])
        try:
            namespace = tokens.parse(token)
        except tokens.TokenFormatError as exc:
            if self.test_mode:
                return Caller(DEFAULT_NAMESPACE)
            raise AuthError(
                ErrorCode.AUTH_INVALID_TOKEN, "Invalid token format", {"error": str(exc)}
            ) from None
        generation = self._generation
        token_hash = await self._token_hash(namespace)
        if token_hash is None:
            if not self.test_mode or namespace in self._deleted:
                raise not_authorized(namespace)
            return await self._auto_create(namespace, token)
        if not self.test_mode and not tokens.matches(token, token_hash):
            raise not_authorized(namespace)
        if generation == self._generation:
            self._remember(token, namespace)
        return Caller(namespace)

    async def _token_hash(self, namespace: str) -> str | None:
        """The stored token hash of ``namespace``, ``None`` if it does not exist (cached)."""
        cached = self._hashes.get(namespace)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        generation = self._generation
        try:
            token_hash: str | None = (await self.store.get_namespace(namespace)).token_hash
        except NamespaceNotFound:
            token_hash = None
        if generation == self._generation and self.cache_ttl > 0:
            if len(self._hashes) >= CACHE_LIMIT:
                self._hashes.clear()
            self._hashes[namespace] = (token_hash, now + self.cache_ttl)
        return token_hash

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
        """Test mode: a well-formed token of an unknown namespace creates it (docs/API.md)."""
        try:
            await self.store.create_namespace(namespace, tokens.hash_token(token))
        except NamespaceExists:  # a concurrent request created it first
            self.forget_namespace(namespace)
            self._remember(token, namespace)
            return Caller(namespace)
        log.info("test mode: created namespace %r for an unknown token", namespace)
        self.remember(token, namespace)
        return Caller(namespace, created_token=token)

    def _remember(self, token: str, namespace: str) -> None:
        if self.cache_ttl <= 0:
            return
        if len(self._known) >= CACHE_LIMIT:
            self._known.clear()
        self._known[token] = (namespace, self._clock() + self.cache_ttl)

    def remember(self, token: str, namespace: str) -> None:
        """Record a token known to be valid (start-up, ``ns.create``)."""
        self.forget_namespace(namespace)
        self._remember(token, namespace)

    def forget_namespace(self, namespace: str, *, deleted: bool = False) -> None:
        """Drop what is cached about ``namespace`` (deleted, re-created, or its token replaced).

        Args:
            deleted: also remember the deletion, so test mode will not re-create it.
        """
        self._generation += 1
        self._hashes.pop(namespace, None)
        for token in [t for t, (ns, _) in self._known.items() if ns == namespace]:
            del self._known[token]
        if deleted:
            self._deleted.add(namespace)

    def _changed(self, change: NamespaceChange) -> None:
        """Another process changed the registry: forget what we knew about the namespace."""
        if change.namespace is None:
            self._generation += 1
            self._known.clear()
            self._hashes.clear()
            return
        self.forget_namespace(change.namespace)
        if change.kind == "created":
            self._deleted.discard(change.namespace)
