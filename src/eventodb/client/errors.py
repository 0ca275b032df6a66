"""Exceptions of the client: one class per server error code, plus the client's own failures.

Every exception derives from :class:`EventoDBError` and carries the error ``code``, the
``message``, the ``details`` object and the HTTP ``status`` of the answer. The server's codes
map to classes through :data:`ERRORS_BY_CODE`, the only such table; a code this version does not
know still raises :class:`EventoDBError` with that code, so newer servers do not break older
clients.
"""

from __future__ import annotations

import json
from typing import Any


class EventoDBError(Exception):
    """Base of every error the client raises.

    Attributes:
        code: the server's error code (``STREAM_VERSION_CONFLICT``, ...) or, for failures the
            client detects itself, ``TRANSPORT_ERROR`` / ``UNEXPECTED_RESPONSE``.
        message: the human-readable text.
        details: the error's ``details`` object (empty when the server sent none).
        status: the HTTP status of the answer; ``None`` when there was no answer.
    """

    default_code = "UNKNOWN_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidRequest(EventoDBError):
    """The request broke a rule (a bad argument, a malformed subscription); nothing happened."""

    default_code = "INVALID_REQUEST"


class MethodNotFound(EventoDBError):
    """The server does not know the RPC method (an older server, or a typo in :meth:`rpc`)."""

    default_code = "METHOD_NOT_FOUND"


class AuthError(EventoDBError):
    """Base of the authentication and authorization failures."""

    default_code = "AUTH_REQUIRED"


class AuthRequired(AuthError):
    """No token was sent (HTTP 401)."""

    default_code = "AUTH_REQUIRED"


class AuthInvalidToken(AuthError):
    """The token is malformed (HTTP 401)."""

    default_code = "AUTH_INVALID_TOKEN"


class AuthUnauthorized(AuthError):
    """The token is not valid for its namespace, or may not do this (HTTP 403)."""

    default_code = "AUTH_UNAUTHORIZED"


class NamespaceNotFound(EventoDBError):
    """The namespace does not exist."""

    default_code = "NAMESPACE_NOT_FOUND"


class NamespaceExists(EventoDBError):
    """A namespace with this id exists already."""

    default_code = "NAMESPACE_EXISTS"


class StreamNotFound(EventoDBError):
    """Reserved by the protocol; current servers answer an empty result instead."""

    default_code = "STREAM_NOT_FOUND"


class ExpectedVersionError(EventoDBError):
    """The stream was not at the expected version; nothing was written."""

    default_code = "STREAM_VERSION_CONFLICT"

    @property
    def expected(self) -> int | None:
        """The version the write expected."""
        value = self.details.get("expected")
        return value if isinstance(value, int) else None

    @property
    def actual(self) -> int | None:
        """The stream's version when the write was refused (``-1``: the stream was empty)."""
        value = self.details.get("actual")
        return value if isinstance(value, int) else None


class DuplicateMessageId(EventoDBError):
    """A message with this id exists with a different stream, type, data or metadata.

    (Resending the *same* message is not an error: the server answers with its positions.)
    """

    default_code = "DUPLICATE_MESSAGE_ID"

    @property
    def message_id(self) -> str | None:
        """The id that is taken."""
        value = self.details.get("id")
        return value if isinstance(value, str) else None

    @property
    def stream(self) -> str | None:
        """The stream of the message that holds the id."""
        value = self.details.get("stream")
        return value if isinstance(value, str) else None


class BackendError(EventoDBError):
    """The server's storage failed."""

    default_code = "BACKEND_ERROR"


class InternalError(EventoDBError):
    """The server failed unexpectedly."""

    default_code = "INTERNAL_ERROR"


class NotFound(EventoDBError):
    """The HTTP path does not exist (check the URL: it must be the server's root)."""

    default_code = "NOT_FOUND"


class ClearFailed(EventoDBError):
    """A forced import could not empty the namespace."""

    default_code = "CLEAR_FAILED"


class ServerBusy(EventoDBError):
    """The server is at a limit (open connections, requests in flight): HTTP 503, retried."""

    default_code = "SERVER_BUSY"


class TransportError(EventoDBError):
    """No answer: the connection failed or timed out, also after the retries.

    The underlying ``httpx`` exception is the ``__cause__``.
    """

    default_code = "TRANSPORT_ERROR"


class UnexpectedResponse(EventoDBError):
    """An answer that is not EventoDB's (a proxy's error page, a 503 with a plain body...)."""

    default_code = "UNEXPECTED_RESPONSE"


ERRORS_BY_CODE: dict[str, type[EventoDBError]] = {
    cls.default_code: cls
    for cls in (
        InvalidRequest,
        MethodNotFound,
        AuthRequired,
        AuthInvalidToken,
        AuthUnauthorized,
        NamespaceNotFound,
        NamespaceExists,
        StreamNotFound,
        ExpectedVersionError,
        DuplicateMessageId,
        BackendError,
        InternalError,
        NotFound,
        ClearFailed,
        ServerBusy,
    )
}
"""The class raised for each error code the server sends."""


def error_from_response(status: int, body: bytes) -> EventoDBError:
    """The exception for a non-success answer.

    Args:
        status: the HTTP status.
        body: the response body: normally the ``{"error": {...}}`` envelope; ``/subscribe``
            answers its validation errors as plain text with status 400.
    """
    envelope = _envelope(body)
    if envelope is not None:
        code, message, details = envelope
        cls = ERRORS_BY_CODE.get(code, EventoDBError)
        return cls(message, code=code, details=details, status=status)
    text = body.decode("utf-8", "replace").strip()
    if status == 400 and text:
        return InvalidRequest(text, status=status)
    return UnexpectedResponse(
        f"HTTP {status}: {text[:200] or 'empty body'}", status=status, details={"body": text}
    )


def _envelope(body: bytes) -> tuple[str, str, dict[str, Any]] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return None
    details = error.get("details")
    return (
        error["code"],
        str(error.get("message", "")),
        details if isinstance(details, dict) else {},
    )
