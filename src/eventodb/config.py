"""Server settings from Go-style flags and ``EVENTODB_*`` environment variables.

The upstream binary uses Go's ``flag`` package, and the harnesses that start it rely on all of
its spellings: ``-name value``, ``-name=value``, ``--name value``, ``--name=value``, and for
booleans ``-name``, ``--name`` or ``-name=true|false``. ``argparse`` accepts neither single-dash
long names nor Go's boolean rules, and no maintained Python port of Go's parser exists, so this
module carries a small parser of its own (:func:`parse_flags`).

Each flag's default comes from its environment variable when that is set and non-empty; an
explicit flag wins. Values are checked wherever they come from: a flag that names a fixed set of
choices refuses anything else, and an environment value that does not parse stops the server
with the variable named (upstream silently fell back to the default). What users see of all this
is docs/CONFIGURATION.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from eventodb.core.validation import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_DATA_DIR = "./eventodb-data"
"""Where the embedded default keeps its SQLite files when neither a URL nor test mode is given."""

DEFAULT_AUTH_CACHE_TTL = 5.0
"""Seconds a registry answer about a token is trusted (docs/API.md, "Token cache and
revocation")."""
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0
"""Upstream's idle keep-alive timeout."""
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_MAX_IN_FLIGHT = 256
DEFAULT_FILE_MODE = "0600"

Kind = Literal["str", "int", "bool", "float"]


class FlagError(ValueError):
    """A command line Go's flag package would refuse (the CLI prints usage and exits 2)."""


class HelpRequested(Exception):
    """``-h``/``-help`` among the flags: print usage and exit 0, as Go does."""


@dataclass(frozen=True)
class Flag:
    name: str
    kind: Kind
    env: str | None
    help: str
    default: str | int | bool | float | None = None
    choices: tuple[str, ...] = ()
    """The accepted values of a ``str`` flag, matched case-insensitively and stored lower-case
    (empty: anything)."""


SERVE_FLAGS: tuple[Flag, ...] = (
    Flag("port", "int", "EVENTODB_PORT", "TCP port to listen on", 8080),
    Flag(
        "db-url",
        "str",
        "EVENTODB_DB_URL",
        "database URL: postgres://..., postgresql://..., sqlite://<file>",
    ),
    Flag("data-dir", "str", "EVENTODB_DATA_DIR", "directory for SQLite files"),
    Flag("db-type", "str", "EVENTODB_DB_TYPE", "database flavour (accepted, unused)"),
    Flag("token", "str", "EVENTODB_TOKEN", "token of the default namespace (generated if empty)"),
    Flag("test-mode", "bool", "EVENTODB_TEST_MODE", "relaxed auth; in-memory without --db-url"),
    Flag(
        "log-level",
        "str",
        "EVENTODB_LOG_LEVEL",
        "debug, info, warn or error",
        "info",
        ("debug", "info", "warn", "warning", "error"),
    ),
    Flag(
        "log-format",
        "str",
        "EVENTODB_LOG_FORMAT",
        "console or json (one JSON object per line)",
        "console",
        ("console", "json"),
    ),
    # Ours, beyond upstream.
    Flag(
        "host",
        "str",
        "EVENTODB_HOST",
        "interface to listen on (default: every interface, IPv4 and IPv6, like Go's :port)",
    ),
    Flag(
        "permissive-admin",
        "bool",
        "EVENTODB_PERMISSIVE_ADMIN",
        "any valid token may administer any namespace (upstream behaviour)",
    ),
    Flag(
        "max-message-bytes",
        "int",
        "EVENTODB_MAX_MESSAGE_BYTES",
        "largest serialised data+metadata of one message",
        DEFAULT_MAX_MESSAGE_BYTES,
    ),
    Flag(
        "sse-heartbeat",
        "float",
        "EVENTODB_SSE_HEARTBEAT",
        "seconds between SSE heartbeat comments (0 = none)",
        15.0,
    ),
    Flag(
        "sqlite-sync",
        "str",
        "EVENTODB_SQLITE_SYNC",
        "SQLite synchronous: normal or full",
        "normal",
        ("normal", "full"),
    ),
    Flag("no-metrics", "bool", "EVENTODB_NO_METRICS", "do not serve GET /metrics"),
    Flag(
        "metrics-public",
        "bool",
        "EVENTODB_METRICS_PUBLIC",
        "serve GET /metrics without the admin token",
    ),
    Flag(
        "metrics-namespaces",
        "int",
        "EVENTODB_METRICS_NAMESPACES",
        'namespaces labelled in /metrics; the others are summed under namespace="/other"',
        100,
    ),
    Flag("no-console", "bool", "EVENTODB_NO_CONSOLE", "do not serve the web console at /console"),
    # Protection of a public server (docs/API.md, "Limits").
    Flag(
        "token-file",
        "str",
        "EVENTODB_TOKEN_FILE",
        "read the default namespace's token from this file (keeps it out of ps)",
    ),
    Flag(
        "auth-cache-ttl",
        "float",
        "EVENTODB_AUTH_CACHE_TTL",
        "seconds a token check is cached; bounds revocation delay without notifications",
        DEFAULT_AUTH_CACHE_TTL,
    ),
    Flag(
        "max-header-bytes",
        "int",
        "EVENTODB_MAX_HEADER_BYTES",
        "largest request line + headers; larger requests get 431",
        DEFAULT_MAX_HEADER_BYTES,
    ),
    Flag(
        "header-timeout",
        "float",
        "EVENTODB_HEADER_TIMEOUT",
        "seconds a client may take to send a request line and headers",
        DEFAULT_HEADER_TIMEOUT,
    ),
    Flag(
        "body-timeout",
        "float",
        "EVENTODB_BODY_TIMEOUT",
        "seconds a stalled request body is waited for (plus 1 s per KiB received)",
        DEFAULT_BODY_TIMEOUT,
    ),
    Flag(
        "idle-timeout",
        "float",
        "EVENTODB_IDLE_TIMEOUT",
        "seconds an idle keep-alive connection stays open",
        DEFAULT_IDLE_TIMEOUT,
    ),
    Flag(
        "max-connections",
        "int",
        "EVENTODB_MAX_CONNECTIONS",
        "open connections (SSE included); more are refused with 503",
        DEFAULT_MAX_CONNECTIONS,
    ),
    Flag(
        "max-in-flight",
        "int",
        "EVENTODB_MAX_IN_FLIGHT",
        "/rpc and /import requests served at once; more get 503 with Retry-After",
        DEFAULT_MAX_IN_FLIGHT,
    ),
    Flag(
        "file-mode",
        "str",
        "EVENTODB_FILE_MODE",
        "permissions of new SQLite files (octal; directories get x where r is set)",
        DEFAULT_FILE_MODE,
    ),
)


EXPORT_FLAGS: tuple[Flag, ...] = (
    Flag("url", "str", None, "server URL, e.g. http://localhost:8080 (required)"),
    Flag("token", "str", None, "namespace token (required)"),
    Flag("categories", "str", None, "comma-separated categories to export (default: all)"),
    Flag("since", "str", None, "only messages at or after this time (RFC 3339 or YYYY-MM-DD)"),
    Flag("until", "str", None, "only messages before this time (RFC 3339 or YYYY-MM-DD)"),
    Flag("gzip", "bool", None, "gzip the output"),
    Flag("output", "str", None, "output file (default: stdout)"),
    Flag("whole-seconds", "bool", None, "times with whole seconds (the Go server's format)"),
    Flag(
        "progress-interval",
        "float",
        None,
        "seconds between progress lines when stderr is not a terminal",
        default=5.0,
    ),
)
"""``eventodb export`` (docs/MIGRATION.md). No environment variables, as upstream."""

IMPORT_FLAGS: tuple[Flag, ...] = (
    Flag("url", "str", None, "server URL, e.g. http://localhost:8080 (required)"),
    Flag("token", "str", None, "namespace token (required)"),
    Flag("input", "str", None, "input file (default: stdin)"),
    Flag("gzip", "bool", None, "the input is gzip-compressed"),
    Flag(
        "from-message-db",
        "str",
        None,
        "copy a Message DB database instead: postgres://.../db[?schema=message_store]",
    ),
    Flag("force", "bool", None, "delete all messages of the namespace first (asks to confirm)"),
    Flag("yes", "bool", None, "confirm --force without asking"),
    Flag("resume", "bool", None, "continue after the namespace's last global position"),
    *EXPORT_FLAGS[-1:],
)
"""``eventodb import`` (docs/MIGRATION.md)."""

COPY_FLAGS: tuple[Flag, ...] = (
    Flag("from", "str", None, "source server URL (required)"),
    Flag("from-token", "str", None, "token of the source namespace (required)"),
    Flag("to", "str", None, "target server URL (required)"),
    Flag("to-token", "str", None, "token of the target namespace (required)"),
    EXPORT_FLAGS[2],
    *IMPORT_FLAGS[-4:],
)
"""``eventodb copy`` (docs/MIGRATION.md)."""

ADOPT_FLAGS: tuple[Flag, ...] = (
    Flag("db-url", "str", "EVENTODB_DB_URL", "the Postgres database (required)"),
    Flag("schema", "str", None, "the Message DB schema", default="message_store"),
    Flag("namespace", "str", None, "the namespace to register it as (required)"),
    Flag("token", "str", None, "its token (default: a new one, printed)"),
    Flag("dry-run", "bool", None, "report what would change, change nothing"),
    Flag("release", "bool", None, "unregister --namespace, keeping its schema and messages"),
)
"""``eventodb adopt`` (docs/MIGRATION.md)."""


@dataclass(frozen=True)
class Settings:
    """Everything ``serve`` needs, resolved from flags and environment."""

    port: int = 8080
    db_url: str | None = None
    data_dir: str | None = None
    db_type: str | None = None
    token: str | None = None
    test_mode: bool = False
    log_level: str = "info"
    log_format: str = "console"
    host: str = ""
    """Empty means every interface, IPv4 and IPv6 (one socket per address family)."""
    permissive_admin: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    sse_heartbeat: float = 15.0
    sqlite_sync: str = "normal"
    no_console: bool = False
    metrics: bool = True
    metrics_public: bool = False
    metrics_namespaces: int = 100
    token_file: str | None = None
    auth_cache_ttl: float = DEFAULT_AUTH_CACHE_TTL
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    file_mode: int = 0o600
    extra: tuple[str, ...] = field(default=())
    """Positional arguments left after the flags (Go stops parsing at the first one)."""


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``.

    Raises:
        ValueError: for anything else.
    """
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean value {text!r}")


class _Choice(ValueError):
    """A value outside a flag's choices (the message lists them)."""


def _convert(flag: Flag, text: str) -> str | int | bool | float:
    """Raises: ValueError (wrong kind), _Choice (not among the flag's choices)."""
    if flag.kind == "bool":
        return parse_bool(text)
    if flag.kind == "int":
        return int(text.strip(), 10)
    if flag.kind == "float":
        return float(text)
    if flag.choices:
        if text.lower() not in flag.choices:
            *head, last = flag.choices
            raise _Choice(f"use {', '.join(head)} or {last}")
        return text.lower()
    return text


_KIND = {"bool": "boolean", "int": "integer", "float": "float", "str": "string"}


class _EnvValueError:
    """An environment value that does not parse; fatal unless a flag overrides it."""

    def __init__(self, message: str) -> None:
        self.message = message


def _env_default(
    flag: Flag, env: Mapping[str, str]
) -> str | int | bool | float | _EnvValueError | None:
    """The environment overrides the built-in default; a value that does not parse is an error
    that names the variable (reported only when no flag overrides it)."""
    raw = env.get(flag.env) if flag.env else None
    if not raw:
        return flag.default
    try:
        return _convert(flag, raw)
    except _Choice as exc:
        return _EnvValueError(f'invalid value "{raw}" in {flag.env}: {exc}')
    except ValueError:
        return _EnvValueError(f'invalid {_KIND[flag.kind]} value "{raw}" in {flag.env}')


def parse_flags(
    args: Sequence[str], flags: Sequence[Flag], env: Mapping[str, str]
) -> tuple[dict[str, str | int | bool | float | None], list[str]]:
    """Parse Go-style flags.

    Returns:
        The value of every flag (by name) and the positional arguments after the flags.

    Raises:
        FlagError: unknown flag, missing or malformed value (Go's message).
        HelpRequested: ``-h``/``--help``/``-help``.
    """
    by_name = {f.name: f for f in flags}
    defaults = {f.name: _env_default(f, env) for f in flags}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if len(arg) < 2 or arg[0] != "-":
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, has_value, value = name.partition("=")
        flag = by_name.get(name)
        if flag is None:
            if name in ("h", "help"):
                raise HelpRequested
            raise FlagError(f"flag provided but not defined: -{name}")
        i += 1
        if flag.kind == "bool" and not has_value:
            defaults[name] = True
            continue
        if not has_value:
            if i >= len(args):
                raise FlagError(f"flag needs an argument: -{name}")
            value = args[i]
            i += 1
        try:
            defaults[name] = _convert(flag, value)
        except _Choice as exc:
            raise FlagError(f'invalid value "{value}" for flag -{name}: {exc}') from None
        except ValueError:
            raise FlagError(
                f'invalid {_KIND[flag.kind]} value "{value}" for flag -{name}'
            ) from None
    values: dict[str, str | int | bool | float | None] = {}
    for key, setting in defaults.items():
        if isinstance(setting, _EnvValueError):
            raise FlagError(setting.message)
        values[key] = setting
    return values, list(args[i:])


def load_settings(args: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Settings for ``serve`` from its arguments and the environment.

    Raises:
        FlagError, HelpRequested: see :func:`parse_flags`.
    """
    values, rest = parse_flags(args, SERVE_FLAGS, env)

    def text(name: str) -> str | None:
        value = values[name]
        return str(value) if value not in (None, "") else None

    port = int(values["port"] or 0)
    if not 0 <= port <= 65535:
        raise FlagError(f'invalid value "{port}" for flag -port: out of range')
    max_bytes = int(values["max-message-bytes"] or 0)
    if max_bytes <= 0:
        raise FlagError("invalid value for flag -max-message-bytes: must be positive")
    max_namespaces = int(values["metrics-namespaces"] or 0)
    if max_namespaces < 0:
        raise FlagError("invalid value for flag -metrics-namespaces: must not be negative")
    for name in ("max-header-bytes", "max-connections", "max-in-flight"):
        if int(values[name] or 0) <= 0:
            raise FlagError(f"invalid value for flag -{name}: must be positive")
    for name in ("header-timeout", "body-timeout", "idle-timeout"):
        if float(values[name] or 0) <= 0:
            raise FlagError(f"invalid value for flag -{name}: must be positive")
    if float(values["auth-cache-ttl"] or 0) < 0:
        raise FlagError("invalid value for flag -auth-cache-ttl: must not be negative")
    mode_text = str(values["file-mode"] or DEFAULT_FILE_MODE)
    try:
        file_mode = int(mode_text, 8)
    except ValueError:
        file_mode = -1
    if not 0 <= file_mode <= 0o777 or not file_mode & 0o600 == 0o600:
        raise FlagError(
            f'invalid value "{mode_text}" for flag -file-mode: use octal permissions that'
            " let the owner read and write, e.g. 0600 or 0640"
        )
    return Settings(
        port=port,
        db_url=text("db-url"),
        data_dir=text("data-dir"),
        db_type=text("db-type"),
        token=text("token"),
        test_mode=bool(values["test-mode"]),
        log_level=str(values["log-level"]),
        log_format=str(values["log-format"]),
        host=text("host") or "",
        permissive_admin=bool(values["permissive-admin"]),
        max_message_bytes=max_bytes,
        sse_heartbeat=max(0.0, float(values["sse-heartbeat"] or 0.0)),
        sqlite_sync=str(values["sqlite-sync"]),
        no_console=bool(values["no-console"]),
        metrics=not values["no-metrics"],
        metrics_public=bool(values["metrics-public"]),
        metrics_namespaces=max_namespaces,
        token_file=text("token-file"),
        auth_cache_ttl=float(values["auth-cache-ttl"] or 0.0),
        max_header_bytes=int(values["max-header-bytes"] or 0),
        header_timeout=float(values["header-timeout"] or 0.0),
        body_timeout=float(values["body-timeout"] or 0.0),
        idle_timeout=float(values["idle-timeout"] or 0.0),
        max_connections=int(values["max-connections"] or 0),
        max_in_flight=int(values["max-in-flight"] or 0),
        file_mode=file_mode,
        extra=tuple(rest),
    )


def usage(flags: Sequence[Flag] = SERVE_FLAGS) -> str:
    """Help text listing every flag with its environment variable and default."""
    lines = []
    for f in flags:
        head = f"  -{f.name}" + ("" if f.kind == "bool" else f" {f.kind}")
        extra = []
        if f.env:
            extra.append(f"env {f.env}")
        if f.default not in (None, "", False):
            extra.append(f"default {f.default}")
        suffix = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"{head}\n        {f.help}{suffix}")
    return "\n".join(lines)


class UnsupportedScheme(ValueError):
    """The database URL names a backend we do not have (fatal at start-up)."""


@dataclass(frozen=True)
class Backend:
    """Which store to open, decided from the URL, test mode and data directory."""

    kind: Literal["postgres", "sqlite", "memory"]
    dsn: str | None = None
    data_dir: str | None = None
    registry_file: str = "metadata.db"
    embedded_default: bool = False
    """True when nothing was configured and we fell back to SQLite files (logged)."""


def resolve_backend(settings: Settings) -> Backend:
    """Pick the backend (docs/CONFIGURATION.md, "Choosing the backend").

    * ``postgres://`` / ``postgresql://`` → Postgres.
    * ``sqlite://<file>`` → SQLite files: registry ``<data-dir>/<file>`` (``metadata.db`` when
      empty); ``sqlite://:memory:`` → everything in memory (upstream made a registry file
      named ``:memory:``).
    * no URL, test mode → in memory.
    * no URL, no test mode → SQLite files in ``--data-dir`` or ``./eventodb-data``.

    Raises:
        UnsupportedScheme: any other URL, with upstream's message.
    """
    url = settings.db_url
    if url is None:
        if settings.test_mode:
            return Backend("memory")
        return Backend(
            "sqlite",
            data_dir=settings.data_dir or DEFAULT_DATA_DIR,
            embedded_default=True,
        )
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme in ("postgres", "postgresql"):
        return Backend("postgres", dsn=url)
    if scheme == "sqlite":
        if rest == ":memory:":
            return Backend("memory")
        return Backend(
            "sqlite",
            data_dir=settings.data_dir or DEFAULT_DATA_DIR,
            registry_file=rest or "metadata.db",
        )
    raise UnsupportedScheme(
        f"unsupported database scheme: {scheme or url} "
        "(use postgres://, postgresql:// or sqlite://)"
    )
