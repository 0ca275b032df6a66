"""The ASGI application: a few exact paths, authentication, the RPC envelope (docs/API.md),
and the web console's static files under ``/console/``.

A hand-written router: the surface is a few fixed paths plus the console, and skipping a
framework keeps the per-request overhead to a few string comparisons (the hot path is
``POST /rpc``).

Every response carries ``X-Request-Id`` (the client's own when it sent a sane one), and the
request line in the log carries the same id, plus the cause of any 5xx.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from eventodb import __version__
from eventodb.api import imports, sse
from eventodb.api.auth import DEFAULT_NAMESPACE, Authenticator, Caller, not_authorized
from eventodb.api.broker import Broker
from eventodb.api.console import PREFIX as CONSOLE_PREFIX
from eventodb.api.console import ConsoleFiles
from eventodb.api.metrics import CONTENT_TYPE, Exposition, RequestMetrics
from eventodb.api.requestlog import RequestLog
from eventodb.api.rpc import METHODS, OWN_NAMESPACE, Services
from eventodb.config import DEFAULT_AUTH_CACHE_TTL, DEFAULT_MAX_IN_FLIGHT
from eventodb.core import jsoncodec
from eventodb.core.errors import (
    ErrorCode,
    EventoDBError,
    InvalidArgument,
    NamespaceNotFound,
    ServerBusy,
)
from eventodb.store.base import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 100 * 1024 * 1024
"""Request bodies above 100 MiB are refused with 413 (docs/API.md, "Limits")."""
VALUES_SLACK = 64 * 1024
"""JSON values an RPC request may hold beyond ``--max-message-bytes`` (see _parse_request)."""
RETRY_AFTER_SECONDS = 1

log = logging.getLogger("eventodb.http")

_JSON = (b"content-type", b"application/json")
_SERVER = (b"server", f"EventoDB/{__version__}".encode())
_HEALTH = jsoncodec.dumps({"status": "ok"})
_VERSION = jsoncodec.dumps({"version": __version__})
_KIND = {dict: "an object", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
"""Incoming ``X-Request-Id`` values we adopt; anything else is replaced by one of ours."""
_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)


def _request_id(scope: Scope) -> bytes:
    """The client's ``X-Request-Id`` when sane, else ``<process prefix>-<counter>`` (unique per
    process; the random prefix tells processes apart): cheaper than a UUID per request."""
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            if _SANE_REQUEST_ID.fullmatch(value):
                return bytes(value)
            break
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}".encode()


class _Request:
    """What the request line and the metrics need to know about one request."""

    __slots__ = ("error", "headers", "id", "namespace", "rpc")

    def __init__(self, request_id: bytes) -> None:
        self.id = request_id
        self.headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id)]
        """Extra response headers: the request id, and the token of a namespace created on
        first use."""
        self.rpc: str | None = None
        self.namespace: str | None = None
        self.error: str | None = None
        """Cause of a 5xx: exception class and message."""

    def authenticated(self, caller: Caller) -> None:
        self.namespace = caller.namespace
        if caller.created_token is not None:
            self.headers.append((b"x-eventodb-token", caller.created_token.encode("latin-1")))

    def failed(self, error: BaseException) -> None:
        message = error.message if isinstance(error, EventoDBError) else str(error)
        self.error = f"{type(error).__name__}: {message}"


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class EventoDBApp:
    """The server's ASGI callable.

    Args:
        services: store, authenticator and broker shared by every request.
        sse_heartbeat: seconds between SSE comment heartbeats (passed to the SSE handler).
        request_log: where request lines go (default: through :mod:`logging`).
        console: the web console's files; ``None`` turns ``/console`` off (plain 404).
        metrics: serve ``GET /metrics``; ``False`` answers it 404 and counts nothing.
        metrics_public: serve ``/metrics`` without a token (default: the admin token).
    """

    def __init__(
        self,
        services: Services,
        *,
        sse_heartbeat: float = 15.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        request_log: RequestLog | None = None,
        console: ConsoleFiles | None = None,
        metrics: bool = True,
        metrics_public: bool = False,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.services = services
        self.console = console
        self.sse_heartbeat = sse_heartbeat
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.busy = 0
        """``/rpc`` and ``/import`` requests being served (at most ``max_in_flight``)."""
        self.max_values = services.store.max_message_bytes + VALUES_SLACK
        self.request_log = request_log or RequestLog(enabled=log.isEnabledFor(logging.INFO))
        self.metrics = RequestMetrics() if metrics else None
        self.exposition = Exposition(services, self.metrics) if self.metrics else None
        self.metrics_public = metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        svc = self.services
        svc.in_flight += 1
        status = 500
        req = _Request(_request_id(scope))
        try:
            status = await self._route(scope, receive, send, req)
        except _ClientGone:
            status = 499
        except Exception as exc:
            # Never a stack trace in a response; the log gets it, with the request id.
            req.failed(exc)
            log.exception(
                "unhandled error on %s %s",
                scope["method"],
                scope["path"],
                extra={"fields": {"request_id": req.id.decode()}},
            )
            with contextlib.suppress(Exception):  # fails if the response had already started
                await _send_json(send, 500, _INTERNAL, req.headers)
        finally:
            svc.in_flight -= 1
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.record(scope["path"], req.rpc, status, seconds)
        self.request_log(
            scope["method"],
            scope["path"],
            status,
            seconds * 1000,
            req.rpc,
            req.namespace,
            req.id.decode(),
            req.error,
        )

    async def _route(self, scope: Scope, receive: Receive, send: Send, req: _Request) -> int:
        path = scope["path"]
        if path == "/rpc" or path == "/import":
            # These hold a body (and what it decodes to) in memory: bound how many run at once.
            if self.busy >= self.max_in_flight:
                req.failed(_BUSY)
                await _send_json(send, 503, _BUSY_BODY, [*req.headers, _RETRY_AFTER])
                return 503
            self.busy += 1
            try:
                if path == "/rpc":
                    return await self._rpc(scope, receive, send, req)
                return await self._import(scope, receive, send, req)
            finally:
                self.busy -= 1
        if path == "/health":
            await _send_json(send, 200, _HEALTH, req.headers)
            return 200
        if path == "/subscribe":
            return await self._subscribe(scope, receive, send, req)
        if path == "/ready":
            return await self._ready(send, req)
        if path == "/version":
            await _send_json(send, 200, _VERSION, req.headers)
            return 200
        if path == "/metrics" and self.exposition is not None:
            return await self._metrics(scope, send, req)
        if self.console is not None and (
            path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        ):
            return await self._console(scope, send, req)
        await _send_json(send, 404, _NOT_FOUND, req.headers)
        return 404

    async def _console(self, scope: Scope, send: Send, req: _Request) -> int:
        assert self.console is not None
        response = self.console.respond(
            scope["method"],
            scope["path"],
            if_none_match=_header(scope, b"if-none-match"),
            accept_encoding=_header(scope, b"accept-encoding"),
        )
        if response is None:
            await _send_json(send, 404, _NOT_FOUND, req.headers)
            return 404
        headers = [*response.headers, _SERVER, *req.headers]
        await _send(send, response.status, headers, response.body)
        return response.status

    async def _authenticate(self, scope: Scope, req: _Request) -> Caller:
        caller = await self.services.auth.authenticate(
            scope["query_string"], _header(scope, b"authorization")
        )
        req.authenticated(caller)
        return caller

    async def _rpc(self, scope: Scope, receive: Receive, send: Send, req: _Request) -> int:
        try:
            caller = await self._authenticate(scope, req)
            if scope["method"] != "POST":
                return await _send_error(
                    send, InvalidArgument("Only POST method allowed"), req, 405
                )
            raw = await self._read_body(scope, receive)
            if raw is None:
                return await _send_error(send, InvalidArgument("Request body too large"), req, 413)
            body = await self._call(caller.namespace, raw, req)
        except _TooLarge as exc:
            return await _send_error(send, exc, req, 413)
        except EventoDBError as exc:
            return await _send_error(send, exc, req)
        await _send_json(send, 200, body, req.headers)
        return 200

    async def _call(self, namespace: str, raw: bytes, req: _Request) -> bytes:
        """Run one RPC request body; returns the JSON result. Raises EventoDBError."""
        request = _parse_request(raw)
        name = request[0]
        if not isinstance(name, str):
            raise InvalidArgument("Method name must be a string")
        method = METHODS.get(name)
        if method is None:
            req.rpc = "unknown"
            raise _MethodNotFound(f"Unknown method: {name}")
        req.rpc = name
        try:
            result = await method(self.services, namespace, request[1:])
        except NamespaceNotFound as exc:
            if name in OWN_NAMESPACE and exc.namespace == namespace:
                # The caller's namespace vanished (another process deleted it).
                self.services.auth.forget_namespace(namespace, deleted=True)
                raise not_authorized(namespace) from None
            raise
        return jsoncodec.dumps(result)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` once it exceeds the limit (the rest is not read).

        Decoding multiplies memory (a body of small integers grows ~20 times), so the body is
        looked at as it arrives: every JSON value but the first in an array or object follows
        a comma, so commas plus brackets bound the values it holds. More than ``max_values``
        (the message size limit plus :data:`VALUES_SLACK`) cannot be a request that would
        succeed — the message it carries would be larger than the limit — and is refused
        before it is all read or decoded.

        Raises:
            _TooLarge: too many JSON values (answered 413).
        """
        limit = self.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        values = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    return None
                values += chunk.count(b",") + chunk.count(b"[") + chunk.count(b"{")
                if values > self.max_values:
                    raise _TooLarge("Request body holds too many JSON values")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _subscribe(self, scope: Scope, receive: Receive, send: Send, req: _Request) -> int:
        try:
            caller = await self._authenticate(scope, req)
        except EventoDBError as exc:
            return await _send_error(send, exc, req)
        seen = {"status": 200}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *req.headers]}
            await send(message)

        svc = self.services
        await sse.handle_subscribe(
            scope,
            receive,
            tracking_send,
            store=svc.store,
            broker=svc.broker,
            namespace=caller.namespace,
            heartbeat=self.sse_heartbeat,
        )
        return seen["status"]

    async def _import(self, scope: Scope, receive: Receive, send: Send, req: _Request) -> int:
        """``POST /import`` (docs/API.md, "Import"): auth and ``?force=true`` answer JSON
        errors, then the import streams its events (:mod:`eventodb.api.imports`)."""
        svc = self.services
        try:
            caller = await self._authenticate(scope, req)
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                raise _TooLarge("Request body too large")
            if await imports.clear_if_forced(svc.store, caller.namespace, scope["query_string"]):
                # Positions restart at 1: what subscribers were told no longer holds. End their
                # streams so they reconnect and replay, rather than wait for positions they
                # believe they have seen.
                svc.broker.close_namespace(caller.namespace)
        except EventoDBError as exc:
            return await _send_error(send, exc, req, 413 if isinstance(exc, _TooLarge) else None)
        svc.imports_running += 1
        try:
            return await imports.stream_import(
                receive,
                send,
                store=svc.store,
                namespace=caller.namespace,
                max_body_bytes=self.max_body_bytes,
                extra_headers=[_SERVER, *req.headers],
            )
        finally:
            svc.imports_running -= 1

    async def _ready(self, send: Send, req: _Request) -> int:
        """``GET /ready``: 200 when every store component passes its check, else 503."""
        svc = self.services
        report = await svc.readiness.check()
        status = 200 if report.ready else 503
        body = {"status": report.status, "backend": svc.store.backend, "checks": report.checks()}
        await _send_json(send, status, jsoncodec.dumps(body), req.headers)
        return status

    async def _metrics(self, scope: Scope, send: Send, req: _Request) -> int:
        """``GET /metrics``: the Prometheus text format; the admin token is required unless
        the server runs with ``--metrics-public``."""
        assert self.exposition is not None
        if not self.metrics_public:
            try:
                caller = await self._authenticate(scope, req)
                if caller.namespace != DEFAULT_NAMESPACE and not self.services.permissive_admin:
                    raise not_authorized(caller.namespace)
            except EventoDBError as exc:
                return await _send_error(send, exc, req)
        body = self.exposition.render(await self.services.readiness.check())
        headers = [(b"content-type", CONTENT_TYPE), (b"content-length", str(len(body)).encode())]
        await _send(send, 200, [*headers, _SERVER, *req.headers], body)
        return 200


