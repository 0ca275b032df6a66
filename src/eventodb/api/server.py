"""Running the server: bind, open the store, ensure ``default``, print the banner, serve.

uvicorn (httptools, in a uvloop loop where available) serves the app inside our own event loop,
on sockets we bind first, so that a port in use is reported before anything else happens, the
store is opened and the default namespace ensured before connections are accepted, and shutdown
can end SSE streams first (see ``docs/DESIGN.md``, "HTTP server").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import os
import signal
import socket
import time
from collections.abc import Generator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from eventodb import __version__
from eventodb.api.app import create_app
from eventodb.api.auth import DEFAULT_NAMESPACE
from eventodb.api.broker import Broker
from eventodb.api.requestlog import RequestLog
from eventodb.config import Backend, Settings
from eventodb.core import tokens
from eventodb.core.errors import EventoDBError, NamespaceNotFound
from eventodb.logs import LogOutput
from eventodb.store.base import Store
from eventodb.store.postgres import PostgresStore
from eventodb.store.sqlite import SQLiteStore
from eventodb.transfer.progress import Progress

if TYPE_CHECKING:
    from eventodb.api.connections import ConnectionGuard

log = logging.getLogger("eventodb")

DEFAULT_DESCRIPTION = "Default namespace"
RULE = "=" * 80
GRACEFUL_SHUTDOWN_SECONDS = 30
STALLED_GRACE_SECONDS = 1.0
"""How long shutdown lets closed connections flush before dropping them (see _drop_stalled)."""


class StartupError(Exception):
    """A fatal start-up problem; the CLI prints it and exits 1."""


def build_store(backend: Backend, settings: Settings) -> Store:
    """The store for ``backend`` (not opened)."""
    if backend.kind == "postgres":
        assert backend.dsn is not None  # a Postgres backend always has its URL
        return PostgresStore(backend.dsn, max_message_bytes=settings.max_message_bytes)
    return SQLiteStore(
        backend.data_dir if backend.kind == "sqlite" else None,
        registry_file=backend.registry_file,
        synchronous=settings.sqlite_sync.upper(),
        max_message_bytes=settings.max_message_bytes,
        file_mode=settings.file_mode,
    )


class MigrationProgress:
    """Shows long migration steps at start-up (filling older messages of a big namespace): a
    progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self) -> None:
        self._bars: dict[str, Progress] = {}

    def __call__(self, namespace: str, done: int, total: int) -> None:
        bar = self._bars.get(namespace)
        if bar is None:
            bar = self._bars[namespace] = Progress(
                f"Migrating namespace {namespace!r}", total=total
            )
        bar.advance(done - bar.messages)
        if done >= total:
            bar.close()
            del self._bars[namespace]
            log.info("namespace %r: %d older messages migrated", namespace, total)


@dataclass(frozen=True)
class DefaultNamespace:
    token: str | None
    """The working token of ``default``; ``None`` when an existing one was kept (not known)."""
    created: bool = False
    updated: bool = False
    generated: bool = False
    """The token was made up now (no ``--token``): this is the only time anyone sees it."""


def check_default_token(token: str) -> None:
    """``--token`` must parse and name ``default`` (docs/API.md). Raises StartupError."""
    try:
        namespace = tokens.parse(token)
    except tokens.TokenFormatError as exc:
        raise StartupError(f"invalid --token: {exc}") from None
    if namespace != DEFAULT_NAMESPACE:
        raise StartupError(
            f"invalid --token: it is a token of namespace '{namespace}', not '{DEFAULT_NAMESPACE}'"
        )


async def ensure_default(store: Store, token: str | None) -> DefaultNamespace:
    """Create ``default`` or bring its stored token hash in line with ``--token``."""
    if token is not None:
        check_default_token(token)
    try:
        record = await store.get_namespace(DEFAULT_NAMESPACE)
    except NamespaceNotFound:
        generated = token is None
        token = token or tokens.generate(DEFAULT_NAMESPACE)
        await store.create_namespace(
            DEFAULT_NAMESPACE, tokens.hash_token(token), DEFAULT_DESCRIPTION
        )
        log.info("created the default namespace")
        return DefaultNamespace(token, created=True, generated=generated)
    if token is None:
        log.info("default namespace exists; keeping its token")
        return DefaultNamespace(None)
    if not tokens.matches(token, record.token_hash):
        await store.set_token_hash(DEFAULT_NAMESPACE, tokens.hash_token(token))
        log.warning("default namespace token replaced by the one given with --token")
        return DefaultNamespace(token, updated=True)
    return DefaultNamespace(token)


TOKEN_NOTE = (
    "Keep this token: it is shown only now (only its hash is stored). Pass it with --token at"
    " the next start, or mint a new one with 'eventodb token default'."
)
KEPT_NOTE = (
    "(existing token kept: the default namespace already exists and only the hash of its "
    "token is stored; pass --token to replace it)"
)


