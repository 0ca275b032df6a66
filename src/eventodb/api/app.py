"""The ASGI application: five exact paths, authentication, the RPC envelope (SPEC §2, §4.1-4.2),
and the web console's static files under ``/console/``.

A hand-written router: the surface is five fixed paths plus the console, and skipping a framework
keeps the per-request overhead to a few string comparisons (the hot path is ``POST /rpc``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from eventodb import __version__
from eventodb.api import imports, sse
from eventodb.api.auth import Authenticator, Caller, not_authorized
from eventodb.api.broker import Broker
from eventodb.api.console import PREFIX as CONSOLE_PREFIX
from eventodb.api.console import ConsoleFiles
from eventodb.api.requestlog import RequestLog
from eventodb.api.rpc import METHODS, OWN_NAMESPACE, Services
from eventodb.core import jsoncodec
from eventodb.core.errors import ErrorCode, EventoDBError, InvalidArgument, NamespaceNotFound
from eventodb.store.base import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 100 * 1024 * 1024
"""Request bodies above 100 MiB are refused with 413 (SPEC §2.2)."""

log = logging.getLogger("eventodb.http")

_JSON = (b"content-type", b"application/json")
_SERVER = (b"server", f"EventoDB/{__version__}".encode())
_HEALTH = jsoncodec.dumps({"status": "ok"})
_VERSION = jsoncodec.dumps({"version": __version__})
_GO_KIND = {dict: "object", str: "string", int: "number", float: "number", bool: "bool"}


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def _error(error: EventoDBError, status: int | None = None) -> tuple[int, bytes]:
    """Status and envelope body of an error (``status`` overrides the code's usual one)."""
    return status or error.http_status, jsoncodec.dumps(error.envelope())


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
    """

    def __init__(
        self,
        services: Services,
        *,
        sse_heartbeat: float = 15.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        request_log: RequestLog | None = None,
        console: ConsoleFiles | None = None,
    ) -> None:
        self.services = services
        self.console = console
        self.sse_heartbeat = sse_heartbeat
        self.max_body_bytes = max_body_bytes
        self.request_log = request_log or RequestLog(enabled=log.isEnabledFor(logging.INFO))

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
        try:
            status = await self._route(scope, receive, send)
        except _ClientGone:
            status = 499
        except Exception:
            # Never a stack trace in a response; the log gets it.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            with contextlib.suppress(Exception):  # fails if the response had already started
                await _send_json(send, 500, _INTERNAL)
        finally:
            svc.in_flight -= 1
        self.request_log(
            scope["method"], scope["path"], status, (time.perf_counter() - started) * 1000
        )

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> int:
        path = scope["path"]
        if path == "/rpc":
            return await self._rpc(scope, receive, send)
        if path == "/health":
            await _send_json(send, 200, _HEALTH)
            return 200
        if path == "/subscribe":
            return await self._subscribe(scope, receive, send)
        if path == "/version":
            await _send_json(send, 200, _VERSION)
            return 200
        if path == "/import":
            return await self._import(scope, receive, send)
        if self.console is not None and (
            path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        ):
            return await self._console(scope, send)
        await _send_json(send, 404, _NOT_FOUND)
        return 404

    async def _console(self, scope: Scope, send: Send) -> int:
        assert self.console is not None
        response = self.console.respond(
            scope["method"],
            scope["path"],
            if_none_match=_header(scope, b"if-none-match"),
            accept_encoding=_header(scope, b"accept-encoding"),
        )
        if response is None:
            await _send_json(send, 404, _NOT_FOUND)
            return 404
        await _send(send, response.status, [*response.headers, _SERVER], response.body)
        return response.status

    async def _authenticate(self, scope: Scope) -> Caller:
        return await self.services.auth.authenticate(
            scope["query_string"], _header(scope, b"authorization")
        )

    async def _rpc(self, scope: Scope, receive: Receive, send: Send) -> int:
        extra: list[tuple[bytes, bytes]] = []
        try:
            caller = await self._authenticate(scope)
            if caller.created_token is not None:
                extra.append((b"x-eventodb-token", caller.created_token.encode("latin-1")))
            if scope["method"] != "POST":
                status, body = _error(InvalidArgument("Only POST method allowed"), 405)
            else:
                raw = await self._read_body(scope, receive)
                if raw is None:
                    status, body = _error(InvalidArgument("Request body too large"), 413)
                else:
                    status, body = 200, await self._call(caller.namespace, raw)
        except EventoDBError as exc:
            status, body = _error(exc)
        await _send_json(send, status, body, extra)
        return status

    async def _call(self, namespace: str, raw: bytes) -> bytes:
        """Run one RPC request body; returns the JSON result. Raises EventoDBError."""
        request = _parse_request(raw)
        name = request[0]
        if not isinstance(name, str):
            raise InvalidArgument("Method name must be a string")
        method = METHODS.get(name)
        if method is None:
            raise _MethodNotFound(f"Unknown method: {name}")
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
        """The whole body, or ``None`` once it exceeds the limit (the rest is not read)."""
        limit = self.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _subscribe(self, scope: Scope, receive: Receive, send: Send) -> int:
        try:
            caller = await self._authenticate(scope)
        except EventoDBError as exc:
            status, body = _error(exc)
            await _send_json(send, status, body)
            return status
        seen = {"status": 200}
        created = caller.created_token

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                if created is not None:
                    headers = list(message.get("headers", []))
                    headers.append((b"x-eventodb-token", created.encode("latin-1")))
                    message = {**message, "headers": headers}
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

    async def _import(self, scope: Scope, receive: Receive, send: Send) -> int:
        """``POST /import`` (SPEC §7.2): auth and ``?force=true`` answer JSON errors, then the
        import streams its events (:mod:`eventodb.api.imports`)."""
        svc = self.services
        extra: list[tuple[bytes, bytes]] = []
        try:
            caller = await self._authenticate(scope)
            if caller.created_token is not None:
                extra.append((b"x-eventodb-token", caller.created_token.encode("latin-1")))
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                raise _TooLarge("Request body too large")
            if await imports.clear_if_forced(svc.store, caller.namespace, scope["query_string"]):
                # Positions restart at 1: what subscribers were told no longer holds. End their
                # streams so they reconnect and replay, rather than wait for positions they
                # believe they have seen.
                svc.broker.close_namespace(caller.namespace)
        except EventoDBError as exc:
            status, body = _error(exc, 413 if isinstance(exc, _TooLarge) else None)
            await _send_json(send, status, body, extra)
            return status
        return await imports.stream_import(
            receive,
            send,
            store=svc.store,
            namespace=caller.namespace,
            max_body_bytes=self.max_body_bytes,
            extra_headers=[_SERVER, *extra],
        )


class _MethodNotFound(EventoDBError):
    code = ErrorCode.METHOD_NOT_FOUND


class _TooLarge(InvalidArgument):
    """A declared body size above the limit (answered with 413)."""


def _parse_request(raw: bytes) -> list[Any]:
    """Body → non-empty JSON array (SPEC §4.1, §11.1). Raises InvalidArgument."""
    try:
        request = jsoncodec.loads(raw)
    except (jsoncodec.JSONError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, jsoncodec.JSONError) else "nesting too deep"
        raise InvalidArgument("Malformed JSON request", {"error": message}) from None
    if request is None:
        raise InvalidArgument("Missing method name")
    if not isinstance(request, list):
        kind = _GO_KIND.get(type(request), "value")
        raise InvalidArgument(
            "Malformed JSON request",
            {"error": f"json: cannot unmarshal {kind} into Go value of type []interface {{}}"},
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
) -> EventoDBApp:
    """An app over an already opened ``store`` (the CLI and in-process tests use this).

    The caller owns the store and the broker lifecycle (``broker.start()``/``close()``).

    Args:
        console: serve the web console at ``/console`` (its files are read now, once).
    """
    services = Services(
        store=store,
        auth=Authenticator(store, test_mode=test_mode),
        broker=broker if broker is not None else Broker(store),
        permissive_admin=permissive_admin,
    )
    return EventoDBApp(
        services,
        sse_heartbeat=sse_heartbeat,
        request_log=request_log,
        console=ConsoleFiles.from_package() if console else None,
    )