class _MethodNotFound(EventoDBError):
    code = ErrorCode.METHOD_NOT_FOUND


class _TooLarge(InvalidArgument):
    """A declared body size above the limit (answered with 413)."""


def _parse_request(raw: bytes) -> list[Any]:
    """Body → non-empty JSON array (docs/API.md, "RPC" and "Limits"). Raises InvalidArgument."""
    try:
        request = jsoncodec.loads(raw)
    except (jsoncodec.JSONError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, jsoncodec.JSONError) else "nesting too deep"
        raise InvalidArgument("Malformed JSON request", {"error": message}) from None
    if request is None:
        raise InvalidArgument("Missing method name")
    if not isinstance(request, list):
        kind = _KIND.get(type(request), "another value")
        raise InvalidArgument(
            "Malformed JSON request",
            {
                "error": "the request must be a JSON array of the method name and its arguments,"
                f' e.g. ["stream.get", "account-123"]; got {kind}'
            },
        )
    # Counting brackets is C-speed; the full walk runs only when deep nesting is possible.
    if raw.count(b"[") + raw.count(b"{") > jsoncodec.MAX_DEPTH and jsoncodec.depth_exceeds(
        request, jsoncodec.MAX_DEPTH
    ):
        raise InvalidArgument(
            "Malformed JSON request",
            {"error": f"nesting deeper than {jsoncodec.MAX_DEPTH} levels"},
        )
    if not request:
        raise InvalidArgument("Missing method name")
    return request