def banner(default: DefaultNamespace) -> str:
    """The token banner, printed to stdout whatever the log level: a rule, ``DEFAULT NAMESPACE
    TOKEN:``, the token alone on its line, a rule; then, for a generated token, once, that it
    is shown only now."""
    text = f"{RULE}\nDEFAULT NAMESPACE TOKEN:\n{default.token or KEPT_NOTE}\n{RULE}"
    return f"{text}\n{TOKEN_NOTE}" if default.created and default.generated else text


def print_banner(default: DefaultNamespace, output: LogOutput) -> None:
    """The banner in the log's format: as text on the console, one JSON line otherwise."""
    if not output.json:
        output.write_text(banner(default))
        return
    fields: dict[str, Any] = {"token": default.token}
    if default.token is None:
        fields["note"] = KEPT_NOTE.strip("()")
    elif default.created and default.generated:
        fields["note"] = TOKEN_NOTE
    output.emit(time.time(), "info", "eventodb", "DEFAULT NAMESPACE TOKEN", fields)


def listen_address(host: str, port: int) -> str:
    """``host:port`` as users write it (``:8080`` for every interface, ``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets for ``host:port``; every interface when ``host`` is
    empty, one socket per address family, like Go's ``:port`` and asyncio's ``create_server``.

    Raises:
        StartupError: ``cannot listen on HOST:PORT: <reason>`` (e.g. address already in use).
    """
    where = listen_address(host, port)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {where}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # an address family this host does not support
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and sockets:  # one ephemeral port for every family
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRNOTAVAIL and not host:
                    continue  # the family is not enabled here (no IPv6)
                raise
            sockets.append(sock)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise StartupError(f"cannot listen on {where}: {reason}") from None
    if not sockets:
        raise StartupError(f"cannot listen on {where}: no usable address")
    return sockets


