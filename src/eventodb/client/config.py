"""Connection settings and the retry rules shared by the sync and async clients.

The rules, in one place (docs/CLIENT.md, "Retries"):

* A request that never reached the server (connection refused, connect timeout, no free pooled
  connection) is retried, whatever it is.
* A request that may have reached the server (the connection dropped or timed out while waiting
  for the answer; a 502 or 504 from a proxy) is retried only when resending cannot do anything
  twice: reads, and writes, because every write carries a message id chosen by the client.
  Namespace creation and deletion are not retried then.
* A 503 (the server or a proxy refused the request) is retried, whatever it is.
* At most ``retries`` retries, waiting ``backoff * 2**n`` seconds (capped at ``max_backoff``,
  with jitter) before retry ``n``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TypedDict

import httpx

from eventodb.client.errors import EventoDBError, TransportError, error_from_response

DEFAULT_URL = "http://localhost:8080"
URL_VARIABLE = "EVENTODB_URL"
TOKEN_VARIABLE = "EVENTODB_TOKEN"

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures that prove the request did not reach the server."""

FOREVER = 2**62
"""A retry count that never runs out."""

_MAYBE_PROCESSED_STATUSES = frozenset({502, 504})
_REFUSED_STATUS = 503


class ClientOptions(TypedDict, total=False):
    """The optional keyword arguments of both clients (see :class:`ClientConfig`)."""

    timeout: float
    connect_timeout: float
    retries: int
    backoff: float
    max_backoff: float
    heartbeat_timeout: float | None
    max_connections: int


class HTTPOptions(TypedDict):
    """What both clients give their httpx client."""

    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    limits: httpx.Limits


@dataclass(frozen=True)
class ClientConfig:
    """How a client reaches the server.

    Attributes:
        url: the server's root URL (``http://localhost:8080``).
        token: the namespace token sent as ``Authorization: Bearer``; ``None`` sends none.
        timeout: seconds to wait for an answer.
        connect_timeout: seconds to wait for a connection.
        retries: how many times a failed request is retried (see the module docstring).
        backoff: seconds before the first retry; doubled for each further one.
        max_backoff: the longest wait between retries, and between subscription reconnects.
        heartbeat_timeout: seconds of silence after which a subscription's connection is taken
            for dead and re-opened (the server sends a ``: ping`` comment every 15 s by
            default); ``None`` waits forever.
        max_connections: the size of the connection pool (each open subscription holds one).
    """

    url: str = DEFAULT_URL
    token: str | None = None
    timeout: float = 30.0
    connect_timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.1
    max_backoff: float = 2.0
    heartbeat_timeout: float | None = 45.0
    max_connections: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientConfig:
        """Settings from ``EVENTODB_URL`` (default ``http://localhost:8080``) and
        ``EVENTODB_TOKEN`` (default: no token)."""
        env = os.environ if env is None else env
        return cls(url=env.get(URL_VARIABLE) or DEFAULT_URL, token=env.get(TOKEN_VARIABLE) or None)

    def persistent(self) -> ClientConfig:
        """The same settings, retrying without limit: for subscriptions and consumers that
        must outlive a server restart (still with the capped backoff)."""
        return replace(self, retries=FOREVER)

    def http_options(self) -> HTTPOptions:
        """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient``."""
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return {
            "base_url": self.url.rstrip("/"),
            "headers": headers,
            "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout),
            "limits": httpx.Limits(
                max_connections=self.max_connections, max_keepalive_connections=20
            ),
        }

    def subscription_timeout(self) -> httpx.Timeout:
        """A subscription waits at most ``heartbeat_timeout`` for each read."""
        return httpx.Timeout(
            self.timeout, connect=self.connect_timeout, read=self.heartbeat_timeout
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry (or reconnect) number ``attempt`` (0-based): exponential,
        capped, with jitter so that many clients do not come back in step."""
        ceiling = min(self.max_backoff, self.backoff * 2.0**attempt)
        return ceiling * random.uniform(0.5, 1.0)


class Attempts:
    """The retry bookkeeping of one request (the same for the sync and the async client).

    After each try the client calls :meth:`after_error` or :meth:`after_response`; they answer
    how long to wait before trying again, or raise the error to give up with.
    """

    def __init__(self, config: ClientConfig, *, idempotent: bool) -> None:
        """``idempotent``: resending the request cannot do anything twice."""
        self.config = config
        self.idempotent = idempotent
        self.done = 0

    def after_error(self, exc: httpx.HTTPError) -> float:
        """The request failed without an answer: the delay before retrying.

        Raises:
            TransportError: when it must not or cannot be retried.
        """
        retry = isinstance(exc, _NEVER_SENT) or (
            self.idempotent and isinstance(exc, httpx.TransportError)
        )
        if not retry or self.done >= self.config.retries:
            raise TransportError(
                f"{type(exc).__name__} talking to {self.config.url}: {exc}"
            ) from exc
        return self._next()

    def after_response(self, response: httpx.Response) -> float | None:
        """The request got an answer: ``None`` when it is a success, else the delay before
        retrying.

        Raises:
            EventoDBError: the error the answer reports, when it must not be retried.
        """
        status = response.status_code
        if 200 <= status < 300:
            return None
        retry = status == _REFUSED_STATUS or (
            self.idempotent and status in _MAYBE_PROCESSED_STATUSES
        )
        if retry and self.done < self.config.retries:
            return self._next()
        raise self.error(response)

    @staticmethod
    def error(response: httpx.Response) -> EventoDBError:
        """The exception an error answer stands for (the body must have been read)."""
        return error_from_response(response.status_code, response.content)

    def _next(self) -> float:
        delay = self.config.delay(self.done)
        self.done += 1
        return delay