async def _send_error(
    send: Send, error: EventoDBError, req: _Request, status: int | None = None
) -> int:
    """Answer with the error envelope (``status`` overrides the code's usual one); a 5xx
    records its cause for the request line."""
    status = status or error.http_status
    if status >= 500:
        req.failed(error)
    await _send_json(send, status, jsoncodec.dumps(error.envelope()), req.headers)
    return status


async def _send_json(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode()), _SERVER]
    if extra:
        headers.extend(extra)
    await _send(send, status, headers, body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """The CLI opens the store before listening; in-process hosts get a no-op lifespan."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


_NOT_FOUND = jsoncodec.dumps({"error": {"code": "NOT_FOUND", "message": "Endpoint not found"}})
_BUSY = ServerBusy("Too many requests in flight; retry later")
_BUSY_BODY = jsoncodec.dumps(_BUSY.envelope())
_RETRY_AFTER = (b"retry-after", str(RETRY_AFTER_SECONDS).encode())
_INTERNAL = jsoncodec.dumps(
    {"error": {"code": "INTERNAL_ERROR", "message": "Internal server error"}}
)


def create_app(
    store: Store,
    *,
    test_mode: bool = False,
    permissive_admin: bool = False,
    sse_heartbeat: float = 15.0,
    broker: Broker | None = None,
    request_log: RequestLog | None = None,
    console: bool = True,
    metrics: bool = True,
    metrics_public: bool = False,
    auth_cache_ttl: float = DEFAULT_AUTH_CACHE_TTL,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> EventoDBApp:
    """An app over an already opened ``store`` (the CLI and in-process tests use this).

    The caller owns the store and the broker lifecycle (``broker.start()``/``close()``).

    Args:
        console: serve the web console at ``/console`` (its files are read now, once).
    """
    services = Services(
        store=store,
        auth=Authenticator(store, test_mode=test_mode, cache_ttl=auth_cache_ttl),
        broker=broker if broker is not None else Broker(store),
        permissive_admin=permissive_admin,
    )
    return EventoDBApp(
        services,
        sse_heartbeat=sse_heartbeat,
        request_log=request_log,
        console=ConsoleFiles.from_package() if console else None,
        metrics=metrics,
        metrics_public=metrics_public,
        max_in_flight=max_in_flight,
    )