def http_protocol(
    settings: Settings, transports: set[asyncio.WriteTransport]
) -> tuple[type[asyncio.Protocol], ConnectionGuard | None]:
    """uvicorn's httptools protocol with our connection limits, and the guard enforcing them.

    The protocol keeps the open transports in ``transports``, so shutdown can find connections
    stuck on a client that does not read without reaching into uvicorn's internals. Without
    httptools: uvicorn's h11 protocol, whose own cap on an incomplete request head stands in
    for ``--max-header-bytes``; the read timeouts and the connection cap are then not enforced
    (warned at start-up).
    """
    try:
        importlib.import_module("httptools")
    except ImportError:
        pass
    else:
        # Imported here: the module subclasses uvicorn's httptools protocol.
        connections = importlib.import_module("eventodb.api.connections")
        limits = connections.ConnectionLimits(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_connections=settings.max_connections,
        )
        guard: ConnectionGuard = connections.ConnectionGuard(limits, transports)
        return guard.protocol_class(), guard
    log.warning(
        "httptools is not installed: using uvicorn's h11 protocol, without the header and body"
        " timeouts and the connection cap (--header-timeout, --body-timeout, --max-connections)"
    )
    base: type[Any] = importlib.import_module("uvicorn.protocols.http.h11_impl").H11Protocol

    class TrackedProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            self.eventodb_transport = transport
            transports.add(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            transports.discard(self.eventodb_transport)
            super().connection_lost(exc)

    return TrackedProtocol, None


class _Server(uvicorn.Server):
    """uvicorn with our shutdown order and plain exit status.

    uvicorn re-raises a captured SIGTERM after shutting down (so the process would die by the
    signal); we want exit status 0 after a graceful stop, so the handlers are ours.
    """

    def __init__(
        self, config: uvicorn.Config, broker: Broker, transports: set[asyncio.WriteTransport]
    ) -> None:
        super().__init__(config)
        self.broker = broker
        self.transports = transports

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        def stop(sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            addresses = []
            for sock in sockets or []:
                host, port = sock.getsockname()[:2]
                addresses.append(f"http://{listen_address(host, port)}")
            log.info("EventoDB %s listening on %s", __version__, ", ".join(addresses))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        log.info("shutting down: ending subscriptions, finishing in-flight requests")
        await self.broker.close()
        await _drop_stalled(self.transports)
        await super().shutdown(sockets)


async def _drop_stalled(
    transports: set[asyncio.WriteTransport], grace: float = STALLED_GRACE_SECONDS
) -> None:
    """Abort connections the app has closed but whose unsent bytes the client does not read.

    An SSE client that stopped reading keeps its socket open until the pokes queued for it
    drain, which may be never; uvicorn would wait for it for the whole graceful-shutdown timeout.
    Connections still serving a response (not closing) are left alone.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        pending = [t for t in list(transports) if t.get_write_buffer_size() > 0]
        if not pending:
            return
        if loop.time() >= deadline:
            for transport in pending:
                if transport.is_closing():
                    transport.abort()
            return
        await asyncio.sleep(0.05)


def read_token_file(path: str) -> str:
    """The token in ``--token-file`` (surrounding whitespace ignored). Raises StartupError."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"cannot read --token-file {path}: {exc}") from None
    if not token:
        raise StartupError(f"--token-file {path} is empty")
    return token


def _admin_token(settings: Settings) -> str | None:
    """``--token`` (or ``EVENTODB_TOKEN``), or the content of ``--token-file``."""
    if settings.token_file is None:
        return settings.token
    if settings.token is not None:
        raise StartupError("give either --token (EVENTODB_TOKEN) or --token-file, not both")
    return read_token_file(settings.token_file)


def _raise_descriptor_limit(connections: int) -> None:
    """Make room for ``connections`` sockets plus files and database connections.

    Like Go's runtime, raise the soft limit on open files up to the hard limit when needed;
    warn when even that is too low (connections beyond it would fail to be accepted).
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return
    wanted = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "the open-file limit (%d) is too low for --max-connections %d: raise it (ulimit -n)"
            " or lower --max-connections",
            soft,
            connections,
        )


async def serve(settings: Settings, backend: Backend, output: LogOutput) -> int:
    """Run until SIGINT/SIGTERM. Returns the exit status.

    Args:
        output: where the banner and request lines go (the log output of the process).
    """
    admin_token = _admin_token(settings)
    if admin_token is not None:
        check_default_token(admin_token)
    sockets = bind(settings.host, settings.port)
    try:
        return await _serve(settings, backend, output, sockets, admin_token)
    finally:
        for sock in sockets:
            sock.close()


async def _serve(
    settings: Settings,
    backend: Backend,
    output: LogOutput,
    sockets: list[socket.socket],
    admin_token: str | None,
) -> int:
    _log_backend(settings, backend)
    store = build_store(backend, settings)
    store.on_progress = MigrationProgress()
    store.stats.max_namespaces = settings.metrics_namespaces
    try:
        await store.open()
    except EventoDBError as exc:
        raise StartupError(exc.message) from None
    try:
        applied = store.migrations_applied
        if applied:
            log.info("applied %d namespace migration(s)", applied)
        default = await ensure_default(store, admin_token)
        print_banner(default, output)
        broker = Broker(store)
        await broker.start()
        request_log = RequestLog(
            output, enabled=logging.getLogger("eventodb.http").isEnabledFor(logging.INFO)
        )
        app = create_app(
            store,
            test_mode=settings.test_mode,
            permissive_admin=settings.permissive_admin,
            sse_heartbeat=settings.sse_heartbeat,
            broker=broker,
            request_log=request_log,
            console=not settings.no_console,
            metrics=settings.metrics,
            metrics_public=settings.metrics_public,
            auth_cache_ttl=settings.auth_cache_ttl,
            max_in_flight=settings.max_in_flight,
        )
        if not settings.no_console:
            log.info("web console at /console/ (--no-console turns it off)")
        if default.token is not None:
            app.services.auth.remember(default.token, DEFAULT_NAMESPACE)
        transports: set[asyncio.WriteTransport] = set()
        protocol, guard = http_protocol(settings, transports)
        _raise_descriptor_limit(settings.max_connections)
        config = uvicorn.Config(
            app,
            http=protocol,
            ws="none",
            h11_max_incomplete_event_size=settings.max_header_bytes,
            lifespan="off",
            access_log=False,
            server_header=False,
            # The app never reads the client's address, so uvicorn's X-Forwarded-For rewriting
            # (a middleware around every request) would be work for nothing.
            proxy_headers=False,
            log_config=None,
            timeout_keep_alive=settings.idle_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = _Server(config, broker, transports)
        if guard is not None:
            guard.start()
        try:
            await server.serve(sockets)
        finally:
            if guard is not None:
                await guard.stop()
        request_log.flush()
        log.info("stopped")
        return 0
    except EventoDBError as exc:
        raise StartupError(exc.message) from None
    finally:
        await store.close()


def _log_backend(settings: Settings, backend: Backend) -> None:
    if backend.kind == "postgres":
        log.info("backend: postgres")
    elif backend.kind == "memory":
        log.info("backend: SQLite in memory (data is lost at exit)")
    elif backend.embedded_default:
        log.info("no --db-url given: using the embedded SQLite store in %s", backend.data_dir)
    else:
        log.info("backend: SQLite files in %s", backend.data_dir)
    if settings.test_mode:
        log.warning(
            "TEST MODE: relaxed authentication (unknown tokens run as 'default', token hashes "
            "are not checked, unknown namespaces are created on first use); never use in production"
        )
    if settings.db_type:
        log.info("--db-type %s accepted and ignored", settings.db_type)
    if settings.permissive_admin:
        log.warning("permissive admin: any valid token may administer any namespace")
    if settings.host in ("", "0.0.0.0", "::"):
        log.warning(
            "listening on every network interface over plain HTTP: tokens travel in clear text"
            " unless a TLS-terminating proxy is in front (use --host 127.0.0.1 to stay local)"
        )
