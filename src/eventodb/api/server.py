"""Running the server: open the store, ensure ``default``, print the banner, listen (SPEC §10.3).

uvicorn (uvloop + httptools) serves the app inside our own event loop, so the store is opened
and the default namespace ensured before the listener exists, and shutdown can end SSE streams
first (see ``docs/DESIGN.md``, "HTTP server").
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import socket
import sys
from collections.abc import Generator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from eventodb import __version__
from eventodb.api.app import create_app
from eventodb.api.auth import DEFAULT_NAMESPACE
from eventodb.api.broker import Broker
from eventodb.api.requestlog import RequestLog
from eventodb.config import Backend, Settings
from eventodb.core import tokens
from eventodb.core.errors import EventoDBError, NamespaceNotFound
from eventodb.store.base import Store

log = logging.getLogger("eventodb")

DEFAULT_DESCRIPTION = "Default namespace"
RULE = "=" * 80
GRACEFUL_SHUTDOWN_SECONDS = 30
STALLED_GRACE_SECONDS = 1.0
"""How long shutdown lets closed connections flush before dropping them (see _drop_stalled)."""


class StartupError(Exception):
    """A fatal start-up problem; the CLI prints it and exits 1."""


def build_store(backend: Backend, settings: Settings) -> Store:
    """The store for ``backend`` (not opened). Postgres is imported only when used."""
    if backend.kind == "postgres":
        # Imported on demand: asyncpg is only needed when Postgres is used.
        postgres = importlib.import_module("eventodb.store.postgres")
        store: Store = postgres.PostgresStore(
            backend.dsn, max_message_bytes=settings.max_message_bytes
        )
        return store
    from eventodb.store.sqlite import SQLiteStore

    return SQLiteStore(
        backend.data_dir if backend.kind == "sqlite" else None,
        registry_file=backend.registry_file,
        synchronous=settings.sqlite_sync.upper(),
        max_message_bytes=settings.max_message_bytes,
    )


@dataclass(frozen=True)
class DefaultNamespace:
    token: str | None
    """The working token of ``default``; ``None`` when an existing one was kept (not known)."""
    created: bool = False
    updated: bool = False


def check_default_token(token: str) -> None:
    """``--token`` must parse and name ``default`` (SPEC §3.7). Raises StartupError."""
    try:
        namespace = tokens.parse(token)
    except tokens.TokenFormatError as exc:
        raise StartupError(f"invalid --token: {exc}") from None
    if namespace != DEFAULT_NAMESPACE:
        raise StartupError(
            f"invalid --token: it is a token of namespace '{namespace}', not '{DEFAULT_NAMESPACE}'"
        )


async def ensure_default(store: Store, token: str | None) -> DefaultNamespace:
    """Create ``default`` or bring its stored token hash in line with ``--token`` (SPEC §3.7)."""
    if token is not None:
        check_default_token(token)
    try:
        record = await store.get_namespace(DEFAULT_NAMESPACE)
    except NamespaceNotFound:
        token = token or tokens.generate(DEFAULT_NAMESPACE)
        await store.create_namespace(
            DEFAULT_NAMESPACE, tokens.hash_token(token), DEFAULT_DESCRIPTION
        )
        log.info("created the default namespace")
        return DefaultNamespace(token, created=True)
    if token is None:
        log.info("default namespace exists; keeping its token")
        return DefaultNamespace(None)
    if not tokens.matches(token, record.token_hash):
        await store.set_token_hash(DEFAULT_NAMESPACE, tokens.hash_token(token))
        log.warning("default namespace token replaced by the one given with --token")
        return DefaultNamespace(token, updated=True)
    return DefaultNamespace(token)


def banner(default: DefaultNamespace) -> str:
    """The four token lines of SPEC §10.3, printed to stdout whatever the log level."""
    shown = default.token or (
        "(existing token kept: the default namespace already exists and only the hash of its "
        "token is stored; pass --token to replace it)"
    )
    return f"{RULE}\nDEFAULT NAMESPACE TOKEN:\n{shown}\n{RULE}"


class _Server(uvicorn.Server):
    """uvicorn with our shutdown order and plain exit status.

    uvicorn re-raises a captured SIGTERM after shutting down (so the process would die by the
    signal); we want exit status 0 after a graceful stop, so the handlers are ours.
    """

    def __init__(self, config: uvicorn.Config, broker: Broker) -> None:
        super().__init__(config)
        self.broker = broker

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
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    addresses.append(
                        f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
                    )
            log.info("EventoDB %s listening on %s", __version__, ", ".join(addresses))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        log.info("shutting down: ending subscriptions, finishing in-flight requests")
        await self.broker.close()
        await _drop_stalled(self.server_state.connections)
        await super().shutdown(sockets)


async def _drop_stalled(connections: set[Any], grace: float = STALLED_GRACE_SECONDS) -> None:
    """Abort connections the app has closed but whose unsent bytes the client does not read.

    An SSE client that stopped reading keeps its socket open until the pokes queued for it
    drain, which may be never; uvicorn would wait for it for the whole graceful-shutdown timeout.
    Connections still serving a response (not closing) are left alone.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        transports = [getattr(c, "transport", None) for c in list(connections)]
        pending = [t for t in transports if t is not None and t.get_write_buffer_size() > 0]
        if not pending:
            return
        if loop.time() >= deadline:
            for transport in pending:
                if transport.is_closing():
                    transport.abort()
            return
        await asyncio.sleep(0.05)


async def serve(settings: Settings, backend: Backend) -> int:
    """Run until SIGINT/SIGTERM. Returns the exit status."""
    if settings.token is not None:
        check_default_token(settings.token)
    _log_backend(settings, backend)
    store = build_store(backend, settings)
    try:
        await store.open()
    except EventoDBError as exc:
        raise StartupError(exc.message) from None
    try:
        applied = store.migrations_applied
        if applied:
            log.info("applied %d namespace migration(s)", applied)
        default = await ensure_default(store, settings.token)
        sys.stdout.write(banner(default) + "\n")
        sys.stdout.flush()
        broker = Broker(store)
        await broker.start()
        request_log = RequestLog(
            sys.stdout,
            fmt=settings.log_format,
            enabled=logging.getLogger("eventodb.http").isEnabledFor(logging.INFO),
        )
        app = create_app(
            store,
            test_mode=settings.test_mode,
            permissive_admin=settings.permissive_admin,
            sse_heartbeat=settings.sse_heartbeat,
            broker=broker,
            request_log=request_log,
            console=not settings.no_console,
        )
        if not settings.no_console:
            log.info("web console at /console/ (--no-console turns it off)")
        if default.token is not None:
            app.services.auth.remember(default.token, DEFAULT_NAMESPACE)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            http="httptools",
            lifespan="off",
            access_log=False,
            server_header=False,
            log_config=None,
            timeout_keep_alive=120,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = _Server(config, broker)
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            raise StartupError(f"cannot listen on {settings.host}:{settings.port}") from exc
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
