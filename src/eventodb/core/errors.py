"""Error codes, their HTTP statuses (docs/API.md, "Errors") and the exception hierarchy.

The store raises these exceptions; the HTTP layer turns any of them into the JSON error envelope
through :data:`HTTP_STATUS`, the only code → status table.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_INVALID_TOKEN = "AUTH_INVALID_TOKEN"
    AUTH_UNAUTHORIZED = "AUTH_UNAUTHORIZED"
    NAMESPACE_NOT_FOUND = "NAMESPACE_NOT_FOUND"
    STREAM_NOT_FOUND = "STREAM_NOT_FOUND"
    NAMESPACE_EXISTS = "NAMESPACE_EXISTS"
    STREAM_VERSION_CONFLICT = "STREAM_VERSION_CONFLICT"
    DUPLICATE_MESSAGE_ID = "DUPLICATE_MESSAGE_ID"
    BACKEND_ERROR = "BACKEND_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    NOT_FOUND = "NOT_FOUND"
    CLEAR_FAILED = "CLEAR_FAILED"
    SERVER_BUSY = "SERVER_BUSY"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.METHOD_NOT_FOUND: 404,
    ErrorCode.AUTH_REQUIRED: 401,
    ErrorCode.AUTH_INVALID_TOKEN: 401,
    ErrorCode.AUTH_UNAUTHORIZED: 403,
    ErrorCode.NAMESPACE_NOT_FOUND: 404,
    ErrorCode.STREAM_NOT_FOUND: 404,
    ErrorCode.NAMESPACE_EXISTS: 409,
    ErrorCode.STREAM_VERSION_CONFLICT: 409,
    ErrorCode.DUPLICATE_MESSAGE_ID: 409,
    ErrorCode.BACKEND_ERROR: 500,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CLEAR_FAILED: 500,
    ErrorCode.SERVER_BUSY: 503,
}
"""HTTP status per code. ``INVALID_REQUEST`` for a wrong HTTP method is the one 405 exception."""


class EventoDBError(Exception):
    """Base of every error the store or the API reports to a client."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def envelope(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` body; ``details`` is omitted when empty."""
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InternalError(EventoDBError):
    """The server itself failed unexpectedly; the log has the details, the client a generic
    message."""

    code = ErrorCode.INTERNAL_ERROR


class EndpointNotFound(EventoDBError):
    """No endpoint at the requested path."""

    code = ErrorCode.NOT_FOUND


class MethodNotFound(EventoDBError):
    """An RPC method name the server does not know."""

    code = ErrorCode.METHOD_NOT_FOUND


class InvalidArgument(EventoDBError):
    """A caller-supplied value breaks a rule; nothing was read or written."""

    code = ErrorCode.INVALID_REQUEST


class VersionConflict(EventoDBError):
    """The stream's version is not the expected one; nothing was written."""

    code = ErrorCode.STREAM_VERSION_CONFLICT

    def __init__(self, stream_name: str, expected: int, actual: int) -> None:
        super().__init__(
            f"Expected version {expected}, stream is at version {actual}",
            {"expected": expected, "actual": actual},
        )
        self.stream_name = stream_name
        self.expected = expected
        self.actual = actual


class DuplicateMessageId(EventoDBError):
    """A message with this id exists with different content (an identical one is a retry)."""

    code = ErrorCode.DUPLICATE_MESSAGE_ID

    def __init__(self, message_id: str, stream_name: str) -> None:
        super().__init__(
            f"Message id {message_id} already exists with different content",
            {"id": message_id, "stream": stream_name},
        )
        self.message_id = message_id
        self.stream_name = stream_name


class NamespaceExists(EventoDBError):
    """The id is taken, or the storage name it maps to is (``reason`` says which)."""

    code = ErrorCode.NAMESPACE_EXISTS

    def __init__(self, namespace: str, reason: str | None = None) -> None:
        super().__init__(reason or f"Namespace '{namespace}' already exists")
        self.namespace = namespace


class NamespaceNotFound(EventoDBError):
    code = ErrorCode.NAMESPACE_NOT_FOUND

    def __init__(self, namespace: str) -> None:
        super().__init__(f"Namespace '{namespace}' not found")
        self.namespace = namespace


class PositionExists(EventoDBError):
    """An imported record collides with an existing global position, id or stream position."""

    code = ErrorCode.INVALID_REQUEST

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index
        """Index, within the batch, of the offending record."""


class BackendError(EventoDBError):
    """The storage failed (unreachable, corrupted, dropped behind our back)."""

    code = ErrorCode.BACKEND_ERROR


class ServerBusy(EventoDBError):
    """The server is at a limit (connections, requests in flight); retry later (503)."""

    code = ErrorCode.SERVER_BUSY


class AuthError(EventoDBError):
    """Authentication or authorization failed; ``code`` is set per instance."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details)
        self.code = code
