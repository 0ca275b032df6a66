"""The ASGI application: a few exact paths, authentication, the RPC envelope (docs/API.md),
and the web console's static files under ``/console/``.

A hand-written router: the surface is a few fixed paths plus the console, and skipping a
framework keeps the per-request overhead to a few string comparisons (the hot path is
``POST /rpc``).

Every response carries ``X-Request-Id`` (the client's own when it sent a sane one), and the
request line in the log carries the same id, plus the cause of any 5xx.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from typing import Any

from eventodb import __version__
from eventodb.api import asgi, imports, sse
from eventodb.api.asgi import Receive, ResponseSend, Scope, Send
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
    EndpointNotFound,
    EventoDBError,
    InternalError,
    InvalidArgument,
    MethodNotFound,
    NamespaceNotFound,
    ServerBusy,
)
from eventodb.store.base import Store

MAX_BODY_BYTES = 100 * 1024 * 1024
"""Request bodies above 100 MiB are refused with 413 (docs/API.md, "Limits")."""
VALUES_SLACK = 64 * 1024
"""JSON values an RPC request may hold beyond ``--max-message-bytes`` (see _parse_request)."""
RETRY_AFTER_SECONDS = 1

log = logging.getLogger("eventodb.http")

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


class _Request(ResponseSend):
    """One request: its ``send`` (which adds the request id, and the token of a namespace created
    on first use, to whichever response it gets), and what the request line and the metrics
    need to know about it."""

    __slots__ = ("failure", "id", "namespace", "rpc")

    def __init__(self, send: Send, request_id: bytes) -> None:
        # ResponseSend's fields set here rather than through its __init__: one call less on
        # every request.
        self._send = send
        self.headers = [(b"x-request-id", request_id)]
        self.status = None
        self.id = request_id
        self.rpc: str | None = None
        self.namespace: str | None = None
        self.failure: str | None = None
        """Cause of a 5xx: exception class and message."""

    def authenticated(self, caller: Caller) -> None:
        self.namespace = caller.namespace
        if caller.created_token is not None:
            self.headers.append((b"x-eventodb-token", caller.created_token.encode("latin-1")))

    def failed(self, error: BaseException) -> None:
        message = error.message if isinstance(error, EventoDBError) else str(error)
        self.failure = f"{type(error).__name__}: {message}"

    async def error(self, error: EventoDBError, status: int | None = None) -> int:
        """The error envelope; a 5xx records its cause for the request line."""
        status = await super().error(error, status)
        if status >= 500:
            self.failed(error)
        return status


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
        req = _Request(send, _request_id(scope))
        try:
            await self._route(scope, receive, req)
            status = req.status or 500
        except asgi.ClientGone:
            status = 499
        except Exception as exc:
            status = 500
            # Never a stack trace in a response; the log gets it, with the request id.
            req.failed(exc)
            log.exception(
                "unhandled error on %s %s",
                scope["method"],
                scope["path"],
                extra={"fields": {"request_id": req.id.decode()}},
            )
            if not req.started:
                await req.json(500, _INTERNAL)
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
            req.failure,
        )

    async def _route(self, scope: Scope, receive: Receive, req: _Request) -> None:
        path = scope["path"]
        if path == "/rpc" or path == "/import":
            # These hold a body (and what it decodes to) in memory: bound how many run at once.
            if self.busy >= self.max_in_flight:
                req.failed(_BUSY)
                await req.json(503, _BUSY_BODY, _RETRY_AFTER)
                return
            self.busy += 1
            try:
                if path == "/rpc":
                    await self._rpc(scope, receive, req)
                else:
                    await self._import(scope, receive, req)
            finally:
                self.busy -= 1
        elif path == "/health":
            await req.json(200, _HEALTH)
        elif path == "/subscribe":
            await self._subscribe(scope, receive, req)
        elif path == "/ready":
            await self._ready(req)
        elif path == "/version":
            await req.json(200, _VERSION)
        elif path == "/metrics" and self.exposition is not None:
            await self._metrics(scope, req)
        elif self.console is not None and (
            path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        ):
            await self._console(scope, req)
        else:
            await req.json(404, _NOT_FOUND)

    async def _console(self, scope: Scope, req: _Request) -> None:
        assert self.console is not None
        response = self.console.respond(
            scope["method"],
            scope["path"],
            if_none_match=asgi.header(scope, b"if-none-match"),
            accept_encoding=asgi.header(scope, b"accept-encoding"),
        )
        if response is None:
            await req.json(404, _NOT_FOUND)
            return
        headers = [*response.headers, asgi.SERVER]
        await req.respond(response.status, headers, response.body)

    async def _authenticate(self, scope: Scope, req: _Request) -> Caller:
        caller = await self.services.auth.authenticate(
            scope["query_string"], asgi.header(scope, b"authorization")
        )
        req.authenticated(caller)
        return caller

    async def _rpc(self, scope: Scope, receive: Receive, req: _Request) -> None:
        try:
            caller = await self._authenticate(scope, req)
            if scope["method"] != "POST":
                await req.error(InvalidArgument("Only POST method allowed"), 405)
                return
            raw = await self._read_body(scope, receive)
            if raw is None:
                await req.error(InvalidArgument("Request body too large"), 413)
                return
            body = await self._call(caller.namespace, raw, req)
        except _TooLarge as exc:
            await req.error(exc, 413)
            return
        except EventoDBError as exc:
            await req.error(exc)
            return
        await req.json(200, body)

    async def _call(self, namespace: str, raw: bytes, req: _Request) -> bytes:
        """Run one RPC request body; returns the JSON result. Raises EventoDBError."""
        request = _parse_request(raw)
        name = request[0]
        if not isinstance(name, str):
            raise InvalidArgument("Method name must be a string")
        method = METHODS.get(name)
        if method is None:
            req.rpc = "unknown"
            raise MethodNotFound(f"Unknown method: {name}")
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
            ClientGone: the client disconnected.
        """
        if asgi.declares_more_than(scope, self.max_body_bytes):
            return None
        body = asgi.Body(receive, self.max_body_bytes)
        chunks: list[bytes] = []
        values = 0
        try:
            while not body.ended:
                chunk = await body.chunk()
                if chunk:
                    values += chunk.count(b",") + chunk.count(b"[") + chunk.count(b"{")
                    if values > self.max_values:
                        raise _TooLarge("Request body holds too many JSON values")
                    chunks.append(chunk)
        except asgi.BodyTooLarge:
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _subscribe(self, scope: Scope, receive: Receive, req: _Request) -> None:
        try:
            caller = await self._authenticate(scope, req)
        except EventoDBError as exc:
            await req.error(exc)
            return
        svc = self.services
        await sse.handle_subscribe(
            scope,
            receive,
            req,
            store=svc.store,
            broker=svc.broker,
            namespace=caller.namespace,
            heartbeat=self.sse_heartbeat,
        )

    async def _import(self, scope: Scope, receive: Receive, req: _Request) -> None:
        """``POST /import`` (docs/API.md, "Import"): auth and ``?force=true`` answer JSON
        errors, then the import streams its events (:mod:`eventodb.api.imports`)."""
        svc = self.services
        try:
            caller = await self._authenticate(scope, req)
            if asgi.declares_more_than(scope, self.max_body_bytes):
                raise _TooLarge("Request body too large")
            if await imports.clear_if_forced(svc.store, caller.namespace, scope["query_string"]):
                # Positions restart at 1: what subscribers were told no longer holds. End their
                # streams so they reconnect and replay, rather than wait for positions they
                # believe they have seen.
                svc.broker.close_namespace(caller.namespace)
        except EventoDBError as exc:
            await req.error(exc, 413 if isinstance(exc, _TooLarge) else None)
            return
        svc.imports_running += 1
        try:
            status = await imports.stream_import(
                receive,
                req,
                store=svc.store,
                namespace=caller.namespace,
                max_body_bytes=self.max_body_bytes,
            )
        finally:
            svc.imports_running -= 1
        if status == 499:
            raise asgi.ClientGone  # mid-body: the request line says so

    async def _ready(self, req: _Request) -> None:
        """``GET /ready``: 200 when every store component passes its check, else 503."""
        svc = self.services
        report = await svc.readiness.check()
        status = 200 if report.ready else 503
        body = {"status": report.status, "backend": svc.store.backend, "checks": report.checks()}
        await req.json(status, jsoncodec.dumps(body))

    async def _metrics(self, scope: Scope, req: _Request) -> None:
        """``GET /metrics``: the Prometheus text format; the admin token is required unless
        the server runs with ``--metrics-public``."""
        assert self.exposition is not None
        if not self.metrics_public:
            try:
                caller = await self._authenticate(scope, req)
                if caller.namespace != DEFAULT_NAMESPACE and not self.services.permissive_admin:
                    raise not_authorized(caller.namespace)
            except EventoDBError as exc:
                await req.error(exc)
                return
        body = self.exposition.render(await self.services.readiness.check())
        headers = [(b"content-type", CONTENT_TYPE), (b"content-length", str(len(body)).encode())]
        await req.respond(200, [*headers, asgi.SERVER], body)


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


async def _lifespan(receive: Receive, send: Send) -> None:
    """The CLI opens the store before listening; in-process hosts get a no-op lifespan."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


_NOT_FOUND = jsoncodec.dumps(EndpointNotFound("Endpoint not found").envelope())
_BUSY = ServerBusy("Too many requests in flight; retry later")
_BUSY_BODY = jsoncodec.dumps(_BUSY.envelope())
_RETRY_AFTER = (b"retry-after", str(RETRY_AFTER_SECONDS).encode())
_INTERNAL = jsoncodec.dumps(InternalError("Internal server error").envelope())


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
