"""The ``eventodb`` command (docs/CONFIGURATION.md): ``serve`` (also implied by leading flags),
``version``, ``help``, ``token``, and the NDJSON clients ``export``/``import``
(:mod:`eventodb.transfer`).

Flags follow Go's syntax (see :mod:`eventodb.config` for why we parse them ourselves). Every
failure ends with one line ``Error: <reason>`` on stderr, after the usage text when there is one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from eventodb import __version__
from eventodb.config import (
    FlagError,
    HelpRequested,
    UnsupportedScheme,
    load_settings,
    resolve_backend,
    usage,
)
from eventodb.core import tokens
from eventodb.core.errors import InvalidArgument
from eventodb.core.validation import check_namespace_id
from eventodb.logs import configure_logging

log = logging.getLogger("eventodb")

BANNER = f"EventoDB {__version__} - a Message DB compatible event store (Python)"

HELP = f"""{BANNER}

Usage:
  eventodb [flags]                 run the server (same as 'serve')
  eventodb serve [flags]           run the server
  eventodb export --url U --token T [--categories a,b] [--since T] [--until T]
                  [--gzip] [--output FILE] [--whole-seconds]
                                   write a namespace's messages as NDJSON
  eventodb import --url U --token T [--input FILE] [--gzip] [--force [--yes]] [--resume]
                                   load NDJSON into the token's namespace
  eventodb import --url U --token T --from-message-db postgres://.../db[?schema=S]
                                   copy a Message DB database into the token's namespace
  eventodb copy --from U --from-token T --to U2 --to-token T2 [--categories a,b] [--resume]
                                   copy a namespace from one server to another
  eventodb adopt --db-url postgres://... [--schema S] --namespace N [--dry-run | --release]
                                   serve a Message DB schema as namespace N, in place
  eventodb token NAMESPACE         print a fresh token for a namespace (for --token of the
                                   default namespace, or the token option of ns.create)
  eventodb version [--full]        print the version
  eventodb help                    show this help

Server flags (-name value, -name=value, --name value, --name=value; booleans -name):
{usage()}

Without --db-url and without --test-mode the server keeps its data in SQLite files under
--data-dir (default ./eventodb-data). --test-mode alone runs in memory.
"""


def _fail(message: str, json_log: bool = False) -> int:
    """A fatal error: one ``Error:`` line on stderr (and a JSON log line when logs are JSON,
    for collectors that read only stdout). Exit status 1."""
    if json_log:
        log.critical("%s", message)
    sys.stderr.write(f"Error: {message}\n")
    return 1


def _usage_error(message: str) -> int:
    """Bad command line: the help, then the reason as the last line. Exit status 2."""
    sys.stderr.write(f"{HELP}\nError: {message}\n")
    return 2


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (faster), else ``None``: asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed: using asyncio's event loop")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_serve(args: Sequence[str]) -> int:
    from eventodb.api.server import StartupError, serve

    try:
        settings = load_settings(args, os.environ)
    except HelpRequested:
        sys.stdout.write(HELP)
        return 0
    except FlagError as exc:
        return _usage_error(str(exc))
    output = configure_logging(settings.log_level, settings.log_format)
    json_log = settings.log_format == "json"
    if settings.extra:
        log.warning("ignoring extra arguments: %s", " ".join(settings.extra))
    try:
        backend = resolve_backend(settings)
    except UnsupportedScheme as exc:
        return _fail(str(exc), json_log)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(serve(settings, backend, output))
    except StartupError as exc:
        return _fail(str(exc), json_log)


def run_token(args: Sequence[str]) -> int:
    """``eventodb token NAMESPACE``: a fresh token on stdout; only its holder will know it."""
    if any(a in ("-h", "--help", "-help") for a in args):
        sys.stdout.write("Usage: eventodb token NAMESPACE\n")
        return 0
    if len(args) != 1:
        return _usage_error("token needs exactly one argument: the namespace ID")
    try:
        check_namespace_id(args[0])
    except InvalidArgument as exc:
        return _fail(exc.message)
    sys.stdout.write(tokens.generate(args[0]) + "\n")
    return 0


def run_version(args: Sequence[str]) -> int:
    if any(a in ("--full", "-full", "-f", "--f") for a in args):
        sys.stdout.write(f"{BANNER}\nVersion: {__version__}\nCommit: unknown\nBuilt: unknown\n")
    else:
        sys.stdout.write(f"{__version__}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventodb`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stdout.write(HELP)
        return 0
    command, rest = args[0], args[1:]
    if command in ("version", "--version", "-version", "-v", "--v"):
        return run_version(rest)
    if command in ("help", "--help", "-help", "-h", "--h"):
        sys.stdout.write(HELP)
        return 0
    if command == "serve":
        return run_serve(rest)
    if command == "token":
        return run_token(rest)
    if command in ("export", "import", "copy"):
        from eventodb.transfer import commands

        run = {"export": commands.run_export, "import": commands.run_import}
        return run.get(command, commands.run_copy)(rest)
    if command == "adopt":
        from eventodb.transfer.adopt import run_adopt

        return run_adopt(rest)
    if command.startswith("-"):
        return run_serve(args)
    return _usage_error(f"unknown command: {command}")
